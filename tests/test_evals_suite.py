"""The held-out suite: judge accuracy on execution-settled pairs (fake judges with known biases), format following
on the pipeline's own prompts (fake outputs that do and do not parse), the evaluation directory `evaluate` writes,
`rsi eval` refusing bad input with status 2, and (Ray) a whole `rsi eval run` on the tiny model."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from rsi.evals import cli, format_following, judge_accuracy
from rsi.evals.compare import load_eval_dir
from rsi.evals.judge_accuracy import MUTANTS_PER_PROBLEM, PAIR_FIELDS, load_pairs, pair_id, run_judge_accuracy
from rsi.evals.task import EvalContext, TaskResult
from rsi.judging.config import JudgingConfig
from rsi.judging.ranking import labels_for, ranking_schema
from rsi.pipeline.steps import JUDGE_SYSTEM, SYSTEM
from rsi.tasks import get_family
from rsi.tasks.templates import split_rubric

needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the sandbox needs root (per-slot uids) and bubblewrap",
)
CONF_TASKS = Path(__file__).resolve().parents[1] / "conf" / "tasks"
BLOCK = re.compile(r'<candidate label="([A-Z])">\n(.*?)\n</candidate>', re.S)
ALL_FAMILIES = ["programming", "python_output", "open_ended"]


def _answer(first: str, second: str) -> dict[str, Any]:
    return {"text": json.dumps({"rationale": "r", "ranking": [first, second]}), "model_version": 0}


def first_shown_judge(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Always ranks the candidate shown first on top: pure position bias."""
    out = []
    for r in requests:
        shown = [lab for lab, _ in BLOCK.findall(r["messages"][1]["content"])]
        out.append(_answer(shown[0], shown[1]))
    return out


def oracle_judge(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Knows which solution passes (from the shipped pairs) and ranks it first in any order."""
    good = {p["good"] for p in load_pairs(judge_accuracy.DATA)}
    out = []
    for r in requests:
        blocks = BLOCK.findall(r["messages"][1]["content"])
        best = next(lab for lab, text in blocks if text in good)
        out.append(_answer(best, next(lab for lab, _ in blocks if lab != best)))
    return out


def _ctx(**kw: Any) -> EvalContext:
    def refuse(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise AssertionError("this task must not call the policy")

    return EvalContext(**{"generate": refuse, "judge": refuse, **kw})


# ------------------------------------------------------------------------------------------- judge accuracy
@pytest.mark.unit
def test_shipped_pairs_are_well_formed() -> None:
    pairs = load_pairs(judge_accuracy.DATA)
    assert len(pairs) >= 150
    assert len({p["id"] for p in pairs}) == len(pairs)
    for p in pairs:
        assert set(PAIR_FIELDS) <= p.keys()
        assert p["id"] == pair_id(p["task_id"], p["good"], p["bad"])  # the id is the content's hash
        assert p["good"] != p["bad"]
    assert max(Counter(p["task_id"] for p in pairs).values()) <= MUTANTS_PER_PROBLEM
    # The passing solution sits under label A in some pairs and B in others, so a label preference is no help.
    assert 0.3 < sum(judge_accuracy.good_index(p) for p in pairs) / len(pairs) < 0.7


@pytest.mark.unit
def test_judge_requests_are_the_pipelines_ranking_prompt() -> None:
    judging = JudgingConfig(max_tokens=77, rationale_chars=50)
    pair = load_pairs(judge_accuracy.DATA)[0]
    reqs = judge_accuracy.pair_requests(pair, judging)
    instruction, rubric, _ = split_rubric(get_family("programming"), "rank_solutions.txt")
    shown = []
    for r in reqs:
        assert r["temperature"] == 0.0 and r["max_tokens"] == 77
        assert r["json_schema"] == ranking_schema(labels_for(2), 50)
        assert r["messages"][0] == {"role": "system", "content": JUDGE_SYSTEM}
        assert instruction in r["messages"][1]["content"] and rubric in r["messages"][1]["content"]
        shown.append([lab for lab, _ in BLOCK.findall(r["messages"][1]["content"])])
    assert shown == [["A", "B"], ["B", "A"]]  # both orders of the same two candidates


@pytest.mark.unit
def test_position_biased_judge_scores_zero() -> None:
    r = run_judge_accuracy(_ctx(judge=first_shown_judge, limit=40))
    assert (r.task, r.metric, r.n, r.value) == ("judge_accuracy", "accuracy", 40, 0.0)
    assert r.ci95[0] == 0.0 and r.ci95[1] > 0
    assert r.extra["position_consistency"]["value"] == 0.0
    assert r.extra["first_shown_pick_rate"] == {**r.extra["first_shown_pick_rate"], "value": 1.0, "n": 80}
    # Right in exactly one of the two orders of each pair: the per-order accuracies add up to one.
    assert r.extra["order_accuracy_AB"]["value"] + r.extra["order_accuracy_BA"]["value"] == pytest.approx(1.0)
    assert all(it["correct"] == 0 and it["pick_AB"] == 0 and it["pick_BA"] == 1 for it in r.items)


@pytest.mark.unit
def test_oracle_judge_scores_one() -> None:
    r = run_judge_accuracy(_ctx(judge=oracle_judge, limit=40))
    assert (r.value, r.n) == (1.0, 40)
    assert r.extra["position_consistency"]["value"] == 1.0
    assert r.extra["first_shown_pick_rate"]["value"] == 0.5
    assert r.extra["order_accuracy_AB"]["value"] == r.extra["order_accuracy_BA"]["value"] == 1.0
    assert all(it["correct"] == 1 for it in r.items)


@pytest.mark.unit
def test_a_consistent_judge_that_cannot_read_the_code_is_told_from_one_that_can() -> None:
    """Picking the same program in both orders by a content coin (here: the shorter text) lifts `accuracy` from a
    position-biased 0 toward 0.5 without reading anything; `right_when_consistent` shows it is at chance, and the
    oracle's is far from it."""
    def shorter(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in requests:
            blocks = sorted(BLOCK.findall(r["messages"][1]["content"]), key=lambda b: (len(b[1]), b[1]))
            out.append(_answer(blocks[0][0], blocks[1][0]))
        return out

    coin = run_judge_accuracy(_ctx(judge=shorter, limit=80))
    assert coin.extra["position_consistency"]["value"] == 1.0 and 0.0 < coin.value < 1.0
    rwc = coin.extra["right_when_consistent"]
    assert rwc["n"] == 80 and rwc["value"] == coin.value
    oracle = run_judge_accuracy(_ctx(judge=oracle_judge, limit=80)).extra
    assert oracle["right_when_consistent"]["value"] == 1.0 and oracle["right_when_consistent"]["ci95"][0] > 0.5
    assert rwc["ci95"][0] < 0.5 < rwc["ci95"][1] or rwc["value"] < 0.5
    biased = run_judge_accuracy(_ctx(judge=first_shown_judge, limit=80)).extra
    assert biased["right_when_consistent"]["n"] == 0


@pytest.mark.unit
def test_invalid_answers_count_as_wrong() -> None:
    def garbage(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"text": "A is better"} for _ in requests]

    r = run_judge_accuracy(_ctx(judge=garbage, limit=10))
    assert r.value == 0.0 and r.n == 10
    assert r.extra["position_consistency"]["n"] == 0 and r.extra["first_shown_pick_rate"]["n"] == 0
    assert r.extra["order_accuracy_AB"] == {"value": 0.0, "ci95": r.extra["order_accuracy_AB"]["ci95"], "n": 10}
    assert all(it["pick_AB"] is None and it["status_AB"] == "invalid_json" for it in r.items)


@pytest.mark.unit
def test_judge_accuracy_is_broken_down_by_mutation_kind() -> None:
    """A judge that sees only one kind of bug shows it per kind, while the task's own accuracy stays the share of
    all pairs right in both orders."""
    pairs = {p["id"]: p for p in load_pairs(judge_accuracy.DATA)}
    by_bad = {p["bad"]: p for p in pairs.values()}

    def sees_dropped_branches(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = oracle_judge(requests)
        for r, a in zip(requests, answers):
            blocks = BLOCK.findall(r["messages"][1]["content"])
            pair = next(by_bad[text] for _, text in blocks if text in by_bad)
            if pair["mutation"] != "drop_branch":  # any other kind: the first shown, as a biased judge does
                a.update(first_shown_judge([r])[0])
        return answers

    r = run_judge_accuracy(_ctx(judge=sees_dropped_branches))
    kinds = Counter(p["mutation"] for p in pairs.values())
    assert set(kinds) == {"drop_branch", "flip", "off_by_one", "swap_boolop"}
    assert {k for k in r.extra if k.startswith("accuracy.")} == {f"accuracy.{k}" for k in kinds}
    for kind, n in kinds.items():
        want = 1.0 if kind == "drop_branch" else 0.0
        assert r.extra[f"accuracy.{kind}"] == {"value": want, "ci95": r.extra[f"accuracy.{kind}"]["ci95"], "n": n}
    assert r.value == pytest.approx(kinds["drop_branch"] / len(pairs)) and r.n == len(pairs)
    assert all(it["mutation"] == pairs[it["id"]]["mutation"] for it in r.items)
    assert all(it["correct"] == (it["mutation"] == "drop_branch") for it in r.items)


@pytest.mark.unit
def test_judge_data_file_replaces_the_shipped_pairs(tmp_path: Path) -> None:
    mine = load_pairs(judge_accuracy.DATA)[:3]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in mine))
    r = run_judge_accuracy(_ctx(judge=oracle_judge, data={"judge_accuracy": str(path)}))
    assert sorted(it["id"] for it in r.items) == sorted(p["id"] for p in mine)


@pytest.mark.e2e
@needs_sandbox
def test_builder_reproduces_shipped_pairs() -> None:
    """A few problems rebuilt in the real sandbox give exactly the committed pairs."""
    from rsi.evals.humaneval import read_problems
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox

    shipped = load_pairs(judge_accuracy.DATA)
    problems = read_problems()
    chosen = sorted({p["task_id"] for p in shipped})[:6] + ["HumanEval/0"]
    limits = Limits(timeout_s=judge_accuracy.RUN_TIMEOUT_S)
    with Sandbox(SandboxConfig(slots=2)) as sandbox:
        rebuilt = judge_accuracy.build_pairs({t: problems[t] for t in chosen},
                                             lambda jobs: [v.to_dict() for v in sandbox.run_many(jobs, limits)])
    assert rebuilt and rebuilt == [p for p in shipped if p["task_id"] in chosen]


# ---------------------------------------------------------------------------------------- format following
def _good_output(case: dict[str, Any]) -> str:
    step, parent = case["op"].step, case["parent"]
    if step == "create_task":
        return json.dumps({"title": "t", "description": "d", "entry_point": "f", "signature": "def f(x):",
                           "examples": ["f(1) -> 1"]})
    if step == "create_eval":
        return json.dumps({"cases": [{"args": [1], "expected": 1}]})
    if step == "solve":
        return f"```python\ndef {parent['parsed']['entry_point']}(*args):\n    return 1\n```"
    if step == "write_program":
        return "```python\ndef solution():\n    return 1\n```"
    if step == "predict_output":
        return json.dumps({"reasoning": "adds", "prediction": 1})
    return "Talk to them honestly."


def _fake_policy(answer: Any, families: list[str] = ALL_FAMILIES) -> Any:
    """A policy answering each pipeline prompt with `answer(case)`, found from the prompt it was sent."""
    by_prompt = {format_following.request(c)["messages"][1]["content"]: c
                 for c in format_following.cases(families)}
    seen: list[dict[str, Any]] = []

    def generate(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.extend(requests)
        return [{"text": answer(by_prompt[r["messages"][1]["content"]])} for r in requests]

    return generate, seen


@pytest.mark.unit
def test_format_following_good_outputs_parse() -> None:
    generate, seen = _fake_policy(_good_output)
    r = format_following.run_format_following(_ctx(generate=generate, families=ALL_FAMILIES))
    assert (r.task, r.metric, r.value, r.n) == ("format_following", "parse_rate", 1.0, 48)
    assert set(r.extra) == {"parse_rate.programming.create_task", "parse_rate.programming.create_eval",
                            "parse_rate.programming.solve", "parse_rate.python_output.write_program",
                            "parse_rate.python_output.predict_output", "parse_rate.open_ended.respond"}
    assert all(m["value"] == 1.0 and m["n"] == 8 for m in r.extra.values())
    schemas = {c["op"].step: c["op"].schema for c in format_following.cases(ALL_FAMILIES)}
    for req, it in zip(seen, r.items):
        assert req["temperature"] == 0.0 and req["messages"][0] == {"role": "system", "content": SYSTEM}
        assert req["json_schema"] == schemas[it["step"]]  # structured decoding exactly where the pipeline uses it
        assert it["parse_status"] == "ok" and it["correct"] == 1


@pytest.mark.unit
def test_format_following_garbage_fails_where_a_format_is_required() -> None:
    generate, _ = _fake_policy(lambda case: "}{ not code, not JSON")
    r = format_following.run_format_following(_ctx(generate=generate, families=ALL_FAMILIES, limit=30))
    assert r.n == 30
    # Advice is free text, so only open_ended accepts it.
    for it in r.items:
        assert it["correct"] == (it["family"] == "open_ended")
        assert it["correct"] or (it["parse_status"] != "ok" and it["error"])
    assert r.value == pytest.approx(sum(it["family"] == "open_ended" for it in r.items) / 30)


def _copying_policy(copy_share: float) -> Any:
    """Answers code_review's write_program prompts with the example they show for the first `copy_share` of the
    topics (in HELDOUT_SEEDS order) and a program of its own for the rest; every other prompt with good output."""
    topics = format_following.HELDOUT_SEEDS["code_review"]
    copied = set(topics[:round(copy_share * len(topics))])

    def answer(case: dict[str, Any]) -> str:
        if case["family"].name != "code_review":
            return _good_output(case)
        if case["seed"] in copied:
            return "```python\n" + case["op"].variables(case["seed"], None)["example"] + "\n```"
        return "```python\ndef solution():\n    total = 0\n    for k in range(4):\n        total += k * k\n" \
               "    return total\n```"

    return _fake_policy(answer, ALL_FAMILIES + ["code_review"])[0]


@pytest.mark.unit
def test_format_following_counts_programs_that_copy_the_prompts_example() -> None:
    """A copy of the example parses, so the parse rate counts it a success; `copies_example` says which programs
    repeat the example, from the same generations (each prompt asked once)."""
    generate = _copying_policy(0.3)
    asked: list[dict[str, Any]] = []
    r = format_following.run_format_following(_ctx(generate=lambda reqs: asked.extend(reqs) or generate(reqs),
                                                   families=ALL_FAMILIES + ["code_review"]))
    programs = [it for it in r.items if it["family"] == "code_review"]
    assert len(programs) == 100 and len(asked) == r.n == 148  # one request per item, none for the copy metric
    assert r.value == 1.0 and all(it["correct"] == 1 for it in programs)
    assert sum(it["copies_example"] for it in programs) == 30
    assert all(it["example_share"] == (1.0 if it["copies_example"] else 0.0) for it in programs)
    assert not [it for it in r.items if it["family"] != "code_review" and "copies_example" in it]
    assert r.extra["copies_example"] == {"value": 0.3, "ci95": r.extra["copies_example"]["ci95"], "n": 100}
    assert r.extra["parse_rate.code_review.write_program"]["value"] == 1.0


@pytest.mark.unit
def test_copying_is_compared_between_versions_lower_being_better(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Two versions' format-following evaluations pair the copying program by program, with a McNemar p, on a
    row that says lower is better; neither version answers any prompt twice."""
    from rsi.evals.compare import compare_dirs
    from rsi.evals.compare import main as compare_main
    from rsi.evals.suite import evaluate

    for name, share in (("v0", 0.6), ("v1", 0.1)):
        ctx = _ctx(generate=_copying_policy(share), families=["code_review"])
        evaluate(["format_following"], ctx, str(tmp_path / name))
    rows = compare_dirs(str(tmp_path / "v0"), str(tmp_path / "v1"))
    copies = rows["format_following.copies_example"]
    assert copies["n"] == 100 and copies["delta"] == pytest.approx(-0.5) and copies["p"] < 1e-10
    assert copies["better"] == "lower" and rows["format_following"]["better"] == "higher"
    assert rows["format_following"]["delta"] == 0.0  # every program parses in both
    assert compare_main([str(tmp_path / "v0"), str(tmp_path / "v1")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"format_following\.copies_example \(lower is better\)[\s│]+-0\.500", out), out


@pytest.mark.unit
def test_heldout_seeds_are_not_training_seeds() -> None:
    trained = set()
    for path in CONF_TASKS.glob("*.yaml"):
        trained |= set(yaml.safe_load(path.read_text()).get("seeds") or [])
    assert trained
    for family, seeds in format_following.HELDOUT_SEEDS.items():
        assert len(seeds) == len(set(seeds)) >= 8 and not trained & set(seeds), family
    ids = [c["id"] for c in format_following.cases(ALL_FAMILIES)]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------------------------------- suite and CLI
@pytest.mark.unit
def test_evaluate_writes_a_readable_eval_dir(tmp_path: Path) -> None:
    from rsi.evals.suite import evaluate

    generate, _ = _fake_policy(_good_output)
    ctx = _ctx(generate=generate, judge=oracle_judge, limit=6, families=ALL_FAMILIES)
    ctx.limits = {"judge_accuracy": 9}  # a task's own count replaces `limit` for that task alone
    results = evaluate(["judge_accuracy", "format_following"], ctx, str(tmp_path / "ev"))
    metrics, items = load_eval_dir(str(tmp_path / "ev"))
    assert set(metrics) == set(items) == {"judge_accuracy", "format_following"}
    for task, r in results.items():
        n = 9 if task == "judge_accuracy" else 6
        assert metrics[task]["value"] == r.value and metrics[task]["n"] == r.n == len(items[task]) == n
        assert [it["id"] for it in items[task]] == [it["id"] for it in r.items]
    assert metrics["judge_accuracy"]["position_consistency"]["value"] == 1.0


@pytest.mark.unit
def test_unknown_task_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rsi.evals.suite import evaluate

    with pytest.raises(ValueError, match="'nope'.*known: humaneval, output_prediction, judge_accuracy"):
        evaluate(["judge_accuracy", "nope"], _ctx(), str(tmp_path / "ev"))
    assert not (tmp_path / "ev").exists()  # refused before any task ran
    assert cli.main(["run", "--model", "tiny", "--tasks", "humaneval,nope", "--out", str(tmp_path)]) == 2
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.unit
def test_bad_data_args_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rsi.evals.suite import parse_data_args

    good = tmp_path / "pairs.jsonl"
    good.write_text(json.dumps(load_pairs(judge_accuracy.DATA)[0]) + "\n")
    assert parse_data_args([f"judge_accuracy={good}"]) == {"judge_accuracy": str(good)}
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good.read_text() + "{not json\n")
    short = tmp_path / "short.jsonl"
    short.write_text('{"id": "x"}\n')
    cases = {f"judge_accuracy={tmp_path / 'gone.jsonl'}": "gone.jsonl: no such file",
             f"judge_accuracy={broken}": "broken.jsonl:2: not JSON",
             f"judge_accuracy={short}": "short.jsonl:1: .*missing",
             f"output_prediction={short}": "short.jsonl:1",
             f"nope={good}": "'nope'",
             "judge_accuracy": "TASK=FILE"}
    for arg, message in cases.items():
        with pytest.raises(ValueError, match=message):
            parse_data_args([arg])
        assert cli.main(["run", "--model", "tiny", "--tasks", "judge_accuracy", "--data", arg,
                         "--out", str(tmp_path / "out")]) == 2
        assert re.search(message, capsys.readouterr().err)


@pytest.mark.unit
def test_model_folder_without_weights_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1,
         "num_attention_heads": 1, "intermediate_size": 8, "vocab_size": 16}))
    for model, message in [(tmp_path / "ckpt", "no weights"), (tmp_path / "missing", "nor a model folder")]:
        argv = ["run", "--model", str(model), "--backend", "hf", "--tasks", "judge_accuracy", "--out",
                str(tmp_path / "out")]
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_unknown_verb_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nope"]) == 2
    assert "run,compare,humaneval" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- whole runs
@pytest.mark.e2e
@needs_sandbox
def test_eval_run_on_tiny_model_then_compare(tiny_model: Path, ray_local: None, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    tasks = ["humaneval", "output_prediction", "judge_accuracy", "format_following"]
    out = tmp_path / "ev"
    argv = ["run", "--model", str(tiny_model), "--tasks", ",".join(tasks), "--limit", "4", "--backend", "hf",
            "--out", str(out)]
    assert cli.main(argv) == 0
    metrics, items = load_eval_dir(str(out))
    assert set(metrics) == set(tasks)
    for task in tasks:
        m = metrics[task]
        assert 0.0 <= m["ci95"][0] <= m["value"] <= m["ci95"][1] <= 1.0
        assert m["n"] == len(items[task]) > 0
        assert all(it["correct"] in (0, 1) for it in items[task])
        assert all(set(v) == {"value", "ci95", "n"} for k, v in m.items() if isinstance(v, dict))
    assert metrics["judge_accuracy"]["n"] == 4 and metrics["format_following"]["n"] == 4
    capsys.readouterr()
    assert cli.main(["compare", str(out), str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    steps = {f"format_following.{it['family']}.{it['step']}" for it in items["format_following"]}
    kinds = {f"judge_accuracy.{it['mutation']}" for it in items["judge_accuracy"]}
    assert kinds and {f"accuracy.{k.split('.')[1]}" for k in kinds} <= set(metrics["judge_accuracy"])
    assert set(rows) == set(tasks) | {"judge_accuracy.same_pick_both_orders"} | steps | kinds
    assert all(r["delta"] == 0.0 and r["p"] == 1.0 for r in rows.values())


@pytest.mark.unit
def test_counting_asks_in_concurrent_chunks_and_keeps_the_order() -> None:
    """An evaluation's answers show as done of total: the requests go out in chunks, all in flight, and the
    answers come back in the order asked whatever order the chunks finish in."""
    import random
    import threading
    import time

    from rsi.evals.suite import counting

    in_flight, most, lock = [0], [0], threading.Lock()

    def generate(reqs: list[dict]) -> list[dict]:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(random.random() / 50)
        with lock:
            in_flight[0] -= 1
        return [{"text": str(r["i"])} for r in reqs]

    done, asked = [], []
    ask = counting(generate, done.append, asked.append, chunk=4)
    out = ask([{"i": i} for i in range(37)])
    assert [o["text"] for o in out] == [str(i) for i in range(37)]
    assert asked == [37] and sum(done) == 37 and sorted(done) == [1] + [4] * 9
    assert most[0] > 1  # chunks overlap: the engines can batch them together
    assert ask([]) == [] and asked == [37, 0]


@pytest.mark.unit
def test_an_item_with_a_lone_surrogate_is_written_cleaned(tmp_path: Path) -> None:
    """Evaluation items hold model text; it reaches disk through the corpus' cleaning path like the corpus."""
    from rsi.evals.compare import load_eval_dir, write_eval_dir

    item = {"id": "a", "correct": 0, "completion": "def f():\n    return '\ud83d'"}
    write_eval_dir(str(tmp_path), [TaskResult("humaneval", "pass@1", 0.0, (0.0, 1.0), 1, [item])])
    assert load_eval_dir(str(tmp_path))[1]["humaneval"][0]["completion"] == "def f():\n    return '\ufffd'"
