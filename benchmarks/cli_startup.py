"""Benchmark: wall time of ``medseq --help`` in a fresh process, against ``import torch``.

Runs, interleaved, ``python -m medseq --help`` and ``python -c "import torch"`` (each a new
interpreter, page cache warm) and prints the median of each and their ratio (target <= 0.25).
Also checks that ``--help`` loaded none of torch, monai, SimpleITK or scipy.

Usage:
    python benchmarks/cli_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET = 0.25
HEAVY = ("torch", "monai", "SimpleITK", "scipy")


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_modules_after_help() -> list[str]:
    code = (
        "import sys\n"
        "from medseq.cli import main\n"
        "sys.argv = ['medseq', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    help_command = [sys.executable, "-m", "medseq", "--help"]
    torch_command = [sys.executable, "-c", "import torch"]
    wall_time(help_command)  # warm the page cache for both
    wall_time(torch_command)
    help_times: list[float] = []
    torch_times: list[float] = []
    for _ in range(args.runs):
        help_times.append(wall_time(help_command))
        torch_times.append(wall_time(torch_command))
    t_help = statistics.median(help_times)
    t_torch = statistics.median(torch_times)
    ratio = t_help / t_torch
    heavy = heavy_modules_after_help()
    print(f"medseq --help: {t_help:.3f} s (median of {args.runs})")
    print(f"python -c 'import torch': {t_torch:.3f} s (median of {args.runs})")
    print(f"ratio: {ratio:.3f} (target <= {TARGET}) {'OK' if ratio <= TARGET else 'OVER TARGET'}")
    print(f"heavy modules loaded by --help: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
