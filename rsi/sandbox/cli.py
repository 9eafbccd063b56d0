"""`rsi sandbox run --program P.py --tests T.py [--format humaneval|json] [--entry-point NAME] [--helpers H.py]
[--timeout S] [--memory-mb M] [--launcher bwrap|landlock] --json`: run one program, print one Verdict.

Exit status: 0 pass, 1 not pass, 2 usage error, 3 infra (the sandbox itself failed).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from typing import Any

from rsi.cli_args import ArgParser, bounded_float, bounded_int
from rsi.input_files import InputFileError, check_fields, for_flag, json_type, loads, read_text
from rsi.sandbox.config import LAUNCHERS, LIMIT_BOUNDS, Limits, SandboxConfig
from rsi.sandbox.executor import IsolationBroken, Sandbox, SandboxUnavailable
from rsi.sandbox.verdict import INFRA, PASS

# Converters for the flags `rsi eval humaneval` shares: the bounds Limits and SandboxConfig enforce. Slot uids
# stay below 2**31, past which tools that keep a uid signed misread it.
TIMEOUT_S = bounded_float(*LIMIT_BOUNDS["timeout_s"])
UID_BASE = bounded_int(1000, (1 << 31) - 1 - SandboxConfig.uid_count)


def _parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="rsi sandbox", description="Run untrusted code in the sandbox.")
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
    run.add_argument("--timeout", type=TIMEOUT_S, default=Limits.timeout_s, help="seconds (per case for json)")
    run.add_argument("--memory-mb", type=bounded_int(*map(int, LIMIT_BOUNDS["memory_mb"])), default=Limits.memory_mb)
    run.add_argument("--launcher", choices=LAUNCHERS, default=SandboxConfig.launcher)
    run.add_argument("--uid-base", type=UID_BASE, default=SandboxConfig.uid_base)
    run.add_argument("--no-canary", action="store_true", help="skip the isolation self-test (faster)")
    run.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return p


# The optional fields of a JSON case (rsi.sandbox.executor.json_job), with their JSON types; `expected` is any value.
CASE_FIELDS: dict[str, type | tuple[type, ...]] = {"function": str, "args": list, "kwargs": dict,
                                                   "rel_tol": (int, float), "name": str}
# The flag behind each key a Limits or SandboxConfig refusal names.
FLAGS = {"timeout_s": "--timeout", "memory_mb": "--memory-mb", "uid_base": "--uid-base", "launcher": "--launcher"}


def read_cases(path: str, text: str) -> list[dict[str, Any]]:
    """The JSON format's cases, a list or {"cases": [...]}, at least one, each an object with `expected` and its
    other fields of their types; InputFileError naming the file (and the case) otherwise."""
    tests = loads(text, path, (list, dict), whole_file=True)
    cases = tests.get("cases") if isinstance(tests, dict) else tests
    if not isinstance(cases, list) or not cases:
        raise InputFileError(f"{path}: expected a non-empty list of cases, or {{\"cases\": [...]}}")
    for k, case in enumerate(cases):
        where = f"{path}: case {k}"
        if not isinstance(case, dict):
            raise InputFileError(f"{where}: expected a JSON object, got {json_type(case)}")
        check_fields(case, {"expected": object}, where, what="a case")
        check_fields(case, CASE_FIELDS, where, optional=True)
    return cases


def read_inputs(args: argparse.Namespace) -> tuple[str, str | list[dict[str, Any]], str]:
    """(program, tests, helpers) from the files the flags name, none of them empty; ValueError naming the flag
    and the file otherwise."""
    texts = []
    files = [("--program", args.program), ("--tests", args.tests)]
    for flag, path in files + ([("--helpers", args.helpers)] if args.helpers is not None else []):
        text = for_flag(flag, partial(read_text, path))
        if not text.strip():
            raise InputFileError(f"{flag} {path}: empty file")
        texts.append(text)
    if args.format == "humaneval" and not args.entry_point:
        raise ValueError("--entry-point is required for the humaneval format")
    if args.format != "humaneval" and args.helpers is not None:
        raise ValueError("--helpers applies to the humaneval format only")
    tests = for_flag("--tests", partial(read_cases, args.tests, texts[1])) if args.format == "json" else texts[1]
    return texts[0], tests, "".join(texts[2:])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] not in (["run"], ["-h"], ["--help"]):
        argv = ["run", *argv]  # `run` is the only command; callers may pass just its arguments
    args = _parser().parse_args(argv)
    try:
        program, tests, helpers = read_inputs(args)
    except ValueError as exc:
        print(f"rsi sandbox run: {exc}", file=sys.stderr)
        return 2
    try:
        limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
        cfg = SandboxConfig(launcher=args.launcher, slots=1, uid_base=args.uid_base, limits=limits,
                            canary=not args.no_canary)
    except ValueError as exc:  # the converters keep to the same bounds; this names a flag should they part
        flag = next((f for key, f in FLAGS.items() if key in str(exc)), "a limit")
        print(f"rsi sandbox run: {flag}: {exc}", file=sys.stderr)
        return 2
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
