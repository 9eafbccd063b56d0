"""`rsi corpus stats DIR [--json]` and `rsi corpus export DIR --format trl OUT`."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rsi corpus")
    sub = parser.add_subparsers(dest="action", required=True)
    st = sub.add_parser("stats", help="rows, parse rates, position bias, judge accuracy, pairs per iteration")
    st.add_argument("dir", help="a run folder, its corpus/ folder or one iter_NNN folder")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ex = sub.add_parser("export", help="write the preferences as a DPO-ready dataset")
    ex.add_argument("dir")
    ex.add_argument("out")
    ex.add_argument("--format", choices=["trl", "jsonl"], default="trl")
    ex.add_argument("--min-margin", type=float, default=0.0)
    ex.add_argument("--level", type=int, action="append", help="keep pairs of these levels only (repeatable)")
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
    return 0
