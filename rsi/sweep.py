"""Hydra sweeps (`rsi run -m train.beta=0.05,0.3`): each job runs in its own folder under the sweep dir, the jobs
share the process's Ray but not its pools, and the sweep dir gets a summary with one row per job.

The sweep dir is `hydra.sweep.dir` (conf/config.yaml: `<run.dir>/sweep-<time>`), each job's `run.dir` its
`<sweep dir>/<job number>`: two jobs never write the same corpus or checkpoint.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from rsi.run_dir import RunDir

SUMMARY_JSON = "sweep_summary.json"
SUMMARY_CSV = "sweep_summary.csv"


def job_run_dir() -> str | None:
    """The run dir of the current job in a multirun (its Hydra output dir), None in a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.runtime.output_dir if hc.mode == RunMode.MULTIRUN else None


def final_metrics(run_dir: Path) -> dict[str, Any]:
    """What a sweep compares, from the run's last iteration record: versions, decision, corpus size, DPO loss,
    each held-out metric of the candidate and of the kept version, and the seconds of the whole run."""
    path = RunDir(run_dir).summary
    if not path.is_file():
        return {}
    history = json.loads(path.read_text())
    if not history:
        return {}
    last = history[-1]
    out: dict[str, Any] = {"iterations": len(history), "kept_version": last["kept_version"],
                           "decision": last["decision"], "preferences": last["preferences"],
                           "dpo_loss": last["dpo_loss"], "parse_rate": round(last["parse_rate"], 4),
                           "seconds": round(sum(sum(h["seconds"].values()) for h in history), 1)}
    for role in ("candidate", "kept"):
        for task, m in sorted((last.get("evals", {}).get(role) or {}).items()):
            out[f"{role}/{task}"] = m["value"]
    return out


def _key_values(overrides: list[str]) -> dict[str, str]:
    pairs = (o.split("=", 1) for o in overrides if "=" in o)
    return {k.lstrip("+~"): v for k, v in pairs}


def summary_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job: its number, the swept values (the overrides whose value differs between jobs; all of
    them for a one-job sweep), its status and final metrics."""
    values = [_key_values(j["overrides"]) for j in jobs]
    keys = list(dict.fromkeys(k for v in values for k in v))
    swept = [k for k in keys if len({v.get(k) for v in values}) > 1] or keys
    return [{"job": j["job"], **{k: v.get(k) for k in swept}, "status": j["status"], "run_dir": j["run_dir"],
             **j["metrics"]} for j, v in zip(jobs, values)]


def write_summary(sweep_dir: Path, jobs: list[dict[str, Any]]) -> Path:
    rows = summary_rows(sorted(jobs, key=lambda j: j["job"]))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SUMMARY_JSON).write_text(json.dumps({"jobs": jobs, "rows": rows}, indent=2))
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with open(sweep_dir / SUMMARY_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return sweep_dir / SUMMARY_CSV


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml): after every job of a multirun, the sweep dir's summary is rewritten
    with that job's row, so a sweep stopped half way still has the rows of its finished jobs."""

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        hc = config.hydra
        if hc.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(hc.sweep.dir)
        done = json.loads((sweep_dir / SUMMARY_JSON).read_text())["jobs"] if (sweep_dir / SUMMARY_JSON).is_file() \
            else []
        run_dir = Path(hc.runtime.output_dir)
        if job_return.status == JobStatus.COMPLETED:
            status = job_return._return_value or "ok"
        else:
            status = f"failed: {type(job_return._return_value).__name__}: {job_return._return_value}"
        job = {"job": int(hc.job.num), "overrides": list(job_return.overrides or []), "status": status,
               "run_dir": str(run_dir), "metrics": final_metrics(run_dir)}
        write_summary(sweep_dir, [j for j in done if j["job"] != job["job"]] + [job])
