"""Property-based fuzzing of everything that reads model output: the tolerant JSON and code parsers, each
family's output parsers and renderers, the judges' ranking parsers and the mutant maker. Whatever a model
writes, they return their documented failure status (or a value), never raise, and every string they hand on
is valid Unicode (Parquet, tokenizers and JSON files reject lone surrogates)."""

from __future__ import annotations

import itertools
import json

import pytest
from fuzz_strategies import FUZZ, encodable, json_values, model_text
from hypothesis import example, given
from hypothesis import strategies as st

from rsi.judging.pairwise import parse_pairwise
from rsi.judging.ranking import labels_for, parse_ranking, ranking_messages
from rsi.tasks import get_family
from rsi.tasks.family import Generate
from rsi.tasks.mutants import make_mutants
from rsi.tasks.parsing import extract_code, parse_json_object, parse_python

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::SyntaxWarning")]

# The documented failure statuses (rsi.tasks.parsing.Parsed, rsi.judging.ranking.ParsedRanking).
JSON_STATUSES = {"ok", "empty", "invalid_json", "not_object", "missing_fields"}
CODE_STATUSES = {"ok", "empty", "syntax_error", "missing_entry_point"}
RANKING_STATUSES = {"ok", "invalid_json", "invalid_ranking"}


@FUZZ
@given(text=model_text, required=st.lists(st.sampled_from(["a", "ranking", "cases", "prediction"]), max_size=2))
@example(text="[" * 100_000, required=["a"])
@example(text='{"a": 1' + "0" * 5000 + "}", required=["a"])
@example(text='{"a": "\\ud800 and \\udc00"}', required=["a"])
def test_parse_json_object_never_raises(text: str, required: list[str]) -> None:
    parsed = parse_json_object(text, required)
    assert parsed.status in JSON_STATUSES
    assert encodable(parsed.value) and encodable(parsed.error)
    if parsed.ok:
        assert isinstance(parsed.value, dict) and set(required) <= set(parsed.value)
    else:
        assert parsed.error


@FUZZ
@given(value=st.dictionaries(st.text(max_size=8), json_values, max_size=5), prose=st.text(max_size=30))
def test_parse_json_object_finds_an_object_inside_prose(value: dict, prose: str) -> None:
    """The tolerant parser's promise: an object a model wrapped in prose or a fence comes back as written."""
    text = f"{prose}\n```json\n{json.dumps(value)}\n```\n"
    parsed = parse_json_object(text, list(value)[:1])
    assert parsed.ok, parsed.error
    assert json.dumps(parsed.value, sort_keys=True) == json.dumps(value, sort_keys=True)


@FUZZ
@given(text=model_text, entry=st.sampled_from([None, "f", "solution"]))
@example(text="-" * 100_000 + "1", entry="f")  # CPython reports this nesting as MemoryError
@example(text="1" + "+1" * 100_000, entry=None)  # and this one as RecursionError
def test_parse_python_never_raises(text: str, entry: str | None) -> None:
    parsed = parse_python(text, entry)
    assert parsed.status in CODE_STATUSES
    assert isinstance(extract_code(text), str)
    if parsed.ok:
        compile(parsed.value, "<fuzz>", "exec")
    else:
        assert parsed.error


@FUZZ
@given(code=model_text)
@example(code="def f(x):\n    return 1" + "+1" * 600 + "\n")  # parses, but too deep for ast.unparse
def test_mutants_never_raise_and_always_compile(code: str) -> None:
    for _, mutant in make_mutants(code):
        compile(mutant, "<mutant>", "exec")


FAMILY_GENERATES = [(fam, op) for fam in ("programming", "python_output", "open_ended")
                    for op in get_family(fam).ops if isinstance(op, Generate)]
PARENTS = {
    "create_eval": {"parsed": {"entry_point": "f", "signature": "def f(x):"}},
    "solve": {"parsed": {"entry_point": "f", "signature": "def f(x):"}},
    "predict_output": {"parsed": "def solution():\n    return 1\n"},
}


@pytest.mark.parametrize("family,op", FAMILY_GENERATES, ids=[f"{f}.{o.step}" for f, o in FAMILY_GENERATES])
def test_family_parsers_and_renderers_never_raise(family: str, op: Generate) -> None:
    """What every family's step does with a sample: parse it, then render it for the judges and child prompts."""

    @FUZZ
    @given(text=model_text | json_values.map(json.dumps)
           | st.dictionaries(st.sampled_from(["title", "description", "entry_point", "signature", "examples",
                                              "cases", "args", "expected", "properties", "prediction", "reasoning"]),
                             json_values, max_size=8).map(json.dumps))
    @example(text='{"title": 1, "description": [], "entry_point": "f", "signature": {}, "examples": 5}')
    @example(text='{"cases": [{"args": [1], "expected": 2}], "properties": ["' + "(" * 5000 + '"]}')
    def check(text: str) -> None:
        parsed = op.parse(text, PARENTS.get(op.step))
        assert parsed.status in JSON_STATUSES | CODE_STATUSES | {"no_valid_cases"}
        assert encodable(parsed.value) and encodable(parsed.error)
        item = {"parsed": parsed.value if parsed.ok else None, "parse_status": parsed.status, "completion": text}
        rendered = op.render(item)
        assert isinstance(rendered, str) and encodable(rendered)
        if parsed.ok and op.step == "create_task":
            child = get_family(family).op("create_eval")
            assert all(isinstance(v, str) for v in child.variables("seed", item).values())

    check()


def _rankings(labels: list[str]) -> st.SearchStrategy[str]:
    """Answers a judge might give: valid ones, near misses (a repeat, a missing or foreign label, indices),
    wrong types in every slot, and the hostile fragments."""
    slot = st.sampled_from(labels) | st.sampled_from(["Z", "J1", "a", ""]) | json_values
    ranking = st.permutations(labels) | st.lists(slot, max_size=len(labels) + 2) | json_values
    answer = st.fixed_dictionaries({"ranking": ranking}, optional={"rationale": json_values | st.text()})
    return answer.map(json.dumps) | model_text


def _check_ranking(text: str, labels: list[str]) -> None:
    parsed = parse_ranking(text, labels)
    assert parsed.status in RANKING_STATUSES
    assert encodable(parsed.rationale) and encodable(parsed.error)
    assert len(parsed.error) < 1000  # a hostile answer is not copied whole into the error
    if parsed.status == "ok":
        assert sorted(parsed.ranking) == list(range(len(labels)))
    else:
        assert parsed.ranking is None and parsed.error


@FUZZ
@given(data=st.data(), n=st.integers(2, 8), prefix=st.sampled_from(["", "J", "JJ"]))
def test_parse_ranking_never_raises(data: st.DataObject, n: int, prefix: str) -> None:
    labels = labels_for(n, prefix)
    _check_ranking(data.draw(_rankings(labels)), labels)


@pytest.mark.parametrize("text", [
    "[" * 50_000, '{"ranking": ["A", 1, "C"]}', '{"ranking": [["A"], "B", "C"]}',
    '{"ranking": [' + "9" * 5000 + "]}", '{"ranking": ["A", "B", "C"], "rationale": "\\udc80"}',
    '{"ranking": [' + ", ".join(['"A"'] * 100_000) + "]}"])
def test_parse_ranking_hostile_answers(text: str) -> None:
    """What the fuzzing found: deep nesting, an over-long integer, a non-string label, a lone surrogate."""
    _check_ranking(text, labels_for(3))


@FUZZ
@given(n=st.integers(2, 6), rationale=st.text(max_size=50), data=st.data())
def test_every_permutation_parses_back(n: int, rationale: str, data: st.DataObject) -> None:
    labels = labels_for(n)
    order = data.draw(st.permutations(range(n)))
    parsed = parse_ranking(json.dumps({"rationale": rationale, "ranking": [labels[i] for i in order]}), labels)
    assert parsed.status == "ok" and parsed.ranking == list(order) and parsed.rationale == rationale


@FUZZ
@given(text=_rankings(["A", "B"]) | _rankings(["B", "D"]), n=st.integers(4, 6), data=st.data())
def test_parse_pairwise_never_raises(text: str, n: int, data: st.DataObject) -> None:
    items = data.draw(st.sampled_from(list(itertools.combinations(range(n), 2))))
    parsed = parse_pairwise(text, items, n)
    assert parsed.status in RANKING_STATUSES
    if parsed.status == "ok":
        assert sorted(parsed.ranking) == list(items)


@FUZZ
@given(candidates=st.lists(model_text, min_size=2, max_size=5))
def test_ranking_prompt_shows_each_candidate_in_exactly_one_block(candidates: list[str]) -> None:
    """Whatever a candidate contains, the prompt has exactly one opening and one closing tag per candidate."""
    labels = labels_for(len(candidates))
    user = ranking_messages("Rank.", "-", candidates, labels, list(range(len(candidates))), 40)[-1]["content"]
    assert user.lower().count("<candidate") == len(candidates)
    assert user.lower().count("</candidate") == len(candidates)
