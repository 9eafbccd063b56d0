"""The negotiation family: every operation run in order on a scripted engine (a valid deal, a turn that breaks the
format, an invalid deal with a lie), the rows and pairs it makes, and the whole family on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rsi.config import RsiConfig
from rsi.judging.config import JudgingConfig
from rsi.pipeline import steps
from rsi.pipeline.assemble import assemble_chain
from rsi.pipeline.corpus_pass import seed_chains
from rsi.tasks import BUILTIN, get_family
from rsi.tasks.dialogue import MAX_TURNS, referee
from rsi.tasks.negotiation import (
    DIALOGUE,
    FAMILY,
    NegotiationConfig,
    judge_agreement,
    referee_turn,
    turn_step,
)
from rsi.tasks.pareto import valid_points
from rsi.tasks.scenarios import claim_value, make_scenario, offer_text, valid, violations
from rsi.tasks.templates import JUDGE_SYSTEM


def _scenario_with_a_trap() -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """A seed whose scenario has a valid deal and a deal A may offer that breaks B's limits."""
    import itertools

    for k in range(200):
        seed = f"train-{k}"
        scn = make_scenario(seed)
        deals = itertools.product(*(range(len(i.options)) for i in scn.issues))
        trap = next((d for d in deals if not violations(scn, 0, d) and violations(scn, 1, d)), None)
        if trap is not None:
            best = max(valid_points(scn).items(), key=lambda kv: sum(kv[0]))[1]
            return seed, best, trap
    raise AssertionError("no scenario with a trap")


class ScriptedEngine:
    """Opening k: 0 offers the best joint deal, 1 breaks the format, 2 offers a deal B cannot keep and lies about a
    value; B accepts whatever is on the table. Judges rank the items in the order they were shown."""

    def __init__(self, seed: str, good: tuple[int, ...], trap: tuple[int, ...]) -> None:
        self.scn, self.good, self.trap, self.openings = make_scenario(seed), good, trap, 0
        self.calls: list[dict[str, Any]] = []

    def __call__(self, engine: Any, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for req in requests:
            self.calls.append(req)
            prompt = req["messages"][-1]["content"]
            if req["messages"][0]["content"] == JUDGE_SYSTEM:
                # a judge that prefers what it was shown first: its rankings of one set disagree
                labels = [req["labels"][i] for i in req["order"]]
                text = json.dumps({"rationale": "clear", "ranking": labels})
            elif "No messages yet" in prompt:
                k, self.openings = self.openings, self.openings + 1
                i = next(i for i in range(len(self.scn.issues)) if claim_value(self.scn, 0, i) is not None)
                lie = f"{self.scn.issues[i].name}={claim_value(self.scn, 0, i) + 5}"
                text = ["Let us share fairly.\nOFFER: " + offer_text(self.scn, 0, self.good),
                        "I want everything!\nOFFER: all of it",
                        f"VALUE: {lie}\nOFFER: "
                        + offer_text(self.scn, 0, self.trap)][k % 3]
            else:  # B's replies differ with the offer it saw: equal texts never form a pair
                text = f"Agreed ({len(prompt)}).\nACCEPT"
            out.append({"text": text, "num_tokens": 5, "num_prompt_tokens": 9, "finish_reason": "stop",
                        "model_version": 0})
        return out


def _run_family(monkeypatch, seed: str, script: ScriptedEngine, judging: JudgingConfig) -> dict[str, Any]:
    monkeypatch.setattr(steps, "_generate", script)
    fam_cfg = NegotiationConfig(seeds=[seed], candidates=3, max_tokens=64)
    row = seed_chains("negotiation", fam_cfg, 0, 0)[0]
    for index in range(len(FAMILY.ops)):
        batch = {k: np.array([v], dtype=object) for k, v in row.items()}
        out = steps.run_op(batch, family=FAMILY, op_index=index, fam_cfg=fam_cfg, judging=judging, engine=None,
                           judge=None)
        row = {k: v[0] for k, v in out.items()}
    return row


@pytest.mark.unit
def test_the_family_scores_dialogues_and_pairs_them(monkeypatch) -> None:
    seed, good, trap = _scenario_with_a_trap()
    script = ScriptedEngine(seed, good, trap)
    judging = JudgingConfig(max_tokens=64, rationale_chars=24)
    row = _run_family(monkeypatch, seed, script, judging)
    chain = json.loads(row["state"])
    turns = [i for i in chain["items"] if i["step"].startswith("turn_")]
    assert {i["step"] for i in turns} == {"turn_1", "turn_2"}  # every dialogue ended by turn 2
    first = sorted((i for i in turns if i["step"] == "turn_1"), key=lambda i: i["seed"])
    statuses = sorted(i["parse_status"] for i in first)
    assert statuses == ["bad_offer", "ok", "ok"]
    broken = next(i for i in first if i["parse_status"] == "bad_offer")
    assert not broken["kept"] and broken["procedural_detail"]["turn"]["raw"] == broken["completion"]

    dialogues = [i for i in chain["items"] if i["step"] == DIALOGUE]
    by_side = {s: [d for d in dialogues if d["parsed"]["side"] == s] for s in ("A", "B")}
    assert len(by_side["A"]) == 3 and len(by_side["B"]) == 2  # B never spoke after the broken opening
    a_results = sorted((d["procedural_detail"] for d in by_side["A"]), key=lambda r: r["ended"])
    assert [r["ended"] for r in a_results] == ["accepted", "accepted", "failure"]
    valid_one = next(r for r in a_results if r["valid"])
    invalid_one = next(r for r in a_results if r["ended"] == "accepted" and not r["valid"])
    scn = make_scenario(seed)
    assert tuple(valid_one["deal"]) == good and valid(scn, good) and valid_one["pareto_optimal"]
    assert valid_one["joint_efficiency"] == 1.0
    assert tuple(invalid_one["deal"]) == trap and invalid_one["deal_violations"]["B"]
    assert invalid_one["lies"] == [1, 0] and invalid_one["share"] == [0.0, 0.0]
    assert a_results[2]["failures"][0]["raw"] == "I want everything!\nOFFER: all of it"
    # the judge sees the side's sheet and the whole dialogue; the completion is that side's turns only
    d = by_side["B"][0]
    assert "private sheet" in d["parsed"]["shown"] and "You: Agreed (" in d["parsed"]["shown"]
    assert d["completion"].startswith("Agreed (") and d["completion"].endswith("\nACCEPT")

    tables = assemble_chain(row, FAMILY, judging)
    prefs = tables["preferences"]
    dialogue_pairs = [p for p in prefs if p["step"] == DIALOGUE]
    assert len(dialogue_pairs) == 2  # one per side
    for p in dialogue_pairs:
        chosen = next(d for d in dialogues if d["id"] == p["chosen_id"])
        assert chosen["procedural_detail"]["valid"]
    assert any(p["step"] == "rank_dialogues" for p in prefs)  # a judgement pair that the rules decide
    assert {j["step"] for j in tables["judgments"]} == {"rank_dialogues", "rank_dialogue_rankings"}
    derived = [p for p in tables["performances"] if p["step"] == DIALOGUE]
    assert all(p["finish_reason"] == "derived" for p in derived)
    # the scripted judge puts first what it was shown first: right in one order of each set, wrong in the other
    agree, compared = judge_agreement(chain["items"], chain["judgments"])
    level1 = [j for j in chain["judgments"] if j["step"] == "rank_dialogues" and j["level"] == 1]
    assert compared == sum(3 if len(j["candidate_ids"]) == 3 else 1 for j in level1) - sum(
        1 for j in level1 if len(j["candidate_ids"]) == 3)  # A's set: the failure and the invalid deal tie at 0
    assert 0 < agree < compared


@pytest.mark.unit
def test_an_acceptance_that_differs_from_the_table_ends_the_dialogue_with_its_text() -> None:
    seed, good, trap = _scenario_with_a_trap()
    scn = make_scenario(seed)
    opening = referee(scn, [], 0, "OFFER: " + offer_text(scn, 0, good))
    items = [{"id": "a", "step": turn_step(1), "parent_id": None, "completion": "x", "parsed":
              {"transcript": [opening]}, "kept": True},
             {"id": "b", "step": turn_step(2), "parent_id": "a", "completion": "ACCEPT: " + offer_text(scn, 1, trap),
              "parsed": None, "kept": True}]
    referee_turn(2, {"seed": seed, "items": items}, lambda jobs: [])
    b = items[1]
    assert b["parse_status"] == "accept_mismatch" and not b["kept"] and b["parsed"] is None
    assert b["procedural_detail"]["turn"]["raw"] == b["completion"] and "table holds" in b["parse_error"]


@pytest.mark.unit
def test_the_family_is_built_in_and_its_turns_alternate() -> None:
    assert "negotiation" in BUILTIN and get_family("negotiation") is FAMILY
    gens = [o for o in FAMILY.ops if o.__class__.__name__ == "Generate"]
    assert [g.step for g in gens] == [turn_step(t) for t in range(1, MAX_TURNS + 1)]
    assert all(g.parent == (None if t == 1 else turn_step(t - 1)) for t, g in enumerate(gens, 1))
    scn = make_scenario("train-3")
    opening = referee(scn, [], 0, "Hello there.\nOFFER: " + offer_text(scn, 0, next(iter(valid_points(scn).values()))))
    prompt = gens[1].variables("train-3", {"parsed": {"transcript": [opening]}})
    assert prompt["brief"].startswith(f"Scenario: {scn.title}. You are {scn.sides[1].role}.")
    assert "Them: Hello there." in prompt["transcript"] and "they offered, from your side" in prompt["transcript"]
    assert gens[0].variables("train-3", None)["transcript"].startswith("No messages yet")


@pytest.mark.unit
def test_held_out_seeds_are_refused_in_the_corpus() -> None:
    with pytest.raises(ValueError, match="heldout-"):
        NegotiationConfig(seeds=["train-1", "heldout-3"])


@pytest.mark.ray
def test_negotiation_family_on_tiny(engine, tmp_path: Path) -> None:
    from rsi.corpus.stream import read_table
    from rsi.pipeline.corpus_pass import run_corpus_pass

    cfg = RsiConfig(tasks={"negotiation": NegotiationConfig(seeds=["train-0", "train-1"], candidates=2,
                                                            max_tokens=24)})
    cfg.judging.max_tokens, cfg.judging.rationale_chars = 96, 24
    out = tmp_path / "iter_000"
    run_corpus_pass(cfg, engine, 0, out, model_version=0, judge=engine)
    perf = read_table(out, "performances")
    steps_seen = set(perf.column("step").to_pylist())
    assert {"turn_1", DIALOGUE} <= steps_seen
    details = [json.loads(d) for d, s in zip(perf.column("procedural_detail").to_pylist(),
                                              perf.column("step").to_pylist()) if s == DIALOGUE]
    assert details and all({"valid", "share", "lies", "failures"} <= set(d) for d in details)
    assert set(read_table(out, "judgments").column("step").to_pylist()) <= {"rank_dialogues",
                                                                            "rank_dialogue_rankings"}


@pytest.mark.unit
def test_negotiate_preset_runs_the_family_and_gates_its_metric() -> None:
    from test_config import _compose

    from rsi.config import validate

    cfg = _compose("+preset=negotiate")
    assert list(cfg.tasks) == ["negotiation"] and isinstance(cfg.tasks["negotiation"], NegotiationConfig)
    assert "negotiation" in cfg.evals.tasks and "negotiation" in cfg.gate.metrics
    validate(cfg)


@pytest.mark.e2e
def test_negotiate_preset_runs_one_iteration_on_the_tiny_model(tiny_model: Path, tmp_path: Path) -> None:
    """`rsi run +preset=negotiate` sized down to the tiny model: dialogues, judges, DPO, the v0 partner pool and the
    negotiation metric on both versions, gated."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rsi.cli", "run", "+preset=negotiate", "model=tiny", f"model.path={tiny_model}",
           f"run.dir={run_dir}", "backend.kv_cache_gb=0.25", "backend.num_cpus=0",
           "tasks.negotiation.seeds=[train-0,train-1]", "tasks.negotiation.candidates=2",
           "tasks.negotiation.max_tokens=24", "judging.max_tokens=40", "judging.rationale_chars=16",
           "train.max_steps=1", "evals.limits.negotiation=4", "evals.limits.judge_accuracy=2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    for version in ("v0", "v1"):
        metrics = json.loads((run_dir / "evals" / version / "metrics.json").read_text())
        assert metrics["negotiation"]["n"] == 4 and "lie_rate" in metrics["negotiation"]
