"""The tolerant parsers: what models really write, and what must fail with a reason instead of a guess."""

from __future__ import annotations

import pytest

from rsi.judging.ranking import labels_for, parse_ranking
from rsi.tasks.parsing import extract_code, parse_json_object, parse_python
from rsi.tasks.programming import parse_eval, parse_task

pytestmark = pytest.mark.unit

TASK = ('{"title": "T", "description": "D", "entry_point": "f", "signature": "def f(x):", '
        '"examples": ["f(1) -> 2"]}')

JSON_CASES = [
    # (text, required, status, check)
    ('{"a": 1}', ["a"], "ok", {"a": 1}),
    ('  {"a": 1}\n', ["a"], "ok", {"a": 1}),
    ('```json\n{"a": 1}\n```', ["a"], "ok", {"a": 1}),
    ('```\n{"a": 1}\n```', ["a"], "ok", {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": 1}\n```\nHope it helps.', ["a"], "ok", {"a": 1}),
    ('Here is the JSON: {"a": 1} -- done', ["a"], "ok", {"a": 1}),
    ('{"a": 1,}', ["a"], "ok", {"a": 1}),
    ('{"a": [1, 2,], }', ["a"], "ok", {"a": [1, 2]}),
    ('{"a": "x\ty"}', ["a"], "ok", {"a": "x\ty"}),
    ('{"a": "brace } inside"}', ["a"], "ok", {"a": "brace } inside"}),
    ('{"a": "quote \\" and { brace"}', ["a"], "ok", {"a": 'quote " and { brace'}),
    ('{"b": 2} then {"a": 1}', ["a"], "ok", {"a": 1}),
    ('{"outer": {"a": 1}}', ["outer"], "ok", {"outer": {"a": 1}}),
    ('```json\n{"a": 1}', ["a"], "ok", {"a": 1}),  # unterminated fence
    ('{"a": null}', ["a"], "ok", {"a": None}),
    ('{"a": 1, "extra": 2}', ["a"], "ok", {"a": 1, "extra": 2}),
    ('{"a": "ünïcödé ∑"}', ["a"], "ok", {"a": "ünïcödé ∑"}),
    ("", ["a"], "empty", None),
    ("   \n\t ", ["a"], "empty", None),
    ('{"b": 1}', ["a"], "missing_fields", None),
    ('{"a": 1', ["a"], "invalid_json", None),
    ("{'a': 1}", ["a"], "invalid_json", None),  # Python dict syntax is not JSON
    ("a: 1", ["a"], "invalid_json", None),
    ("no json at all", ["a"], "invalid_json", None),
    ('[{"a": 1}]', ["a"], "ok", {"a": 1}),  # the object inside a list is found
    ("[1, 2, 3]", ["a"], "not_object", None),
    ("42", ["a"], "not_object", None),
    ('"just a string"', ["a"], "not_object", None),
    ("{}", ["a"], "missing_fields", None),
    ("{{{{", ["a"], "invalid_json", None),
    ("}}}} {", ["a"], "invalid_json", None),
    ('{"a": NaN}', ["a"], "ok", None),  # Python's json accepts NaN; it is a number to us
    ('<|im_start|>assistant\n{"a": 1}<|im_end|>', ["a"], "ok", {"a": 1}),
    ('{"a": 1}\n{"a": 2}', ["a"], "ok", {"a": 1}),
    ("\x00\x01{\"a\": 1}\x02", ["a"], "ok", {"a": 1}),
]


@pytest.mark.parametrize("text,required,status,expected", JSON_CASES)
def test_parse_json_object(text: str, required: list[str], status: str, expected) -> None:
    parsed = parse_json_object(text, required)
    assert parsed.status == status, parsed.error
    if expected is not None:
        assert parsed.value == expected
    if status != "ok":
        assert parsed.error


RANKING_CASES = [
    ('{"rationale": "r", "ranking": ["B", "A", "C"]}', "ok", [1, 0, 2]),
    ('{"rationale": "r", "ranking": ["A", "A", "C"]}', "invalid_ranking", None),  # duplicate id
    ('{"rationale": "r", "ranking": ["A", "C"]}', "invalid_ranking", None),  # missing id
    ('{"rationale": "r", "ranking": ["A", "B", "C", "D"]}', "invalid_ranking", None),  # out of range
    ('{"rationale": "r", "ranking": [0, 1, 2]}', "invalid_ranking", None),  # indices, not labels
    ('{"rationale": "r", "ranking": "A > B > C"}', "invalid_json", None),
    ('{"rationale": "r"}', "invalid_json", None),
    ("not json", "invalid_json", None),
    ('{"ranking": ["C", "B", "A"]}', "ok", [2, 1, 0]),  # rationale missing: still a ranking
]


@pytest.mark.parametrize("text,status,expected", RANKING_CASES)
def test_parse_ranking_cases(text: str, status: str, expected) -> None:
    parsed = parse_ranking(text, labels_for(3))
    assert parsed.status == status
    assert parsed.ranking == expected


CODE_CASES = [
    ("def f(x):\n    return x\n", "f", "ok"),
    ("```python\ndef f(x):\n    return x\n```", "f", "ok"),
    ("```py\ndef f(x):\n    return x\n```", "f", "ok"),
    ("Here you go:\n```python\nimport math\ndef f(x):\n    return math.sqrt(x)\n```\nThis works.", "f", "ok"),
    ("```\ndef f(x):\n    return x\n```", "f", "ok"),
    ("```python\ndef f(x):\n    return x\n", "f", "ok"),  # unterminated fence
    ("```text\nnot code\n```\n```python\ndef f(): pass\n```", "f", "ok"),
    ("def g(x):\n    return x\n", "f", "missing_entry_point"),
    ("class A:\n    def f(self):\n        pass\n", "f", "missing_entry_point"),  # not top level
    ("def f(x)\n    return x\n", "f", "syntax_error"),
    ("```python\ndef f(x):\nreturn x\n```", "f", "syntax_error"),
    ("", "f", "empty"),
    ("```python\n```", "f", "empty"),
    ("x = 1\x00", "f", "syntax_error"),
]


@pytest.mark.parametrize("text,entry,status", CODE_CASES)
def test_parse_python(text: str, entry: str, status: str) -> None:
    assert parse_python(text, entry).status == status


def test_extract_code_prefers_python_fence() -> None:
    text = "```bash\nls\n```\n```python\nprint(1)\n```"
    assert extract_code(text) == "print(1)"


@pytest.mark.parametrize("text,status", [
    (TASK, "ok"),
    (TASK.replace('"f"', '"not a name"', 1), "missing_fields"),
    ('{"title": "T"}', "missing_fields"),
    ('{"cases": [{"args": [1], "expected": 2}]}', "missing_fields"),
])
def test_parse_task(text: str, status: str) -> None:
    assert parse_task(text).status == status


@pytest.mark.parametrize("text,status,n", [
    ('{"cases": [{"args": [1], "expected": 2}, {"args": [], "expected": null}]}', "ok", 2),
    ('{"cases": [{"args": [1], "expected": 2}, {"args": 1, "expected": 2}, {"args": [3]}]}', "ok", 1),
    ('{"cases": [{"args": 1, "expected": 2}]}', "no_valid_cases", 0),
    ('{"cases": "none"}', "no_valid_cases", 0),
    ('{"cases": []}', "no_valid_cases", 0),
    ('{"tests": []}', "missing_fields", 0),
])
def test_parse_eval(text: str, status: str, n: int) -> None:
    parsed = parse_eval(text)
    assert parsed.status == status
    if status == "ok":
        assert len(parsed.value["cases"]) == n
