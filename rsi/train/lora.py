"""LoRA adapters as checkpoints: building the peft model DPO trains, the adapter folder and its base's identity,
and merging an adapter into a plain HF folder.

An adapter folder is peft's (`adapter_config.json`, `adapter_model.safetensors`) plus `rsi_adapter.json`, which
records the base model's path and a hash of its weights. The engines keep the base packed and load only the
adapter; the hash is what lets a swap refuse an adapter trained on other weights than the ones being served,
whatever path they were read from.

Iterations stack by continuing the adapter: v2 starts from v1's adapter, not from v1 merged into the base. The
engines' base then never changes, so every swap and every rollback stays an adapter change; merging would give
each version a new base and bring back the full reload that LoRA is here to avoid.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from rsi.train.config import LoraSettings

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_META = "rsi_adapter.json"
_HASHED = (".safetensors", ".bin")


def is_adapter(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is an adapter folder (peft's format) rather than a full HF model folder."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def model_folder(model: str | os.PathLike[str]) -> Path:
    """The local folder of a model: `model` itself, or for an HF id (model.path=Org/Name) its cached snapshot."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model), local_files_only=True))


def base_hash(model_dir: str | os.PathLike[str]) -> str:
    """sha256 over a model folder's config.json and weight files (names and bytes), cached per file state."""
    folder = model_folder(model_dir)
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.name.endswith(_HASHED))
    if not any(p.name.endswith(_HASHED) for p in files):
        raise FileNotFoundError(f"{folder}: no weight files to hash (a base model folder holds *.safetensors)")
    state = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(str(folder), state)


@lru_cache(maxsize=16)
def _hash_files(folder: str, state: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in state:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(folder, name), "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def read_meta(adapter_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The adapter's rsi_adapter.json: base_model, base_hash, parent (the adapter it continued, or None)."""
    path = Path(adapter_dir) / ADAPTER_META
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no {ADAPTER_META}; an adapter must record its base model")
    return json.loads(path.read_text())


def write_meta(adapter_dir: str | os.PathLike[str], base_model: str, parent: str | None) -> dict[str, Any]:
    meta = {"base_model": str(model_folder(base_model)), "base_hash": base_hash(base_model), "parent": parent}
    (Path(adapter_dir) / ADAPTER_META).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def base_of(path: str | os.PathLike[str]) -> str:
    """The full model folder a checkpoint runs on: an adapter's recorded base, or the folder itself."""
    return read_meta(path)["base_model"] if is_adapter(path) else str(path)


def weights_record(path: str) -> dict[str, Any]:
    """What served a corpus pass, for its manifest: the checkpoint, and for an adapter the base it ran on."""
    if not is_adapter(path):
        return {"checkpoint": str(path), "adapter": False}
    meta = read_meta(path)
    return {"checkpoint": str(path), "adapter": True, "base_model": meta["base_model"],
            "base_hash": meta["base_hash"], "parent": meta.get("parent")}


def check_base(adapter_dir: str, serving_base: str, serving_hash: str) -> None:
    """Refuse an adapter trained on other base weights than the served ones: one line naming both."""
    meta = read_meta(adapter_dir)
    if meta.get("base_hash") != serving_hash:
        raise ValueError(f"adapter {adapter_dir} was trained on {meta.get('base_model')} "
                         f"(sha256 {str(meta.get('base_hash'))[:12]}), but the pool serves {serving_base} "
                         f"(sha256 {serving_hash[:12]}); the pool keeps serving its current version")


def adapter_rank(adapter_dir: str | os.PathLike[str]) -> int:
    return int(json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())["r"])


def peft_config(settings: LoraSettings) -> Any:
    from peft import LoraConfig

    targets: Any = "all-linear" if "all-linear" in settings.target_modules else list(settings.target_modules)
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def policy_model(start: str, settings: LoraSettings, dtype: Any) -> tuple[Any, str]:
    """The peft model DPO trains from `start` (a base folder: a fresh adapter; an adapter folder: that adapter,
    trainable, on its recorded base) and the base folder it runs on."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = base_of(start)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if is_adapter(start):
        return PeftModel.from_pretrained(model, start, is_trainable=True), base
    return get_peft_model(model, peft_config(settings)), base


def trainable_share(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def merge_adapter(adapter_dir: str, out_dir: str) -> Path:
    """Merge an adapter into its base: a plain HF folder (weights, config, tokenizer) that transformers and vLLM
    load with no peft; the adapter's rsi_adapter.json is copied beside as rsi_merged_from.json."""
    meta = read_meta(adapter_dir)
    base = meta["base_model"]
    if base_hash(base) != meta["base_hash"]:  # before torch loads: a refusal takes no seconds
        raise ValueError(f"adapter {adapter_dir} was trained on {base} (sha256 {meta['base_hash'][:12]}), whose "
                         f"weights have changed since (sha256 {base_hash(base)[:12]})")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer_from = adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(out)
    (out / "rsi_merged_from.json").write_text(json.dumps({**meta, "adapter": str(Path(adapter_dir).resolve())},
                                                         indent=1) + "\n")
    return out


def random_adapter(base: str, out: Path, seed: int, r: int = 16, scale: float = 0.02) -> str:
    """An adapter folder on `base` as a DPO step writes one, its B matrices drawn off zero (seeded) so that it
    changes the outputs: what swap benchmarks and device checks load without training."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           peft_config(LoraSettings(enabled=True, r=r)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    write_meta(out, base, None)
    return str(out)
