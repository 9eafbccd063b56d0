"""A deterministic tiny Llama-architecture model and byte-level BPE tokenizer, built offline.

Tests and CPU smoke runs need a model that loads through the real `from_pretrained` path on every backend
(transformers and vLLM) without a hub download. The shape mirrors SmolLM2 where it matters to the engines:
tied input/output embeddings (the weight-swap trap lives there) and a head size vLLM's CPU attention accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

from rsi.models.folders import check_build_folder, read_stamp

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BUILD_VERSION = 3  # bump when the recipe changes so cached builds are rebuilt

# A fixed training text: enough code, JSON and prose shapes for BPE merges that the tasks will produce.
_CORPUS = [
    "def solve(nums: list[int]) -> int:\n    return sum(x for x in nums if x % 2 == 0)\n",
    '{"rationale": "the first is clearer", "ranking": [2, 0, 1]}',
    '{"title": "Parse log lines", "description": "Write a function", "entry_point": "parse"}',
    "Create a programming task in the domain of data processing. Rank the candidates from best to worst.",
    "import re\nimport json\nclass Solution:\n    def run(self, text: str) -> dict:\n        return {}\n",
    "The quick brown fox jumps over the lazy dog. 0123456789 ()[]{}<>=+-*/%!?.,:;'\"_#@$&|\\^`~",
    "assistant user system You are a helpful assistant. Answer in JSON.",
]


def build_tiny_model(out_dir: str | Path, *, vocab_size: int = 512, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 2, seed: int = 0) -> Path:
    """Build (or reuse) the tiny model under `out_dir`; returns the folder, loadable by `from_pretrained`."""
    out = Path(out_dir)
    stamp = out / "rsi_tiny.json"
    recipe = {"version": BUILD_VERSION, "vocab_size": vocab_size, "hidden_size": hidden_size,
              "num_layers": num_layers, "num_heads": num_heads, "seed": seed}
    check_build_folder(out, stamp.name)
    if read_stamp(stamp) == recipe:
        return out  # without loading torch: the common case, and a refusal, take no seconds
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    head_dim = hidden_size // num_heads
    if head_dim not in (32, 64, 128):
        raise ValueError(f"tiny model head size {head_dim}: vLLM's CPU attention needs 32, 64 or 128")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        head_dim=head_dim, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, torch_dtype="float32",
        # Large init: a near-uniform random model answers every prompt with one token; tests need outputs
        # that depend on the prompt and the weights.
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    stamp.write_text(json.dumps(recipe))
    return out
