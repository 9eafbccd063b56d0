"""`rsi corpus stats DIR [--json]` and `rsi corpus export DIR --format trl OUT`."""

from __future__ import annotations

import json
import sys

from rsi.cli_args import ArgParser, bounded_float, bounded_int

MAX_LEVEL = 127  # a pair's level is stored as an int8 (rsi.corpus.schema)


def main(argv: list[str]) -> int:
    parser = ArgParser(prog="rsi corpus")
    sub = parser.add_subparsers(dest="action", required=True)
    st = sub.add_parser("stats", help="rows, parse rates, position bias, judge accuracy, pairs per iteration")
    st.add_argument("dir", help="a run folder, its corpus/ folder or one iter_NNN folder")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ex = sub.add_parser("export", help="write the preferences as a DPO-ready dataset")
    ex.add_argument("dir")
    ex.add_argument("out")
    ex.add_argument("--format", choices=["trl", "jsonl"], default="trl")
    ex.add_argument("--min-margin", type=bounded_float(0.0, 1.0), default=0.0,
                    help="keep pairs with at least this margin (margins are in [0, 1])")
    ex.add_argument("--level", type=bounded_int(1, MAX_LEVEL), action="append",
                    help="keep pairs of these levels only (repeatable)")
    ns = parser.parse_args(argv)

    from rsi.corpus.export import export_preferences
    from rsi.corpus.stats import corpus_stats, format_stats

    try:
        if ns.action == "stats":
            stats = corpus_stats(ns.dir)
            print(json.dumps(stats, indent=2) if ns.json else format_stats(stats))
        else:
            n = export_preferences(ns.dir, ns.out, ns.format, min_margin=ns.min_margin, levels=ns.level)
            print(f"wrote {n} preference rows to {ns.out}")
    except (FileNotFoundError, ValueError) as e:
        print(f"rsi corpus: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # past the checks: the disk filled, or the folder changed underneath
        print(f"rsi corpus: {e.filename or ns.dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0
