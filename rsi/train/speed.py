"""Sizing a DPO step: the corpus' longest pair, the step's memory estimate, threads (rows: `unpad`).

Activation checkpointing trades one more forward per step for memory; `needs_checkpointing` turns it on only
when the estimate below does not fit in the memory this worker can use.
"""

from __future__ import annotations

import os
from typing import Any

import torch

# Truncation when train.max_length is unset, and the ceiling of the length the memory estimate assumes.
MAX_LENGTH_CAP = 1024
# Floats kept per token and layer for the backward without checkpointing, a Llama-style block: ~10 hidden-size
# tensors (norm inputs/outputs, q/k/v, attention output, residuals) and 4 intermediate-size ones (gate, up, their
# activation and product). SmolLM2-135M: 10·576 + 4·1536 = 11 904 floats ≈ 47 KB per token and layer.
_HIDDEN_TENSORS, _INTERMEDIATE_TENSORS = 10, 4
# Process baseline (Python, torch, the tokenized corpus) plus allocator slack and autograd/LM-head temporaries.
# Fitted to the two peak-RSS points measured on SmolLM2 (batch 2 at max_length 1024, reference model kept):
# 13.7 GB without checkpointing where the terms below give 8.5 GB, 8.4 GB with it where they give 3.2 GB.
_OVERHEAD = 5 * 2**30
_USABLE_SHARE = 0.9  # of the memory available when training starts


def longest_pair(dataset: Any, cap: int | None) -> int:
    """Tokens of the longest training row (prompt + the longer completion) of TRL's tokenized dataset, capped."""
    prompts, chosen, rejected = (dataset[c] for c in ("prompt_ids", "chosen_ids", "rejected_ids"))
    longest = max((len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected)), default=1)
    return min(longest, cap) if cap else longest


def training_bytes(config: Any, n_params: int, rows: int, length: int, *, checkpointing: bool,
                   reference_model: bool) -> int:
    """Estimated peak bytes of one fp32 AdamW DPO step on `rows` sequences of `length` tokens.

    Static: weights, gradients and AdamW's two moments (16 bytes a parameter), plus 4 a parameter for a
    reference model kept beside the policy. Activations: `_HIDDEN_TENSORS`·hidden + `_INTERMEDIATE_TENSORS`·
    intermediate floats per token and layer; with checkpointing only each layer's input (hidden floats) is kept
    plus one layer's full set during its recompute. Plus `_OVERHEAD`.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(text.hidden_size)
    intermediate = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    layers = int(text.num_hidden_layers)
    per_layer = (_HIDDEN_TENSORS * hidden + _INTERMEDIATE_TENSORS * intermediate) * rows * length * 4
    if checkpointing:
        activations = layers * hidden * rows * length * 4 + per_layer
    else:
        activations = layers * per_layer
    static = n_params * (16 + (4 if reference_model else 0))
    return int(static + activations + _OVERHEAD)


def available_bytes(use_gpu: bool, local_workers: int) -> int:
    """Memory this worker may fill: free device memory, or this node's available RAM shared among its workers."""
    if use_gpu and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available // max(1, local_workers))


def needs_checkpointing(config: Any, n_params: int, rows: int, length: int, *, reference_model: bool,
                        budget: int) -> bool:
    """True when the step without checkpointing is estimated not to fit in `_USABLE_SHARE` of `budget` bytes."""
    plain = training_bytes(config, n_params, rows, length, checkpointing=False, reference_model=reference_model)
    return plain > _USABLE_SHARE * budget


def cpu_threads(requested: int, local_workers: int) -> int:
    """Torch threads for a CPU worker: `requested`, or 0 → this node's cores shared among its workers."""
    return requested or max(1, (os.cpu_count() or 1) // max(1, local_workers))
