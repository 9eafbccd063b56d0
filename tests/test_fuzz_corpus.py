"""Property-based fuzzing of the corpus schema: whatever the policy and the judges write, a chain's rows fit the
three Parquet tables and come back from disk as written. Model text reaches the corpus through the parsers
(parsed values, rationales), the renderers (judge prompts, child prompts) and as raw text; each path is drawn
here from hostile fragments, assembled by the pipeline's own `assemble_chain`, and committed by the real
`CorpusWriter`."""

from __future__ import annotations

import json
import tempfile

import pytest
from fuzz_strategies import FUZZ, any_unicode, encodable, json_values, model_text
from hypothesis import given, settings
from hypothesis import strategies as st

from rsi.corpus.ids import content_id
from rsi.corpus.stream import CorpusWriter, read_table
from rsi.corpus.text import clean_text, clean_value
from rsi.inference.requests import Completion
from rsi.judging.config import JudgingConfig
from rsi.judging.ranking import labels_for, parse_ranking, ranking_messages
from rsi.pipeline.assemble import assemble_chain
from rsi.tasks import get_family

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::SyntaxWarning")]

FAMILY = get_family("programming")
TASK_KEYS = ["title", "description", "entry_point", "signature", "examples"]
# A task a model might write: every field of the schema, each any JSON value (lone surrogate escapes included).
task_json = st.fixed_dictionaries({k: json_values | st.sampled_from(["\\ud800", "f", "x\udfff"]) for k in TASK_KEYS}
                                  ).map(lambda d: json.dumps(d).replace("\\\\ud800", "\\ud800"))
judge_answer = st.fixed_dictionaries({"rationale": st.text(max_size=30) | st.just("\\udc80 \\ud83d"),
                                      "ranking": st.permutations(["A", "B", "C"]) | json_values}
                                     ).map(lambda d: json.dumps(d).replace("\\\\u", "\\u")) | model_text


def _chain(completions: list[str], answers: list[str]) -> dict:
    """One create_task set ranked by the judges, recorded the way the pipeline's generate and rank steps do."""
    op = FAMILY.op("create_task")
    set_id = "set-0"
    items = []
    for k, text in enumerate(completions):
        parsed = op.parse(text, None)
        items.append({
            "id": f"p{k}", "step": op.step, "parent_id": None, "set_id": set_id,
            "prompt": [{"role": "user", "content": "Write a task."}], "completion": text,
            "parse_status": parsed.status, "parse_error": parsed.error,
            "parsed": parsed.value if parsed.ok else None, "seed": k, "temperature": 0.9, "num_prompt_tokens": 3,
            "num_tokens": len(text), "finish_reason": "stop", "model_version": 0, "template_hash": "t",
            "procedural_score": None, "procedural_detail": None, "kept": parsed.ok})
    labels = labels_for(len(items))
    texts = [op.render(i) for i in items]
    judgments = []
    for r, answer in enumerate(answers):
        order = list(range(len(items)))[r:] + list(range(len(items)))[:r]
        messages = ranking_messages("Rank the tasks.", "- clear", texts, labels, order, 100)
        parsed = parse_ranking(answer, labels)
        judgments.append({
            "id": content_id("judgment", r=r, prompt=messages), "step": "rank_tasks", "level": 1, "set_id": set_id,
            "candidate_ids": [i["id"] for i in items], "presented_order": order, "ranking": parsed.ranking,
            "rationale": parsed.rationale, "parse_status": parsed.status, "parse_error": parsed.error,
            "raw_text": answer, "prompt": messages, "seed": r, "temperature": 0.7, "judge_model_version": 0,
            "template_hash": "t", "num_tokens": len(answer)})
    return {"seed": "numbers", "items": items, "judgments": judgments}


@settings(FUZZ, max_examples=40)  # each example writes and reads a corpus on disk
@given(completions=st.lists(task_json | model_text, min_size=3, max_size=3),
       answers=st.lists(judge_answer, min_size=1, max_size=3))
def test_any_model_output_fits_the_corpus_tables(completions: list[str], answers: list[str]) -> None:
    chain = _chain(completions, answers)
    # The chain travels between pipeline stages as JSON, as it does in Ray Data.
    tables = assemble_chain({"state": json.dumps(chain), "iteration": 0, "chain_id": "c0"}, FAMILY, JudgingConfig())
    with tempfile.TemporaryDirectory() as tmp:
        writer = CorpusWriter(tmp)
        writer.add_chain("c0", tables)
        writer.close()
        for name, rows in tables.items():
            got = read_table(tmp, name)
            assert got.num_rows == len(rows), name
            assert got.column("id").to_pylist() == [r["id"] for r in rows]
        perf = read_table(tmp, "performances").to_pylist()
        assert [r["completion"] for r in perf] == completions  # raw text kept exactly, whatever the parse
        for row in perf:
            if row["parse_status"] == "ok":
                assert set(json.loads(row["parsed"])) >= set(TASK_KEYS)
        judged = read_table(tmp, "judgments").to_pylist()
        assert [r["raw_text"] for r in judged] == answers
        assert all((r["ranking"] is None) == (r["parse_status"] != "ok") for r in judged)


# ------------------------------------------------------- every model text is stored through one sanitiser
SOLVE = FAMILY.op("solve")
LABELS3 = labels_for(3)
SCORES = [1.0, 0.5, 0.0]  # execution's verdicts on the three solutions: the judges' rankings can be settled


def _engine_text(raw: str) -> str:
    """What the engine hands the pipeline for a model's text (rsi.inference.engine.EngineActor.generate)."""
    return Completion(raw, 3, len(raw), "stop", 0).to_dict()["text"]


def _judged_solutions(completions: list[str], answers: list[str]) -> dict:
    """Three solutions with execution scores, ranked at level 1: the pipeline's generate, execute and rank
    records, so the assembly settles the rankings by execution (and rewrites the better answer's ranking)."""
    items = []
    for k, raw in enumerate(completions):
        text = _engine_text(raw)
        parsed = SOLVE.parse(text, None)
        items.append({
            "id": f"s{k}", "step": SOLVE.step, "parent_id": "t0", "set_id": "set-s", "prompt": [
                {"role": "user", "content": "Solve it."}], "completion": text, "parse_status": parsed.status,
            "parse_error": parsed.error, "parsed": parsed.value if parsed.ok else None, "seed": k,
            "temperature": 0.9, "num_prompt_tokens": 3, "num_tokens": len(text), "finish_reason": "stop",
            "model_version": 0, "template_hash": "t", "procedural_score": SCORES[k], "procedural_detail": None,
            "kept": parsed.ok})
    texts = [SOLVE.render(i) for i in items]
    judgments = []
    for r, raw in enumerate(answers):
        text = _engine_text(raw)
        order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]
        messages = ranking_messages("Rank the solutions.", "- correct", texts, LABELS3, order, 100)
        parsed = parse_ranking(text, LABELS3)
        judgments.append({
            "id": content_id("judgment", r=r, prompt=messages), "step": "rank_solutions", "level": 1,
            "set_id": "set-s", "candidate_ids": [i["id"] for i in items], "presented_order": order,
            "ranking": parsed.ranking, "rationale": parsed.rationale, "parse_status": parsed.status,
            "parse_error": parsed.error, "raw_text": text, "prompt": messages, "seed": r, "temperature": 0.7,
            "judge_model_version": 0, "template_hash": "t", "num_tokens": len(text)})
    return {"seed": "numbers", "items": items, "judgments": judgments}


def _write_and_read(chain: dict) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The chain's rows as the pipeline assembles them, and as they come back from the corpus on disk."""
    tables = assemble_chain({"state": json.dumps(chain), "iteration": 0, "chain_id": "c0"}, FAMILY, JudgingConfig())
    with tempfile.TemporaryDirectory() as tmp:
        writer = CorpusWriter(tmp)
        writer.add_chain("c0", tables)
        writer.close()
        return tables, {name: read_table(tmp, name).to_pylist() for name in tables}


def _answer(ranking: list[str], rationale: str) -> str:
    # json.dumps writes a lone surrogate as its \ud8xx escape, as a model writing JSON by hand would.
    return json.dumps({"rationale": rationale, "ranking": ranking})


def test_a_judge_answer_with_a_lone_surrogate_escape_reaches_parquet() -> None:
    """A judge's rationale holding `\\ud83d`: the parser cleans it, and the assembly must not bring it back
    when it rewrites the better answer's ranking for the rejected side of the judgement pair."""
    right = '{"rationale": "best first \\ud83d", "ranking": ["A", "B", "C"]}'
    wrong = '{"rationale": "worst first", "ranking": ["C", "B", "A"]}'
    code = "def f(x):\n    return x\n"
    chain = _judged_solutions([code, code + "# b\n", code + "# c\n"], [right, wrong])
    assert [j["parse_status"] for j in chain["judgments"]] == ["ok", "ok"]
    tables, back = _write_and_read(chain)
    pairs = [r for r in back["preferences"] if r["step"] == "rank_solutions"]
    assert pairs, "execution settles the two rankings: a judgement pair"
    contrast = json.dumps({"rationale": "best first \ufffd", "ranking": ["C", "B", "A"]}, ensure_ascii=False,
                          separators=(",", ":"))
    assert all(r["chosen"] == [{"role": "assistant", "content": right}] for r in pairs)
    assert all(r["rejected"] == [{"role": "assistant", "content": contrast}] for r in pairs)
    assert [r["rationale"] for r in back["judgments"]] == ["best first \ufffd", "worst first"]
    assert [r["raw_text"] for r in back["judgments"]] == [right, wrong]  # raw text kept, as written


def _expected_rationale(answer: str) -> str:
    try:
        obj = json.loads(answer, strict=False)
    except (ValueError, RecursionError, MemoryError):
        return ""
    return obj["rationale"] if isinstance(obj, dict) and isinstance(obj.get("rationale"), str) else ""


# Judge answers: valid rankings whose rationale is any text (json.dumps escapes its lone surrogates) after an
# escape written into the JSON by hand, and anything else a judge might write.
ESCAPES = ["\\ud83d", "x\\udc80y", "\\ud83d\\ude00", "\\ude00\\ud83d", "\\udfff\\u00e9"]
valid_answer = st.builds(lambda r, text, esc: _answer(r, text).replace('"rationale": "', '"rationale": "' + esc, 1),
                         st.permutations(LABELS3), any_unicode, st.sampled_from(ESCAPES))
any_answer = valid_answer | st.just('{"ranking": [1,2], "rationale": "\\ud83d"}') | any_unicode | model_text


@settings(FUZZ, max_examples=30)  # each example writes and reads a corpus on disk
@given(completions=st.lists(any_unicode | model_text, min_size=3, max_size=3),
       valid=st.lists(valid_answer, min_size=2, max_size=2), others=st.lists(any_answer, max_size=2))
def test_any_unicode_is_stored_as_its_sanitised_text(completions: list[str], valid: list[str],
                                                     others: list[str]) -> None:
    """Arbitrary text, lone surrogates (raw or as JSON escapes) included, through parse, assemble, write and read:
    the write never raises and what comes back is the sanitised text. Two valid rankings let execution settle
    a judgement pair, whose rejected side the assembly writes anew from the better answer."""
    answers = valid + others
    chain = _judged_solutions(completions, answers)
    tables, back = _write_and_read(chain)
    assert [r["completion"] for r in back["performances"]] == [clean_text(c) for c in completions]
    assert [r["raw_text"] for r in back["judgments"]] == [clean_text(a) for a in answers]
    assert [r["rationale"] for r in back["judgments"]] == [
        clean_text(_expected_rationale(clean_text(a))) if r["parse_status"] != "invalid_json" else ""
        for a, r in zip(answers, back["judgments"])]
    for name, rows in back.items():
        assert rows == clean_value(tables[name]), name
        assert encodable(rows)
    cleaned = [clean_text(a) for a in answers]
    for row in (r for r in back["preferences"] if r["step"] == "rank_solutions"):
        (chosen,), (rejected,) = row["chosen"], row["rejected"]
        assert chosen["content"] in cleaned
        if rejected["content"] not in cleaned:  # the better answer's rationale under the worse ranking
            rationale = json.loads(rejected["content"])["rationale"]
            assert rationale == clean_text(_expected_rationale(chosen["content"]))
