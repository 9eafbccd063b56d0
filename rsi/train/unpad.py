"""DPO batches scored without padding, each prompt once: the same log-probs, for the real tokens' cost.

TRL 1.16 pads each batch (chosen rows, then rejected rows) to its longest row, runs every prompt twice (once
with each completion), scores every position with the LM head off CUDA, and has `padding_free` switched off.
`unpad_rows` patches the model's forward (after TRL's fused LM head) so that:

- each row runs cut to its real length: right padding never reaches a real token through the causal mask;
- with `share_prompt`, a pair's prompt (all but its last token) runs once, and the chosen and rejected rows
  continue from its key/value cache; attention sees exactly the keys and values of the full row, and gradients
  reach the prompt through both. Not under activation checkpointing (transformers drops the cache there) nor
  for caches other than plain full-attention layers, where rows run whole;
- the LM head scores only the completion tokens, as TRL does on CUDA (off CUDA it scores all positions so that
  tile shapes stay fixed for compilers like Neuron's; eager CPU has no such need).

Per-token outputs are put back at their padded positions, zero elsewhere (what the fused head returns where the
label is -100), so TRL's loss sees the padded call's shapes. Differences are float rounding (GEMM shapes).
On code-task pairs prompts are most of the tokens, and the 49k-word head is a fifth of SmolLM2's matmul work.
"""

from __future__ import annotations

from typing import Any

import torch

_PER_TOKEN = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


def unpad_rows(model: torch.nn.Module, share_prompt: bool = True) -> None:
    """Patch `model.forward` as the module docstring says; any call other than TRL's fused-head scoring of a
    right-padded 2-D batch (or an MoE model asking for router logits) goes through unchanged."""
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import FusedCausalLMOutput

    fused = model.forward

    def head_on_labels(**kwargs: Any) -> Any:
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
                or not kwargs.get("fused_lm_head") or kwargs.get("output_router_logits") or input_ids.dim() != 2
                or "past_key_values" in kwargs):
            return fused(*args, **plain)
        lengths = attention_mask.sum(dim=1)
        width = input_ids.size(1)
        right_padded = bool((attention_mask == (torch.arange(width, device=attention_mask.device)
                                                < lengths[:, None])).all())
        if not right_padded:
            return head_on_labels(**plain)
        rows = input_ids.size(0)
        pieces: dict[int, tuple[int, Any]] = {}  # row → (column its outputs start at, outputs)
        sharing = share_prompt and rows % 2 == 0 and not _checkpointing(model)
        for a in range(rows // 2 if sharing else 0):  # chosen row a, rejected row a + rows/2: one pair
            shared = _pair_sharing_prompt(model, head_on_labels, input_ids, labels, lengths, a, a + rows // 2,
                                          kwargs)
            if shared is not None:
                pieces.update(shared)
        for row in range(rows):
            if row not in pieces:
                n = max(int(lengths[row]), 2)  # a lone token has no next-token label; keep shapes valid
                pieces[row] = (0, head_on_labels(input_ids=input_ids[row:row + 1, :n],
                                                 attention_mask=attention_mask[row:row + 1, :n],
                                                 labels=labels[row:row + 1, :n], **kwargs))
        fields: dict[str, Any] = {}
        for name in _PER_TOKEN:
            values = [(start, getattr(out, name)) for start, out in (pieces[r] for r in range(rows))]
            if any(v is None for _, v in values):
                fields[name] = None
                continue
            fields[name] = torch.cat([torch.cat([v.new_zeros((1, start)), v,
                                                 v.new_zeros((1, width - 1 - start - v.size(1)))], dim=1)
                                      for start, v in values], dim=0)
        loss = -fields["log_probs"].sum() / fields["label_mask"].sum().clamp(min=1)
        return FusedCausalLMOutput(loss=loss, aux_loss=None, **fields)

    model.forward = forward


def _checkpointing(model: torch.nn.Module) -> bool:
    """Activation checkpointing is on in some layer (transformers then drops the cache the prompt is shared by)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def _pair_sharing_prompt(model: torch.nn.Module, head: Any, input_ids: torch.Tensor, labels: torch.Tensor,
                         lengths: torch.Tensor, a: int, b: int, kwargs: dict[str, Any]) -> dict | None:
    """Rows a and b scored from one pass over their common prompt; None when they share none, or the cache is not
    one this can branch (the rows then run alone)."""
    from transformers import DynamicCache

    labelled = labels[[a, b]] != -100
    if not bool(labelled.any(dim=1).all()):
        return None
    prompt = int(labelled.float().argmax(dim=1).min())  # first completion position of either row
    if prompt < 2 or not torch.equal(input_ids[a, :prompt], input_ids[b, :prompt]):
        return None
    # All of the prompt but its last token; each row then runs from that token, whose output predicts the first
    # completion token.
    # The decoder alone: a peft model's `base_model` is its tuner, which would run the LM head over the prefix.
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = causal_lm.base_model(input_ids=input_ids[a:a + 1, :prompt - 1], use_cache=True)
    cache = prefix.past_key_values
    if (cache is None or cache.get_seq_length() != prompt - 1
            or any(type(layer).__name__ != "DynamicLayer" for layer in cache.layers)):
        return None
    out = {}
    for row in (a, b):
        n = int(lengths[row])
        branch = DynamicCache(ddp_cache_data=[(layer.keys, layer.values) for layer in cache.layers])
        out[row] = (prompt - 1, head(input_ids=input_ids[row:row + 1, prompt - 1:n],
                                     attention_mask=torch.ones_like(input_ids[row:row + 1, :n]),
                                     labels=labels[row:row + 1, prompt - 1:n], past_key_values=branch, **kwargs))
    return out
