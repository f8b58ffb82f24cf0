"""The web console in a real headless Chromium against a real server: what a user does
with it, end to end, with a screenshot of each screen in tests/artifacts/console."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from playwright.sync_api import BrowserContext, Dialog, Page

from tests.conftest import ServerProcess
from tests.proxy import Proxy
from tests.console.conftest import lines_equal, login, shot, terminal_text, wait_for
from tests.types import NewTenant, Tenant


def _no_key_leaked(page: Page, key: str) -> None:
    urls: list[str] = getattr(page, "requested_urls")
    assert urls and not [u for u in urls if key in u]
    assert page.evaluate("() => localStorage.length") == 0
    assert page.evaluate("() => document.cookie") == ""
    assert getattr(page, "page_errors") == []


def test_a_wrong_key_shows_a_clear_message(page: Page, server: ServerProcess) -> None:
    page.goto(server.url + "/console")
    assert page.locator("label[for=key]").inner_text() == "API key"
    shot(page, "01-login")
    page.fill("#key", "chs_not_a_key")
    page.keyboard.press("Enter")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert "refused" in error.inner_text() and "wrong" in error.inner_text()
    assert page.evaluate("() => sessionStorage.length") == 0
    shot(page, "02-wrong-key")


def test_terminal_commands_files_jobs_and_schedules(page: Page, server: ServerProcess,
                                                    tenant: Tenant, tmp_path: Path) -> None:
    login(page, server, tenant.key)
    workspace = "console-" + secrets.token_hex(3)
    page.fill("input[name=workspace]", workspace)
    page.fill("input[name=memory_mb]", "512")
    page.click("text=Start session")
    page.wait_for_selector("a:has-text('Open terminal')")
    sid = page.url.rsplit("/", 1)[1]
    assert sid.startswith("ses_")
    assert page.locator(".facts").inner_text().count(workspace) == 1
    shot(page, "04-session")

    # The terminal: a real shell in the sandbox, typed into through xterm.js.
    page.click("a:has-text('Open terminal')")
    page.wait_for_selector("#term-state:has-text('Terminal cmd_')")
    pty_id = page.inner_text("#term-state").split()[-1]
    page.locator("#terminal").click()
    page.keyboard.type("echo $((6*7))\n")
    wait_for(lambda: lines_equal(terminal_text(page), "42"), "42 on the terminal")
    cols, rows = page.evaluate("() => [window.chaserTerminal.cols, window.chaserTerminal.rows]")
    page.keyboard.type("stty size\n")
    wait_for(lambda: lines_equal(terminal_text(page), f"{rows} {cols}"), "stty size")
    shot(page, "05-terminal")
    page.set_viewport_size({"width": 1000, "height": 700})  # resize reaches the shell
    wait_for(lambda: page.evaluate("() => window.chaserTerminal.cols") < cols, "a refit")
    cols2, rows2 = page.evaluate("() => [window.chaserTerminal.cols, window.chaserTerminal.rows]")
    page.keyboard.type("clear; stty size\n")
    wait_for(lambda: lines_equal(terminal_text(page), f"{rows2} {cols2}"), "the new size")
    page.set_viewport_size({"width": 1366, "height": 800})
    # Keyboard users leave the terminal with Esc then Tab (Tab alone is completion).
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("() => !document.activeElement.closest('#terminal')")
    page.locator("#terminal").click()
    page.keyboard.press("Control+C")
    # Links a program prints (OSC 8) never run script: only http(s) ones are offered.
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.evaluate("() => window.chaserTerminal.options.linkHandler.activate(null, 'javascript:window.pwned=1')")
    page.evaluate("() => window.chaserTerminal.options.linkHandler.activate(null, 'https://example.com/')")
    assert len(dialogs) == 1 and "https://example.com/" in dialogs[0]
    assert page.evaluate("() => window.pwned === undefined")
    # A reload reattaches to the same shell, its screen replayed.
    page.keyboard.type("export MARK=kept-$((40+2))\n")
    page.reload()
    page.wait_for_selector(f"#term-state:has-text('Reattached to terminal {pty_id}')")
    page.locator("#terminal").click()
    page.keyboard.type("echo $MARK\n")
    wait_for(lambda: lines_equal(terminal_text(page), "kept-42"), "the same shell after a reload")

    # A background command followed live, fed on stdin, its output downloaded.
    page.goto(f"{server.url}/console/#/sessions/{sid}")
    page.fill("input[name=command]",
              "for i in 1 2 3; do echo tick-$i; sleep 0.3; done; read line; echo got-$line")
    page.click("form[aria-label='Run a command'] button[type=submit]")
    page.wait_for_selector("#output:has-text('tick-3')")
    page.fill("input[name=input]", "hello")
    page.click("form[aria-label='Send input'] button[type=submit]")
    page.wait_for_selector("#stream-state:has-text('Finished: exited, exit code 0')")
    assert page.inner_text("#output").split() == ["tick-1", "tick-2", "tick-3", "got-hello"]
    shot(page, "06-command")
    with page.expect_download() as dl:
        page.click("text=Download output")
    assert Path(dl.value.path()).read_text() == "tick-1\ntick-2\ntick-3\ngot-hello\n"
    page.goto(f"{server.url}/console/#/sessions/{sid}")
    row = page.locator("tbody tr", has_text="tick-")
    row.wait_for()
    assert "exited" in row.inner_text() and "\t0\t" in row.inner_text()

    # Files: upload into the session's /workspace, list, download.
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"uploaded from a browser\n" * 100)
    page.goto(f"{server.url}/console/#/files/sessions/{sid}")
    page.set_input_files("input[type=file]", str(upload))
    page.click("form[aria-label='Upload files'] button[type=submit]")
    page.wait_for_selector("td:has-text('notes.txt')")
    shot(page, "07-files")
    with page.expect_download() as dl:
        page.click("button[aria-label='Download notes.txt']")
    assert Path(dl.value.path()).read_bytes() == upload.read_bytes()
    assert tenant.client.get(f"/v1/sessions/{sid}/files", params={"path": "notes.txt"}).content \
        == upload.read_bytes()

    # A job watched to success, then retried.
    page.goto(f"{server.url}/console/#/jobs")
    page.select_option("select[name=kind]", "pipeline.run")
    page.fill("#job-command", "build: echo built\ntest: echo job-ok")
    page.click("text=Submit job")
    page.wait_for_selector(".facts .status-succeeded", timeout=60_000)
    page.wait_for_selector("#job-logs:has-text('job-ok')")
    assert page.locator("table tbody tr").nth(1).inner_text().startswith("2\ttest\tsucceeded")
    shot(page, "08-job")
    page.click("button:has-text('Retry')")
    page.wait_for_selector("table:has(caption:has-text('Attempts')) tbody tr:nth-child(2)", timeout=60_000)
    page.goto(f"{server.url}/console/#/jobs")
    page.wait_for_selector("tbody tr .status-succeeded")
    shot(page, "09-jobs")

    # A schedule made paused, then resumed.
    page.goto(f"{server.url}/console/#/schedules")
    page.fill("input[name=name]", "nightly")
    page.fill("input[name=interval_s]", "3600")
    page.fill("#schedule-command", "echo nightly")
    page.check("#sched-paused")
    page.click("text=Create schedule")
    row = page.locator("tbody tr", has_text="nightly")
    row.locator(".status-paused").wait_for()
    row.locator("button:has-text('Resume')").click()
    row.locator(".status-active").wait_for()
    shot(page, "10-schedules")
    schedules = tenant.client.get("/v1/schedules").json()["schedules"]
    assert [s["paused"] for s in schedules] == [False]

    for screen, marker in (("workspaces", workspace), ("images", "Cache:"), ("usage", "Sessions")):
        page.goto(f"{server.url}/console/#/{screen}")
        page.wait_for_selector(f"main :text('{marker}')")
        shot(page, f"11-{screen}")
    page.goto(f"{server.url}/console/#/sessions")
    page.wait_for_selector(f"a:has-text('{sid}')")
    shot(page, "03-sessions")

    _no_key_leaked(page, tenant.key)
    assert page.evaluate("() => sessionStorage.getItem('chaser.key')") == tenant.key
    page.click("#logout")
    page.wait_for_selector("#key")
    assert page.evaluate("() => sessionStorage.length") == 0


def test_sessions_list_shows_live_usage(page: Page, server: ServerProcess,
                                       tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={"limits": {
        "memory_mb": 256, "cpus": 1, "pids": 100, "disk_mb": 512}}).json()["id"]
    held = tenant.client.post(f"/v1/sessions/{sid}/exec", json={"background": True, "command":
        "head -c 20000000 /dev/zero > /tmp/blob; "
        "python3 -c \"b = b'x' * (60 << 20); import time\n"
        "while True: sum(range(300000)); time.sleep(0.2)\""})  # a little CPU, steadily
    assert held.status_code == 201, held.text
    login(page, server, tenant.key)
    row = page.locator(f"tr:has(a:has-text('{sid}'))")
    memory, cpu = row.locator(".usage-memory"), row.locator(".usage-cpu")
    pids, disk = row.locator(".usage-pids"), row.locator(".usage-disk")

    def memory_mib() -> float:
        text = memory.inner_text()  # "61.2 MiB / 256.0 MiB"
        return float(text.split()[0]) if text.split()[1:2] == ["MiB"] else 0.0

    wait_for(lambda: memory_mib() >= 60, "60 MiB held in the memory cell")
    assert memory.inner_text().endswith("/ 256.0 MiB")
    # A CPU share appears from the second sample on: "0.01 / 1 CPU · 0.1 s".
    wait_for(lambda: cpu.inner_text()[:1].isdigit(), "a CPU share")
    assert " / 1 CPU \u00b7 " in cpu.inner_text() and cpu.inner_text().endswith(" s")
    used, limit = pids.inner_text().split(" / ")
    assert int(used) >= 2 and limit == "100"
    assert disk.inner_text().startswith("19.1 MiB") and disk.inner_text().endswith(
        "/ 512.0 MiB")  # its tmpfs: the blob
    # Live updates in place: the focused link of the row stays focused across polls.
    page.focus(f"a[aria-label='Terminal on {sid}']")
    before = cpu.inner_text()
    wait_for(lambda: cpu.inner_text() != before, "the CPU cell updated")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == (
        f"Terminal on {sid}")
    shot(page, "03b-sessions-usage")
    page.click(f"a:has-text('{sid}')")
    facts = page.locator(".facts")
    wait_for(lambda: "MiB / 256.0 MiB" in facts.inner_text(), "the session's memory")
    assert "Processes" in facts.inner_text() and "Disk" in facts.inner_text()
    tenant.client.delete(f"/v1/sessions/{sid}")
    page.goto(f"{server.url}/console/#/sessions")
    wait_for(lambda: "stopped" in row.inner_text(), "the session stopped")
    assert memory.inner_text() == "- / 256.0 MiB" and pids.inner_text() == "- / 100"
    page.goto(f"{server.url}/console/#/usage")
    page.wait_for_selector("th:has-text('Memory in use')")
    _no_key_leaked(page, tenant.key)


def test_another_tenants_objects_never_appear(page: Page, server: ServerProcess,
                                              new_tenant: NewTenant) -> None:
    owner, other = new_tenant("owner"), new_tenant("other")
    ws = "hidden-" + secrets.token_hex(3)
    session = owner.client.post("/v1/sessions", json={"workspace": ws}).json()
    job = owner.client.post("/v1/jobs", json={"command": "echo secret", "workspace": ws}).json()
    mine = other.client.post("/v1/sessions", json={}).json()
    login(page, server, other.key)
    page.wait_for_selector(f"a:has-text('{mine['id']}')")
    for screen in ("sessions", "workspaces", "jobs", "schedules", "usage"):
        page.goto(f"{server.url}/console/#/{screen}")
        page.wait_for_selector("main h1")
        page.wait_for_timeout(500)  # a poll has answered
        body = page.inner_text("body")
        for secret in (session["id"], ws, job["id"], owner.id):
            assert secret not in body, (screen, secret)
    assert "Admin" not in page.inner_text("header nav")
    page.goto(f"{server.url}/console/#/sessions/{session['id']}")
    page.wait_for_selector("#flash:has-text('not_found')")
    shot(page, "12-other-tenant")


def test_strings_from_sandboxes_stay_text(page: Page, server: ServerProcess,
                                          tenant: Tenant) -> None:
    evil = '<img src=x onerror="window.pwned=1">'
    ws = "xss-" + secrets.token_hex(3)
    c = tenant.client
    assert c.put(f"/v1/workspaces/{ws}/files", params={"path": f"{evil}.txt"}, content=b"x").status_code < 300
    sid = c.post("/v1/sessions", json={"workspace": ws}).json()["id"]
    cmd = c.post(f"/v1/sessions/{sid}/exec", json={
        "command": f"echo '{evil}<script>window.pwned=2</script>'", "background": True}).json()
    c.post("/v1/jobs", json={"command": "true", "labels": {"x": evil}})
    login(page, server, tenant.key)
    for hash_ in (f"files/workspaces/{ws}", f"sessions/{sid}/commands/{cmd['command_id']}", "jobs",
                  f"sessions/{sid}"):
        page.goto(f"{server.url}/console/#/{hash_}")
        page.wait_for_selector(f"main :text('{evil}')")
        assert page.evaluate("() => window.pwned === undefined")
        assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    # A link whose ids decode to paths is not followed into the API.
    page.goto(f"{server.url}/console/#/files/workspaces/..%2F..%2Fkeys")
    page.wait_for_selector("main h1:has-text('Sessions')")
    assert getattr(page, "page_errors") == []


def test_admin_keys_health_and_metrics(page: Page, server: ServerProcess) -> None:
    assert server.admin_key
    login(page, server, server.admin_key)
    page.click("header nav a:has-text('Admin')")
    page.wait_for_selector("#metrics:has-text('chaser_sessions')")
    name = "made-in-console-" + secrets.token_hex(3)
    page.fill("form[aria-label='New API key'] input[name=name]", name)
    page.click("text=Create key")
    secret = page.locator("input[aria-label='The new key']").input_value()
    assert secret.startswith("chs_")
    with server.client(secret) as c:
        assert c.get("/v1/usage").status_code == 200
    row = page.locator("tbody tr", has_text=name)
    row.locator("input[name=max_sessions]").fill("3")
    row.locator("button:has-text('Set limits')").click()
    page.wait_for_selector("#flash:has-text('Limits set')")
    with server.client(secret) as c:
        assert c.get("/v1/usage").json()["limits"]["max_sessions"] == 3
    shot(page, "13-admin")
    page.once("dialog", lambda d: d.accept())
    row.locator("button:has-text('Revoke')").click()
    with server.client(secret) as c:
        wait_for(lambda: c.get("/v1/usage").status_code == 401, "the key revoked")
    assert json.loads(page.inner_text("main pre"))["status"] == "ok"
    _no_key_leaked(page, server.admin_key)


def test_without_javascript_a_clear_message(browser: BrowserContext, server: ServerProcess) -> None:
    page = browser.new_page()
    try:
        # Scripting off for this tab, as the browser's own setting does.
        browser.new_cdp_session(page).send("Emulation.setScriptExecutionDisabled", {"value": True})
        page.goto(server.url + "/console")
        alert = page.locator(".noscript[role=alert]")
        assert alert.is_visible()
        assert "needs JavaScript" in alert.inner_text()
        assert page.locator("#key").count() == 0
        shot(page, "00-no-javascript")
    finally:
        page.close()


def test_streams_and_terminals_resume_after_a_dropped_connection(
        page: Page, server: ServerProcess, tenant: Tenant) -> None:
    proxy = Proxy(server.port)  # the browser reaches the server through a cuttable link
    try:
        sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
        cmd = tenant.client.post(f"/v1/sessions/{sid}/exec", json={
            "command": "for i in $(seq 1 30); do echo line-$i; sleep 0.1; done",
            "background": True}).json()["command_id"]
        page.goto(proxy.url + "/console")
        page.fill("#key", tenant.key)
        page.keyboard.press("Enter")
        page.wait_for_selector("#logout")
        page.goto(f"{proxy.url}/console/#/sessions/{sid}/commands/{cmd}")
        page.wait_for_selector("#output:has-text('line-5')")
        proxy.cut()
        page.wait_for_selector("#stream-state:has-text('Finished: exited, exit code 0')")
        # Resumed from the last offset: every line once, in order.
        assert page.inner_text("#output").split() == [f"line-{i}" for i in range(1, 31)]

        page.goto(f"{proxy.url}/console/#/sessions/{sid}/terminal")
        page.wait_for_selector("#term-state:has-text('Terminal cmd_')")
        page.locator("#terminal").click()
        page.keyboard.type("echo before-$((1+1))\n")
        wait_for(lambda: lines_equal(terminal_text(page), "before-2"), "output before the cut")
        proxy.cut()
        page.wait_for_selector("#term-state:has-text('Reattached')")
        page.keyboard.type("echo after-$((1+2))\n")
        wait_for(lambda: lines_equal(terminal_text(page), "after-3"), "the same shell after the cut")
        # The reconnect resumed at the offset reached: nothing shown twice.
        lines = terminal_text(page).splitlines()
        assert [line.strip() for line in lines].count("before-2") == 1
    finally:
        proxy.close()
