"""Wall time of `vtrain --help` and `vtrain plugins` (target for --help: <= 0.3 s).

    python benchmarks/bench_cli_startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def measure(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("vtrain") or os.path.join(os.path.dirname(sys.executable), "vtrain")
    baseline = measure([sys.executable, "-c", "pass"], args.repeat)
    help_time = measure([exe, "--help"], args.repeat)
    plugins_time = measure([exe, "plugins"], args.repeat)
    print(f"python -c pass  : {baseline:.3f} s (interpreter start-up, for reference)")
    print(f"vtrain --help   : {help_time:.3f} s (target <= 0.3 s)")
    print(f"vtrain plugins  : {plugins_time:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
