"""The engine's wire format: plain dataclasses that cross Ray as dicts, the same for every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rsi.corpus.text import clean_text


@dataclass
class GenerationRequest:
    messages: list[dict[str, str]]  # chat messages; the engine applies the model's chat template
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None  # per-request sampling seed: reruns reproduce the same text
    json_schema: dict[str, Any] | None = None  # structured output: the engine only emits matching JSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    text: str
    num_prompt_tokens: int
    num_tokens: int
    finish_reason: str  # "stop" | "length"
    model_version: int  # the weights version that produced it, recorded on every corpus row
    token_ids: list[int] = field(default_factory=list)  # exact tokens: texts can differ in partial UTF-8 tails
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Where model text enters the pipeline: whatever a backend decodes, only storable text goes on.
        self.text = clean_text(self.text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_request(obj: GenerationRequest | dict[str, Any]) -> GenerationRequest:
    return obj if isinstance(obj, GenerationRequest) else GenerationRequest(**obj)


def prompt_length(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the chat-templated prompt, as the engines will see it."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)
