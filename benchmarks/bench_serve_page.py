"""How long the dashboard's run page takes to draw the loss curve of a 10,000-step run (target: < 1 s).

    python benchmarks/bench_serve_page.py [--steps 10000] [--rounds 3]

A fake run folder (run_info.json and a 10,000-line metrics.jsonl, as vtrain writes them) is served by
``vtrain serve``'s own server; headless Chromium (Debian's ``chromium``, driven by Playwright) opens
the runs list, then navigates to the run page, and the time from navigation to the curve holding
every point is measured. Prints each round and the best, and the ratio to the 1 s target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "serve" / "tests"))
CHROMIUM = "/usr/bin/chromium"
TARGET_SECONDS = 1.0


def measure(steps: int, rounds: int) -> list[float]:
    from playwright.sync_api import sync_playwright
    from serve_helpers import make_fake_run, start_server, stop_server

    times = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as driver:
        root = Path(folder) / "runs"
        make_fake_run(root / "long", steps=steps)
        server, served = start_server(root)
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for _ in range(rounds):
                page = browser.new_page()
                page.goto(served.url + "/")  # assets cached before the measured navigation
                page.wait_for_selector("#runs tr[data-id]")
                started = page.evaluate("performance.now()")
                page.evaluate("location.hash = '#/run/0%2Flong'")
                page.wait_for_function("document.querySelector('path.series[data-name=raw]')?.dataset.points"
                                       f" === '{steps}'", timeout=120000)
                times.append((page.evaluate("performance.now()") - started) / 1000)
                page.close()
        finally:
            browser.close()
            stop_server(server, served)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        print(f"no Chromium at {CHROMIUM}: apt install chromium", file=sys.stderr)
        return 2
    times = measure(args.steps, args.rounds)
    for index, seconds in enumerate(times, 1):
        print(f"round {index}: {seconds:.3f} s")
    print(f"run page of a {args.steps}-step run: best {min(times):.3f} s; "
          f"ratio to the {TARGET_SECONDS:.0f} s target: {min(times) / TARGET_SECONDS:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
