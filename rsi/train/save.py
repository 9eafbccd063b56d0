"""Writing the trained policy as a plain HF folder that `from_pretrained` and vLLM load, or as a LoRA adapter.

`Trainer.save_model` under DeepSpeed goes through `accelerator.get_state_dict`, whose tensors no longer share
storage, so a tied model comes out with a separate `lm_head.weight` beside `embed_tokens`. Engines that
honour `tie_word_embeddings` then see an unexpected key, and a later weight swap can update one copy but
not the other. Here the unsharded module saves itself (tying intact) and ZeRO-3 gathers first, then drops
every alias of a tied parameter but the first name, as `save_pretrained` does for an in-memory model.
"""

from __future__ import annotations

import os
from typing import Any


def save_policy(trainer: Any, save_dir: str) -> None:
    """Save model, configs and tokenizer to `save_dir`; call it on every rank (ZeRO-3 gathers).

    A peft model saves its trained adapter ("default") alone, in peft's format: not the frozen "ref" copy TRL
    keeps when it continues an adapter, and not the base weights."""
    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    adapter = hasattr(model, "peft_config")
    state_dict = None
    if _zero_stage(trainer) == 3:
        # Collective: every rank must take part; the full weights land on the main process only.
        state_dict = accelerator.get_state_dict(trainer.model_wrapped)
        if not adapter:
            state_dict = drop_tied_aliases(model, state_dict)
    if accelerator.is_main_process:
        os.makedirs(save_dir, exist_ok=True)
        if adapter:
            model.save_pretrained(save_dir, state_dict=state_dict, selected_adapters=["default"],
                                  safe_serialization=True, save_embedding_layers=False)
        else:
            model.save_pretrained(save_dir, state_dict=state_dict, safe_serialization=True)
        trainer.processing_class.save_pretrained(save_dir)
    accelerator.wait_for_everyone()


def drop_tied_aliases(model: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Keep one key per shared parameter: the first name `named_parameters` gives it."""
    seen: set[int] = set()
    aliases: list[str] = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            aliases.append(name)
        seen.add(id(param))
    return {k: v for k, v in state_dict.items() if k not in aliases}


def check_saved(save_dir: str) -> None:
    """A run that saved no weights must fail here, not later inside an engine's weight swap."""
    names = set(os.listdir(save_dir))
    if "adapter_config.json" in names:
        if "adapter_model.safetensors" not in names:
            raise RuntimeError(f"saved adapter is incomplete: {sorted(names)}")
        return
    if not any(n.endswith(".safetensors") for n in names) or "config.json" not in names:
        raise RuntimeError(f"saved model is incomplete: {sorted(names)}")


def _zero_stage(trainer: Any) -> int:
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return 0
    plugin = trainer.accelerator.state.deepspeed_plugin
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))
