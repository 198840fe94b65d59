"""``python -m benchmarks --out FILE [--quick] [--only GROUP]`` runs the benchmark;
``python -m benchmarks WORKER ARGS.json`` runs one of its worker processes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.run import GROUPS, WORKERS, run_benchmark, worker_main


def main(argv: list[str]) -> int:
    if argv and argv[0] in WORKERS:
        return worker_main(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--out", required=True, help="JSON results (a .md table goes next to it)")
    parser.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    parser.add_argument("--only", action="append", choices=sorted(GROUPS))
    args = parser.parse_args(argv)
    return run_benchmark(Path(args.out), quick=args.quick, only=args.only or ())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
