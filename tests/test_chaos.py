"""Chaos soak: a 1,000-chain corpus pass (two families, one of them executing programs in the real sandbox)
while a killer ends engine replicas and sandbox workers at random, at least 20 times. Afterwards the corpus holds
exactly the rows of an undisturbed pass of the same seed: none lost, none twice, every chain committed, those cut
off by a failed pass retried by the resumed one.

The engines are stand-ins (deterministic answers keyed by prompt and seed, no model: a model would make the soak
take hours on CPU) behind the real EnginePool router; the Ray Data pipeline, the corpus writer and the sandbox are
the real ones. An engine replica that dies is replaced by the pool and its requests retried; a sandbox worker that
dies is not replaced by its pool, so the pass fails and is rerun with run.resume=true, as a user would rerun
`rsi run`. The kill count, retries and the time against the undisturbed pass are printed."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_pool import FakeEngine

from rsi.config import FamilyConfig, RsiConfig
from rsi.corpus.stream import COMMITS, read_manifest, read_table
from rsi.inference import EngineSpec, PoolConfig, start_pool
from rsi.tasks.python_output import PythonOutputConfig

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CHAINS = {"open_ended": 700, "python_output": 300}  # in this ratio both families last the whole pass
MIN_KILLS = 24
TABLES = ("performances", "judgments", "preferences")


class StandInEngine(FakeEngine):
    """Answers by the request's schema, the same answer for the same prompt and seed (a retried request is the
    same row): a ranking for a judge, a prediction for predict_output, else a one-line program."""

    def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        time.sleep(0.002 * len(requests))  # pacing: a little work per request, so kills land mid-batch
        return [self._answer(r) for r in requests]

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps([request["messages"], request.get("seed")], sort_keys=True)
        h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        props = (request.get("json_schema") or {}).get("properties", {})
        if "ranking" in props:
            ranking = props["ranking"]
            if "enum" in ranking:
                order = ranking["enum"][h % len(ranking["enum"])]
            else:
                order = list(ranking["items"]["enum"])
                random.Random(h).shuffle(order)
            text = json.dumps({"rationale": "", "ranking": order})
        elif "prediction" in props:
            text = json.dumps({"reasoning": "", "prediction": h % 3})
        else:
            text = f"```python\ndef solution():\n    return {h % 3}\n```"
        return {"text": text, "model_version": self.version_, "num_tokens": 8, "num_prompt_tokens": 32,
                "finish_reason": "stop", "token_ids": []}


def stand_in_launcher(spec: EngineSpec, index: int) -> Any:
    import ray

    return ray.remote(StandInEngine).options(num_cpus=0, max_concurrency=4).remote(spec)


@pytest.fixture(scope="module", autouse=True)
def by_value(ray_local):
    from ray import cloudpickle

    # Ray workers cannot import the test modules by name; ship the stand-ins by value.
    modules = [sys.modules[__name__], sys.modules[FakeEngine.__module__]]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    yield
    for module in modules:
        cloudpickle.unregister_pickle_by_value(module)


def _config(resume: bool) -> RsiConfig:
    cfg = RsiConfig(tasks={
        "open_ended": FamilyConfig(seeds=[f"dilemma {k}" for k in range(CHAINS["open_ended"])], candidates=2),
        "python_output": PythonOutputConfig(seeds=[f"topic {k}" for k in range(CHAINS["python_output"])],
                                            candidates=2, predictions=2)})
    cfg.run.resume, cfg.run.commit_chains, cfg.loop.chains_in_flight = resume, 8, 8
    # The position balance admits judgement pairs in the order chains finish, which differs from run to run
    # with or without faults; off, the preference rows are a function of the chains alone and compare exactly.
    cfg.judging.position_balance = -1
    return cfg


def _sandbox() -> Any:
    from rsi.sandbox.config import SandboxConfig
    from rsi.sandbox.pool import SandboxPool

    # One worker: the pool sends a call of up to 4 x slots jobs (every call here) to its first worker only.
    return SandboxPool(SandboxConfig(slots=2), num_workers=1, num_cpus_per_worker=0)


def _close(sandbox: Any) -> None:
    import ray

    for actor in sandbox.actors:  # some are dead: kill, never wait on them
        ray.kill(actor)


class Killer(threading.Thread):
    """Every `every` committed parts, ends one engine replica or one sandbox worker, chosen at random."""

    def __init__(self, pool: Any, holder: dict[str, Any], commits: Path, every: int, seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.pool, self.holder, self.commits, self.every = pool, holder, commits, every
        self.rng = random.Random(seed)
        self.kills: Counter = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        import ray

        next_at = self.every
        while not self.stop.wait(0.05):
            if len(list(self.commits.glob("part-*.json"))) < next_at:
                continue
            next_at += self.every
            if self.rng.random() < 0.8:  # a dead sandbox worker costs a whole rerun of the pass
                replicas = ray.get(self.pool.replica_handles.remote())
                ray.kill(self.rng.choice(replicas), no_restart=True)
                self.kills["engine replica"] += 1
            else:
                ray.kill(self.rng.choice(self.holder["sandbox"].actors), no_restart=True)
                self.kills["sandbox worker"] += 1


def _pass(out: Path, pool: Any, killer_every: int | None) -> dict[str, Any]:
    """The corpus pass, rerun with resume after each failure, under the killer when `killer_every` is set."""
    from rsi.pipeline.corpus_pass import run_corpus_pass

    holder = {"sandbox": _sandbox()}
    killer = Killer(pool, holder, out / COMMITS, killer_every) if killer_every else None
    t0 = time.perf_counter()
    if killer:
        killer.start()
    attempts, failures = 0, []
    try:
        while True:
            attempts += 1
            try:
                run_corpus_pass(_config(resume=attempts > 1), pool, 0, out, model_version=0, judge=pool,
                                sandbox=holder["sandbox"])
                break
            except Exception as e:  # a dead sandbox worker fails the pass: rerun it, resuming, on a new pool
                failures.append(type(e).__name__)
                assert attempts < 40, failures
                _close(holder["sandbox"])
                holder["sandbox"] = _sandbox()
    finally:
        if killer:
            killer.stop.set()
            killer.join()
        _close(holder["sandbox"])
    return {"seconds": time.perf_counter() - t0, "attempts": attempts, "failures": failures,
            "kills": dict(killer.kills) if killer else {}}


def _ids(out: Path) -> dict[str, list[str]]:
    return {t: read_table(out, t, ["id"]).column("id").to_pylist() for t in TABLES}


def test_chaos_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    import ray

    spec = EngineSpec(model_path="/stand-in/v0")
    config = PoolConfig(replicas=3, max_in_flight=16, max_restarts=100, num_cpus=0, continuous=True)
    pool = start_pool(spec, config, launcher=stand_in_launcher)
    try:
        calm = _pass(tmp_path / "calm", pool, killer_every=None)
        parts = read_manifest(tmp_path / "calm")["parts"]
        chaos = _pass(tmp_path / "chaos", pool, killer_every=max(1, parts // (MIN_KILLS + 4)))
        restarts = sum(r["restarts"] for r in ray.get(pool.health.remote())["replicas"])
    finally:
        for h in ray.get(pool.replica_handles.remote()):
            ray.kill(h)
        ray.kill(pool)

    kills = sum(chaos["kills"].values())
    print(f"\nchaos soak: {sum(CHAINS.values())} chains, {parts} parts; kills {chaos['kills']} ({kills}); "
          f"engine replicas restarted {restarts}; passes {chaos['attempts']} (failed: {Counter(chaos['failures'])}); "
          f"{chaos['seconds']:.1f} s vs {calm['seconds']:.1f} s undisturbed "
          f"(overhead x{chaos['seconds'] / calm['seconds']:.2f})")
    assert kills >= MIN_KILLS - 4 and calm["attempts"] == 1
    assert chaos["kills"].get("engine replica") and chaos["kills"].get("sandbox worker")
    manifest = read_manifest(tmp_path / "chaos")
    assert manifest["chains"] == sum(CHAINS.values())  # every chain committed
    got, want = _ids(tmp_path / "chaos"), _ids(tmp_path / "calm")
    for t in TABLES:
        assert not [i for i, n in Counter(got[t]).items() if n > 1], f"{t}: rows written twice"
        assert sorted(got[t]) == sorted(want[t]), f"{t}: {len(set(want[t]) - set(got[t]))} rows lost"
    assert manifest["rows"] == read_manifest(tmp_path / "calm")["rows"]
