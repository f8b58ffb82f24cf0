"""The web console's first load (issue 16, "Speed"): a fresh tab opening /console with
200 sessions to list, measured in the browser's own performance timeline.

Run as root: `.venv/bin/python bench/console.py [--sessions 200] [--loads 15]`. Prints
the bundle's size, then per load (the first with an empty cache, the rest revalidating
it as a reload does): the time from navigation start until the session list is on the
screen (`performance.mark('chaser:sessions-listed')` in the page, after the rows are in
the DOM), DOMContentLoaded and the load event; beside them the floors: the HTML
document alone (responseEnd) and `GET /v1/sessions` timed from Python.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import report, running_server, timed

from tests.console.browser import DIST, chromium  # noqa: E402  (after _common's path)

TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const mark = performance.getEntriesByName('chaser:sessions-listed')[0];
  const rows = document.querySelectorAll('main tbody tr').length;
  return {listed: mark ? mark.startTime : null, dcl: nav.domContentLoadedEventEnd,
          load: nav.loadEventEnd, html: nav.responseEnd, rows};
}"""


def bundle_size() -> str:
    files = [DIST / "index.html", *sorted((DIST / "assets").glob("*.js")),
             *sorted((DIST / "assets").glob("*.css"))]
    raw = sum(f.stat().st_size for f in files)
    packed = sum(len(gzip.compress(f.read_bytes())) for f in files)
    return f"{raw / 1024:.1f} KiB ({packed / 1024:.1f} KiB gzipped; served uncompressed)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--loads", type=int, default=15)
    args = ap.parse_args()
    print(f"console bundle: {bundle_size()}")
    with running_server() as srv, srv.client() as c:
        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: c.post("/v1/sessions", json={}).json()["id"],
                                range(args.sessions)))
        print(f"{len(ids)} sessions started in {time.perf_counter() - t:.1f} s")
        floor = timed(lambda: c.get("/v1/sessions").raise_for_status(), 20)
        listed, dcl, load, html = [], [], [], []
        with chromium() as browser:
            for i in range(args.loads + 1):
                page = browser.new_page()
                page.add_init_script(f"sessionStorage.setItem('chaser.key', {srv.admin_key!r})")
                page.goto(srv.url + "/console/")
                page.wait_for_selector(f"main tbody tr:nth-child({args.sessions})")
                m = page.evaluate(TIMING)
                page.close()
                assert m["rows"] >= args.sessions and m["listed"] is not None, m
                if i == 0:
                    print(f"  first load, empty cache: sessions listed at {m['listed']:.1f} ms "
                          f"(DOMContentLoaded {m['dcl']:.1f} ms, load {m['load']:.1f} ms)")
                    continue
                listed.append(m["listed"]); dcl.append(m["dcl"])
                load.append(m["load"]); html.append(m["html"])
        print(f"browser timings over {args.loads} fresh tabs ({args.sessions} sessions listed):")
        report("sessions listed (mark after the rows)", listed)
        report("DOMContentLoaded", dcl)
        report("load event", load)
        report("floor: the HTML document (responseEnd)", html)
        report("floor: GET /v1/sessions from Python", floor)
        print(f"median first load: {statistics.median(listed):.1f} ms (target < 300 ms)")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: c.delete(f"/v1/sessions/{i}"), ids))


if __name__ == "__main__":
    main()
