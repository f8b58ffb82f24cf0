"""The console's routes: the bundle under a strict CSP, assets by plain name only, and a
page that says how to build the console when it was not built."""

from __future__ import annotations

from pathlib import Path

from tests.inprocess.harness import Api, error, serving


def _bundle(root: Path) -> Path:
    root.mkdir(parents=True)
    root.chmod(0o711)  # the data dir below it must be enterable, whatever the umask
    dist = root / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(
        '<!doctype html><meta name="csp-nonce" content="__CSP_NONCE__"><title>t</title>')
    (dist / "assets" / "app.js").write_text("console.log(1)")
    (dist / "assets" / "style.css").write_text("body{}")
    (root / "secret.txt").write_text("not an asset")
    return dist


async def test_console_is_served_with_a_strict_csp(inproc_root: Path) -> None:
    root = inproc_root / "console-built"
    dist = _bundle(root)
    async with serving(root / "srv", console_dir=dist) as api:
        c = api.client()  # no key: the page itself is public, the API behind it is not
        r = await c.get("/console")
        assert r.status_code == 308 and r.headers["location"] == "/console/"
        r = await c.get("/console/")
        assert r.status_code == 200 and r.text.startswith("<!doctype html>")
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp
        assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
        assert "connect-src 'self';" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        js = await c.get("/console/assets/app.js")
        assert js.status_code == 200 and js.text == "console.log(1)"
        assert "javascript" in js.headers["content-type"]
        assert "script-src 'self';" in js.headers["content-security-policy"]
        css = await c.get("/console/assets/style.css")
        assert css.headers["content-type"].startswith("text/css")
        # Each load has a nonce of its own for the terminal's <style> elements.
        nonces = []
        for _ in range(2):
            page = await c.get("/console/")
            nonce = page.text.split('content="')[1].split('"')[0]
            assert len(nonce) >= 24 and f"style-src 'self' 'nonce-{nonce}';" in \
                page.headers["content-security-policy"]
            nonces.append(nonce)
        assert nonces[0] != nonces[1]
        # The API keeps its own headers: the CSP is the console's alone.
        assert "content-security-policy" not in (await c.get("/healthz")).headers


async def test_assets_are_plain_names_in_the_bundle(inproc_root: Path) -> None:
    root = inproc_root / "console-names"
    dist = _bundle(root)
    async with serving(root / "srv", console_dir=dist) as api:
        c = api.client()
        for path in ("/console/assets/nope.js", "/console/assets/..%2F..%2Fsecret.txt",
                     "/console/assets/.hidden", "/console/assets/%2e%2e"):
            error(await c.get(path), 404, "not_found")
        assert (await c.get("/console/assets/../../secret.txt")).status_code == 404


async def test_an_unbuilt_console_says_how_to_build_it(inproc_root: Path) -> None:
    root = inproc_root / "console-missing"
    root.mkdir()
    root.chmod(0o711)
    async with serving(root / "srv", console_dir=root / "nowhere") as api:
        r = await api.client().get("/console/")
        assert r.status_code == 503
        assert "has not been built" in r.text and "npm run build" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        error(await api.client().get("/console/assets/app.js"), 404, "not_found")


async def test_the_default_console_dir_is_the_source_tree(api: Api) -> None:
    assert api.settings.console_dir is None
    r = await api.client().get("/console/")
    built = (Path(__file__).resolve().parents[2] / "console" / "dist" / "index.html").exists()
    assert r.status_code == (200 if built else 503)


async def test_no_third_party_pages_share_the_consoles_origin(api: Api) -> None:
    # Swagger UI and ReDoc come from a CDN: on this origin they could read a console
    # tab's key. The schema itself stays.
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        error(await api.client().get(path), 404, "not_found")
    assert (await api.client().get("/openapi.json")).json()["info"]["title"] == "Chaser"
