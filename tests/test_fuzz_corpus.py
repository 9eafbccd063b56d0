"""Property-based fuzzing of the corpus schema: whatever the policy and the judges write, a chain's rows fit the
three Parquet tables and come back from disk as written. Model text reaches the corpus through the parsers
(parsed values, rationales), the renderers (judge prompts, child prompts) and as raw text; each path is drawn
here from hostile fragments, assembled by the pipeline's own `assemble_chain`, and committed by the real
`CorpusWriter`."""

from __future__ import annotations

import json
import tempfile

import pytest
from fuzz_strategies import FUZZ, json_values, model_text
from hypothesis import given, settings
from hypothesis import strategies as st

from rsi.corpus.ids import content_id
from rsi.corpus.stream import CorpusWriter, read_table
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
