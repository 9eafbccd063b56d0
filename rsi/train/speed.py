"""What makes a CPU DPO step cheap without changing what it learns: no padding, memory-driven checkpointing.

TRL 1.16 pads each batch (chosen rows, then rejected rows) to its longest row, scores every position of every
row with the LM head off CUDA, and has `padding_free` switched off. `unpad_rows` runs each row of a batch through
the model alone, cut to its real length: right padding never reaches a real token through the causal mask, so
the per-token log-probs are the padded ones up to float noise, for the cost of the real tokens only. It also
has the LM head score only the completion tokens, as TRL does on CUDA (off CUDA it scores all positions so that
tile shapes stay fixed for compilers like Neuron's; eager CPU has no such need). On code-task pairs prompts are
most of the tokens, and the 49k-word head is a fifth of SmolLM2's matmul work.

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


_PER_TOKEN = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


def unpad_rows(model: torch.nn.Module) -> None:
    """Patch `model.forward` (after TRL's fused LM head) to score right-padded rows one by one, unpadded.

    Only the fused-head call TRL's DPO loss and reference pass make is split; any other call, a batch without
    padding, left padding or an MoE model asking for router logits goes through unchanged. The per-token outputs
    are padded back with zeros (what the fused head returns where the label is -100), so callers see the shapes
    of the padded call.
    """
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import FusedCausalLMOutput

    fused = model.forward

    def inner(**kwargs: Any) -> Any:
        # The head's choice between scoring every position and only the labelled ones is made per call through
        # this module global; the backward does not read it. Swapped for the call only.
        chooser = trl_utils._use_triton
        trl_utils._use_triton = lambda device: True
        try:
            return fused(**kwargs)
        finally:
            trl_utils._use_triton = chooser

    def forward(*args: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        plain = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if (args or input_ids is None or attention_mask is None or labels is None
                or not kwargs.get("fused_lm_head") or kwargs.get("output_router_logits") or input_ids.dim() != 2):
            return fused(*args, **plain)
        if input_ids.size(0) < 2:
            return inner(**plain)
        lengths = attention_mask.sum(dim=1)
        width = input_ids.size(1)
        right_padded = bool((attention_mask == (torch.arange(width, device=attention_mask.device)
                                                < lengths[:, None])).all())
        if not right_padded or bool((lengths == width).all()):
            return inner(**plain)
        parts = []
        for row, n in enumerate(lengths.tolist()):
            n = max(int(n), 2)  # a row of one token has no next-token label; keep the padded call's shape valid
            parts.append(inner(input_ids=input_ids[row:row + 1, :n], attention_mask=attention_mask[row:row + 1, :n],
                               labels=labels[row:row + 1, :n], **kwargs))
        fields: dict[str, Any] = {}
        for name in _PER_TOKEN:
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                fields[name] = None
                continue
            fields[name] = torch.cat([torch.cat([v, v.new_zeros((1, width - 1 - v.size(1)))], dim=1)
                                      for v in values], dim=0)
        mask = fields["label_mask"]
        loss = -fields["log_probs"].sum() / mask.sum().clamp(min=1)
        return FusedCausalLMOutput(loss=loss, aux_loss=None, **fields)

    model.forward = forward


def cpu_threads(requested: int, local_workers: int) -> int:
    """Torch threads for a CPU worker: `requested`, or 0 → this node's cores shared among its workers."""
    return requested or max(1, (os.cpu_count() or 1) // max(1, local_workers))
