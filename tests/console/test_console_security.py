"""The console against what its red team tried: hostile terminal output, a key revoked
while the console is open, names with bidirectional controls; and the file, image and
limits screens that came with the fixes (a real Chromium, a real server)."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Request

from tests.conftest import Registry, ServerProcess
from tests.console.conftest import lines_equal, login, shot, terminal_text, wait_for
from tests.images import oci
from tests.types import Tenant

HOSTILE = ["b", "L", "M", "S", "T", "I", "Z"]  # counts xterm.js runs once per unit


def open_terminal(page: Page, server: ServerProcess, sid: str) -> None:
    page.goto(f"{server.url}/console/#/sessions/{sid}/terminal")
    page.wait_for_selector("#term-state:has-text('Terminal cmd_')")
    page.locator("#terminal").click()


@pytest.mark.timeout(120)  # a frozen tab blocks the reads below: fail, do not wait hours
def test_huge_repeat_counts_do_not_freeze_the_terminal(page: Page, server: ServerProcess,
                                                       tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    login(page, server, tenant.key)
    open_terminal(page, server, sid)
    printed = "".join(f"\\033[2147483647{final}" for final in HOSTILE)
    page.keyboard.type(f"printf 'A{printed}'; echo\n")
    page.keyboard.type("echo $((6*7))\n")
    start = time.monotonic()
    wait_for(lambda: lines_equal(terminal_text(page), "42"), "42 after the hostile bytes", 60)
    # Unbounded, `b` alone holds the page for about two minutes.
    assert time.monotonic() - start < 10
    # A reload replays the scrollback, hostile bytes included: just as quick.
    page.reload()
    page.wait_for_selector("#term-state:has-text('Reattached')")
    start = time.monotonic()
    wait_for(lambda: lines_equal(terminal_text(page), "42"), "42 in the replay", 60)
    page.locator("#terminal").click()
    page.keyboard.type("echo again-$((6*7))\n")
    wait_for(lambda: lines_equal(terminal_text(page), "again-42"), "the shell after a reload", 60)
    assert time.monotonic() - start < 10
    # Counts a program may send still work as xterm.js does them.
    page.keyboard.type("clear; printf 'xy\\033[3b\\n'\n")
    wait_for(lambda: lines_equal(terminal_text(page), "xyyyy"), "a small REP")


def test_a_flood_of_combining_marks_does_not_freeze_the_terminal(
        page: Page, server: ServerProcess, tenant: Tenant) -> None:
    """100,000 marks on one letter (200 KB) held a tab for minutes: past 16 on one
    character they are not drawn."""
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    login(page, server, tenant.key)
    open_terminal(page, server, sid)
    # U+0301 as UTF-8 bytes, 100,000 times after one "e" (busybox printf and awk suffice)
    page.keyboard.type("awk 'BEGIN{printf \"e\"; for(i=0;i<100000;i++) printf \"\\314\\201\"; "
                       "print \"\"}'; echo marks-$((6*7))\n")
    start = time.monotonic()
    wait_for(lambda: lines_equal(terminal_text(page), "marks-42"), "the shell after the marks", 60)
    assert time.monotonic() - start < 15


def test_a_revoked_key_closes_the_terminal_and_lands_on_the_login(
        page: Page, server: ServerProcess, client: httpx.Client, tenant: Tenant) -> None:
    made = client.post("/v1/keys", json={"name": "console-doomed", "tenant": tenant.id}).json()
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    cmd = tenant.client.post(f"/v1/sessions/{sid}/exec", json={
        "command": "while :; do echo tick; sleep 0.2; done", "background": True}).json()
    tickets: list[str] = []
    page.on("request", lambda r: tickets.append(r.url) if r.url.endswith("/pty-ticket") else None)
    login(page, server, made["key"])
    open_terminal(page, server, sid)
    assert client.delete(f"/v1/keys/{made['id']}").status_code == 200
    page.wait_for_selector("#term-state:has-text('revoked')")
    asked = len(tickets)
    page.wait_for_timeout(3000)  # no reconnecting with a key that opens nothing
    assert len(tickets) == asked
    shot(page, "20-terminal-key-revoked")
    # The lists go to the login screen on their next poll.
    page.goto(f"{server.url}/console/#/sessions")
    page.wait_for_selector("#login-error:has-text('no longer accepted')")
    assert page.evaluate("() => sessionStorage.getItem('chaser.key')") is None

    # A followed command's stream ends with the revoke and the page goes to the login.
    again = client.post("/v1/keys", json={"name": "console-doomed-2", "tenant": tenant.id}).json()
    page.fill("#key", again["key"])
    page.click("form.login button[type=submit]")
    page.wait_for_selector("#logout")
    page.goto(f"{server.url}/console/#/sessions/{sid}/commands/{cmd['command_id']}")
    page.wait_for_selector("#output:has-text('tick')")
    assert client.delete(f"/v1/keys/{again['id']}").status_code == 200
    page.wait_for_selector("#login-error:has-text('no longer accepted')", timeout=10_000)
    tenant.client.delete(f"/v1/sessions/{sid}")


def test_files_make_directories_delete_and_show_bidi_controls(page: Page, server: ServerProcess,
                                                              tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    spoof = "invoice\u202etxt.exe"
    files = f"/v1/sessions/{sid}/files"
    assert tenant.client.put(files, params={"path": spoof}, content=b"x").status_code == 200
    cmd = tenant.client.post(f"/v1/sessions/{sid}/exec", json={
        "command": "echo 'ls \u2067evil\u2069'", "background": True}).json()
    login(page, server, tenant.key)
    page.goto(f"{server.url}/console/#/files/sessions/{sid}")
    page.wait_for_selector("td:has-text('invoice[U+202E]txt.exe')")
    assert "\u202e" not in page.inner_text("main")
    page.fill("input[name=dirname]", "made-here")
    page.click("text=Make directory")
    page.wait_for_selector("button:has-text('made-here/')")
    assert tenant.client.get(files + "/list", params={"path": "made-here"}).status_code == 200
    tenant.client.put(files, params={"path": "made-here/inner.txt"}, content=b"y")
    shot(page, "21-files-mkdir")
    page.on("dialog", lambda d: d.accept())
    page.click("button[aria-label='Delete made-here']")
    page.wait_for_selector("#flash:has-text('Deleted made-here')")
    page.click(f"button[aria-label='Delete invoice[U+202E]txt.exe']")
    page.wait_for_selector("#flash:has-text('Deleted')")
    names = [e["name"] for e in tenant.client.get(files + "/list", params={"path": "/workspace"})
             .json()["entries"]]
    assert names == []
    # Command lines and their output likewise.
    page.goto(f"{server.url}/console/#/sessions/{sid}/commands/{cmd['command_id']}")
    page.wait_for_selector("#output:has-text('ls [U+2067]evil[U+2069]')")
    assert "ls [U+2067]evil[U+2069]" in page.inner_text(".facts")


def test_images_are_pulled_from_the_images_screen(page: Page, server: ServerProcess,
                                                  tenant: Tenant, registry: Registry,
                                                  tmp_root: Path) -> None:
    # An image of its own (the cache is shared by digest with the images tests).
    token = secrets.token_hex(4)
    layout = oci.write_layout(tmp_root / ("oci-" + token), [oci.busybox_layer()],
                              env=[f"CONSOLE_PULL={token}"])
    ref = oci.push(layout, registry.host, f"console/pull-{token}:1")
    login(page, server, tenant.key)
    page.goto(f"{server.url}/console/#/images")
    page.fill("input[name=image]", ref)
    page.click("form[aria-label='Pull an image'] button[type=submit]")
    page.wait_for_selector("#pull-state:has-text('Pulled')", timeout=120_000)
    page.wait_for_selector(f"td:has-text('{ref}')")
    shot(page, "22-images-pull")


def test_set_limits_sends_only_what_changed(page: Page, server: ServerProcess,
                                            client: httpx.Client) -> None:
    assert server.admin_key
    name = "limits-" + secrets.token_hex(3)
    made = client.post("/v1/keys", json={"name": name, "limits": {"max_sandboxes": 8}}).json()
    sent: list[dict[str, object]] = []

    def record(r: Request) -> None:
        if r.method == "PATCH":
            sent.append(json.loads(r.post_data or "{}"))

    page.on("request", record)
    login(page, server, server.admin_key)
    page.goto(f"{server.url}/console/#/admin")
    row = page.locator("tbody tr", has_text=name)
    assert row.locator("input[name=max_sandboxes]").input_value() == "8"
    assert row.locator("input[name=max_sessions]").input_value() == ""
    assert row.locator("input[name=max_sessions]").get_attribute("placeholder", timeout=5000) \
        .startswith("default")  # type: ignore[union-attr]
    row.locator("input[name=max_sessions]").fill("3")
    row.locator("button:has-text('Set limits')").click()
    page.wait_for_selector("#flash:has-text('Limits set')")
    assert sent == [{"limits": {"max_sessions": 3}}]
    own = {k["id"]: k for k in client.get("/v1/keys").json()["keys"]}[made["id"]]["own_limits"]
    assert (own["max_sandboxes"], own["max_sessions"], own["max_pids"]) == (8, 3, None)
    # Emptied: back to the server's default.
    row = page.locator("tbody tr", has_text=name)
    wait_for(lambda: row.locator("input[name=max_sessions]").input_value() == "3", "the new row")
    row.locator("input[name=max_sandboxes]").fill("")
    row.locator("button:has-text('Set limits')").click()
    wait_for(lambda: len(sent) == 2, "the second PATCH")
    assert sent[1] == {"limits": {"max_sandboxes": None}}
    wait_for(lambda: {k["id"]: k for k in client.get("/v1/keys").json()["keys"]}[made["id"]]
             ["own_limits"]["max_sandboxes"] is None, "max_sandboxes back to its default")
