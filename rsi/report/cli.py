"""`rsi report RUN_DIR`: argparse front end; prints the page's path so a shell can open it."""

from __future__ import annotations

import sys

from rsi.cli_args import ArgParser
from rsi.report import SummaryError, build_report


def main(argv: list[str]) -> int:
    parser = ArgParser(
        prog="rsi report",
        description="Plots and tables of a run (RUN_DIR/summary.json) to RUN_DIR/report/index.html.")
    parser.add_argument("run_dir", help="the run folder (run.dir of `rsi run`)")
    ns = parser.parse_args(argv)
    try:
        page = build_report(ns.run_dir)
    except SummaryError as e:
        print(f"rsi report: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the report folder or a file in it cannot be written
        print(f"rsi report: cannot write {e.filename or ns.run_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
