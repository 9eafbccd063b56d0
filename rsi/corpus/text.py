"""The one sanitising path for text a model wrote, on its way to storage.

A Python str may hold code points that UTF-8 cannot encode: lone UTF-16 surrogates, which a tokenizer's decoder
does not produce but a JSON escape such as `\\ud83d` in a model's answer decodes to. Parquet, tokenizers, hashes
and UTF-8 files reject them, so one such answer would end a corpus pass, and a seeded resume would write the
same answer again.
Every model text therefore goes through `clean_text`: where completions enter the pipeline (the engine's
`Completion`), where parsers turn them into values (`rsi.tasks.parsing.loads_untrusted`), where the assembly
builds new text from them (`rsi.pipeline.assemble`), and, as the last line of defence, in the corpus writer
for every string it stores.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """`text` with every code point UTF-8 cannot encode (a lone surrogate) replaced by U+FFFD; a surrogate
    pair split over two code points becomes the one character it encodes. Valid text is returned as is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 keeps every code point (surrogates pass through), and its decoder joins the pairs and
        # replaces each unpaired half.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def clean_value(value: Any) -> Any:
    """`value` with `clean_text` applied to every string inside it (dict keys included), through dicts, lists
    and tuples; other values as they are. Containers are rebuilt, so the caller's are never changed."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clean_value(v) for v in value)
    return value
