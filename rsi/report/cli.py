"""`rsi report RUN_DIR`: argparse front end; prints the page's path so a shell can open it."""

from __future__ import annotations

import argparse
import sys

from rsi.report import SummaryError, build_report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rsi report",
        description="Plots and tables of a run (RUN_DIR/summary.json) to RUN_DIR/report/index.html.")
    parser.add_argument("run_dir", help="the run folder (run.dir of `rsi run`)")
    ns = parser.parse_args(argv)
    try:
        page = build_report(ns.run_dir)
    except SummaryError as e:
        print(f"rsi report: {e}", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
