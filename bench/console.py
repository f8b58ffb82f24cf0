"""The web console's first load (issue 16, "Speed"): a fresh tab opening /console with
200 sessions to list, measured in the browser's own performance timeline.

Run as root: `.venv/bin/python bench/console.py [--sessions 200] [--loads 15]`. Prints
the bundle's size, then per load (in fresh tabs, alternately with an empty HTTP cache,
as a first visit, and revalidating it, as a return visit): the time from navigation start until the session list is on the
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
        listed, dcl, load, html, cold = [], [], [], [], []
        with chromium() as browser:
            for i in range(2 * args.loads + 1):
                page = browser.new_page()
                if i % 2 == 0:  # an empty HTTP cache: a first visit
                    cdp = browser.new_cdp_session(page)
                    cdp.send("Network.enable")
                    cdp.send("Network.clearBrowserCache")
                page.add_init_script(f"sessionStorage.setItem('chaser.key', {srv.admin_key!r})")
                page.goto(srv.url + "/console/")
                page.wait_for_selector(f"main tbody tr:nth-child({args.sessions})")
                m = page.evaluate(TIMING)
                page.close()
                assert m["rows"] >= args.sessions and m["listed"] is not None, m
                if i == 0:
                    print(f"  the browser's very first tab (its start-up included): sessions "
                          f"listed at {m['listed']:.1f} ms (DOMContentLoaded {m['dcl']:.1f} ms)")
                elif i % 2 == 0:
                    cold.append(m["listed"])
                else:
                    listed.append(m["listed"]); dcl.append(m["dcl"])
                    load.append(m["load"]); html.append(m["html"])
        print(f"browser timings, fresh tabs ({args.sessions} sessions listed):")
        report("sessions listed, empty cache", cold)
        report("sessions listed, cache revalidated", listed)
        report("DOMContentLoaded", dcl)
        report("load event", load)
        report("floor: the HTML document (responseEnd)", html)
        report("floor: GET /v1/sessions from Python", floor)
        print(f"median first load: {statistics.median(cold):.1f} ms with an empty cache, "
              f"{statistics.median(listed):.1f} ms revalidating (target < 300 ms)")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: c.delete(f"/v1/sessions/{i}"), ids))


if __name__ == "__main__":
    main()
