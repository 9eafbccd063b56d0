"""`rsi sandbox run --program P.py --tests T.py [--format humaneval|json] [--entry-point NAME] [--helpers H.py]
[--timeout S] [--memory-mb M] [--launcher bwrap|landlock] --json`: run one program, print one Verdict.

Exit status: 0 pass, 1 not pass, 2 usage error, 3 infra (the sandbox itself failed).
"""

from __future__ import annotations

import argparse
import json
import sys

from rsi.sandbox.config import LAUNCHERS, Limits, SandboxConfig
from rsi.sandbox.executor import IsolationBroken, Sandbox, SandboxUnavailable
from rsi.sandbox.verdict import INFRA, PASS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rsi sandbox", description="Run untrusted code in the sandbox.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one program against its tests and print the verdict")
    run.add_argument("--program", required=True, help="Python source of the program")
    run.add_argument(
        "--tests",
        required=True,
        help="humaneval: test code defining check(candidate); json: a list of cases "
        '[{"function"?, "args", "kwargs"?, "expected", "rel_tol"?}]',
    )
    run.add_argument("--format", choices=("humaneval", "json"), default="humaneval")
    run.add_argument("--entry-point", default="", help="function under test (humaneval: required)")
    run.add_argument(
        "--helpers",
        default=None,
        help="humaneval: trusted source (the problem's prompt) whose definitions the tests call; of the "
        "program the tests then see the entry point alone",
    )
    run.add_argument("--timeout", type=float, default=Limits.timeout_s, help="seconds (per case for json)")
    run.add_argument("--memory-mb", type=int, default=Limits.memory_mb)
    run.add_argument("--launcher", choices=LAUNCHERS, default=SandboxConfig.launcher)
    run.add_argument("--uid-base", type=int, default=SandboxConfig.uid_base)
    run.add_argument("--no-canary", action="store_true", help="skip the isolation self-test (faster)")
    run.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] not in (["run"], ["-h"], ["--help"]):
        argv = ["run", *argv]  # `run` is the only command; callers may pass just its arguments
    args = _parser().parse_args(argv)
    texts = []
    files = [("--program", args.program), ("--tests", args.tests)]
    for flag, path in files + ([("--helpers", args.helpers)] if args.helpers is not None else []):
        try:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        except (OSError, UnicodeDecodeError) as exc:
            print(f"rsi sandbox run: {flag} {path}: {exc}", file=sys.stderr)
            return 2
    program, tests_text, helpers = texts[0], texts[1], "".join(texts[2:])
    if args.format == "humaneval" and not args.entry_point:
        print("rsi sandbox run: --entry-point is required for the humaneval format", file=sys.stderr)
        return 2
    if args.format != "humaneval" and args.helpers is not None:
        print("rsi sandbox run: --helpers applies to the humaneval format only", file=sys.stderr)
        return 2
    try:
        tests = json.loads(tests_text) if args.format == "json" else tests_text
    except ValueError as exc:
        print(f"rsi sandbox run: --tests {args.tests}: not JSON ({exc})", file=sys.stderr)
        return 2
    if args.format == "json" and isinstance(tests, dict):
        tests = tests.get("cases", [])
    limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    cfg = SandboxConfig(
        launcher=args.launcher, slots=1, uid_base=args.uid_base, limits=limits, canary=not args.no_canary
    )
    try:
        with Sandbox(cfg) as sandbox:
            verdict = sandbox.run(
                program, tests, fmt=args.format, entry_point=args.entry_point, helpers=helpers, limits=limits
            )
    except (IsolationBroken, SandboxUnavailable) as exc:
        print(f"rsi sandbox: {exc}", file=sys.stderr)
        return 3
    except (OSError, ValueError, RuntimeError) as exc:  # no slot free, lock dir unusable, bad case
        print(f"rsi sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(verdict.to_dict()))
    else:
        print(
            f"{verdict.status} ({verdict.wall_ms:.0f} ms){': ' + verdict.message if verdict.message else ''}"
        )
        for t in verdict.tests:
            print(f"  {t.name}: {t.status}{': ' + t.message if t.message else ''}")
    if verdict.status == PASS:
        return 0
    return 3 if verdict.status == INFRA else 1


if __name__ == "__main__":
    sys.exit(main())
