"""Shared fixtures: the tiny offline model (built once per session) and one local Ray for the session; the test
tiers (every test carries exactly one of the markers `unit`, `ray`, `e2e`) and the seconds each tier took."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from rsi.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def ray_local():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4)
    yield
    if started:
        ray.shutdown()


# Tiers, registered in pyproject.toml: unit (no Ray, no model; the whole tier in under 60 s), ray (local Ray with
# stand-in or tiny-model engines, or the tiny model in-process), e2e (full runs on the tiny model; hostile programs
# and HumanEval through the real sandbox).
TIERS = ("unit", "ray", "e2e")
_TIER_OF = pytest.StashKey[dict]()


@pytest.fixture(scope="module")
def engine(tiny_model: Path, ray_local):
    """A vLLM engine actor on the tiny model, per test module."""
    import ray

    from rsi.inference import EngineSpec, start_engine

    actor = start_engine(EngineSpec(model_path=str(tiny_model), backend="vllm", kv_cache_gb=0.5,
                                    max_model_len=4096), num_cpus=0)
    yield actor
    ray.kill(actor)


@pytest.fixture(scope="module")
def sandbox(ray_local):
    """A sandbox pool on Ray (one worker, two slots), per test module."""
    from rsi.sandbox.config import SandboxConfig
    from rsi.sandbox.pool import SandboxPool

    pool = SandboxPool(SandboxConfig(slots=2), num_workers=1, num_cpus_per_worker=0)
    yield pool
    pool.close()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: a test without a tier fails every run, not only full ones
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tier_of, wrong = {}, []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) == 1:
            tier_of[item.nodeid] = tiers[0]
        else:
            wrong.append(f"  {item.nodeid}: {' and '.join(tiers) if tiers else 'no tier marker'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one tier marker of {', '.join(TIERS)} (a `pytestmark = pytest.mark.unit` "
            "line per file, or a decorator per test; tiers are described in pyproject.toml):\n" + "\n".join(wrong))
    config.stash[_TIER_OF] = tier_of


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    """Seconds per tier (setup, call and teardown of its tests), so a slow unit tier shows."""
    tier_of = config.stash.get(_TIER_OF, {})
    seconds: dict[str, float] = defaultdict(float)
    tests: dict[str, set[str]] = defaultdict(set)
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if not isinstance(rep, pytest.TestReport):
                continue
            # Under pytest-xdist the workers collect, not this process: the report's markers name the tier.
            tier = tier_of.get(rep.nodeid) or next((t for t in TIERS if t in rep.keywords), None)
            if tier:
                seconds[tier] += rep.duration
                tests[tier].add(rep.nodeid)
    if not seconds:
        return
    workers = getattr(config.option, "numprocesses", None)
    terminalreporter.write_sep("=", "seconds per tier" + (f" (summed over {workers} workers)" if workers else ""))
    for tier in TIERS:
        if tier in seconds:
            terminalreporter.write_line(f"{tier:<5} {seconds[tier]:8.1f} s  {len(tests[tier]):4d} tests")
