"""Serve sandbox jobs for the hostile tests as whatever user this process runs as (the tests start it
under a non-root uid with setpriv). One JSON request per stdin line, one JSON answer per stdout line:

    {"op": "run", "job": {...}, "limits": {...}}   -> a Verdict as a dict
    {"op": "run_many", "jobs": [...], "limits": {...}} -> a list of Verdict dicts
    {"op": "info"}                                  -> {"harness", "server_pids", "pid", "state"}
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox, SandboxUnavailable

    cfg = SandboxConfig(**json.loads(sys.argv[1]))
    cfg = SandboxConfig(**{**cfg.__dict__, "limits": Limits(**cfg.limits)})  # type: ignore[arg-type]
    try:
        sandbox = Sandbox(cfg, canary=False)
    except SandboxUnavailable as exc:
        print(json.dumps({"unavailable": str(exc)}), flush=True)
        return 0
    print(json.dumps({"ready": True}), flush=True)
    with sandbox:
        for line in sys.stdin:
            req = json.loads(line)
            limits = Limits(**req["limits"]) if req.get("limits") else None
            if req["op"] == "run":
                out: object = sandbox.run_job(req["job"], limits).to_dict()
            elif req["op"] == "run_many":
                out = [v.to_dict() for v in sandbox.run_many(req["jobs"], limits)]
            else:
                out = {
                    "harness": sandbox.launcher.harness,
                    "server_pids": sorted(sandbox.server_pids()),
                    "pid": os.getpid(),
                    "state": [r.server_state() for r in sandbox.runners.values()],
                }
            print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
