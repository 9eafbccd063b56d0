"""The fast DPO step: unpadded rows, the memory estimate behind checkpointing, the config keys, and (tiny model,
in process) the same per-step losses with and without the speed-ups."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from rsi.train import TrainConfig  # noqa: E402
from rsi.train.speed import needs_checkpointing, training_bytes  # noqa: E402
from rsi.train.unpad import unpad_rows  # noqa: E402


class _CausalStub(torch.nn.Module):
    """A stand-in with the fused head's contract: each position's outputs depend on its prefix only (a causal
    running mean of embeddings), zero where the next label is -100. Counts the tokens it is run on."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 3)
        self.tokens_seen = 0

    def forward(self, input_ids, attention_mask, labels, fused_lm_head=False, use_cache=False):
        from trl.trainer.utils import FusedCausalLMOutput

        self.tokens_seen += input_ids.numel()
        h = self.embed(input_ids) * attention_mask[..., None]
        mean = h.cumsum(1) / attention_mask.cumsum(1).clamp(min=1)[..., None]
        mask = labels[:, 1:] != -100
        log_probs = -(mean[:, :-1] ** 2).sum(-1) * mask
        return FusedCausalLMOutput(loss=-log_probs.sum(), log_probs=log_probs, entropy=log_probs.detach() * 2,
                                   mean_logits=None, label_mask=mask, is_top1=mask & (log_probs > -1))


def _batch() -> dict[str, torch.Tensor]:
    lengths = [7, 3, 5, 7]
    ids = torch.zeros(4, 7, dtype=torch.long)
    mask = torch.zeros(4, 7, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.arange(1 + i, 1 + i + n)
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100  # the prompt
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.unit
def test_unpadded_rows_give_the_padded_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = _CausalStub()
    padded = model(**_batch(), fused_lm_head=True)
    (g_padded,) = torch.autograd.grad(padded.log_probs.sum(), model.embed.weight)
    unpad_rows(model, share_prompt=False)  # the stub keeps no cache; sharing is checked on the tiny model
    model.tokens_seen = 0
    split = model(**_batch(), fused_lm_head=True)
    assert model.tokens_seen == 7 + 3 + 5 + 7  # the real tokens, no padding
    for name in ("log_probs", "entropy", "label_mask", "is_top1"):
        assert torch.allclose(getattr(split, name).float(), getattr(padded, name).float(), atol=1e-6), name
    assert split.mean_logits is None
    (g_split,) = torch.autograd.grad(split.log_probs.sum(), model.embed.weight)
    assert torch.allclose(g_split, g_padded, atol=1e-6)
    # Calls without the fused head, and batches without padding, go through whole.
    model.tokens_seen = 0
    full = {k: v[[0, 3]] for k, v in _batch().items()}
    model(**full, fused_lm_head=True)
    assert model.tokens_seen == 14


@pytest.mark.unit
def test_memory_estimate_decides_checkpointing() -> None:
    """SmolLM2-135M's shape: batch 2 (4 rows) at 1024 tokens fits in 16 GB free without checkpointing, not in
    12 GB; checkpointing costs less, and a kept reference model adds 4 bytes a parameter. The estimates land
    within 1 GB of the peak RSS measured for both settings (13.7 and 8.4 GB with the reference model)."""
    smollm2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    params, gb = 134_515_008, 2**30
    plain = training_bytes(smollm2, params, 4, 1024, checkpointing=False, reference_model=False)
    ckpt = training_bytes(smollm2, params, 4, 1024, checkpointing=True, reference_model=False)
    with_ref = training_bytes(smollm2, params, 4, 1024, checkpointing=False, reference_model=True)
    assert with_ref == plain + 4 * params and abs(with_ref / 1e9 - 13.7) < 1.0
    ckpt_ref = training_bytes(smollm2, params, 4, 1024, checkpointing=True, reference_model=True)
    assert abs(ckpt_ref / 1e9 - 8.4) < 1.0 and ckpt < plain
    assert not needs_checkpointing(smollm2, params, 4, 1024, reference_model=False, budget=16 * gb)
    assert needs_checkpointing(smollm2, params, 4, 1024, reference_model=False, budget=12 * gb)
    assert not needs_checkpointing(smollm2, params, 4, 256, reference_model=False, budget=12 * gb)


@pytest.mark.unit
def test_speed_keys_reach_the_dpo_config() -> None:
    from rsi.train.worker import dpo_config_kwargs

    fast = dpo_config_kwargs(TrainConfig(), "/tmp/x")
    assert fast["precompute_ref_log_probs"] and fast["max_length"] == 1024
    assert not fast["gradient_checkpointing"]  # `auto` is decided once the corpus is tokenized
    assert fast["save_strategy"] == "no"
    before = dpo_config_kwargs(TrainConfig(precompute_ref=False, gradient_checkpointing="always", max_length=512,
                                           save_steps=3), "/tmp/x")
    assert not before["precompute_ref_log_probs"] and before["gradient_checkpointing"]
    assert before["max_length"] == 512 and before["save_strategy"] == "steps" and before["save_steps"] == 3
    zero2 = dpo_config_kwargs(TrainConfig(deepspeed="zero2", gradient_checkpointing="always"), "/tmp/x")
    assert not zero2["precompute_ref_log_probs"] and not zero2["gradient_checkpointing"]
    for bad, key in ((TrainConfig(save_steps=-1), "save_steps"), (TrainConfig(max_failures=-2), "max_failures"),
                     (TrainConfig(max_length=0), "max_length"),
                     (TrainConfig(gradient_checkpointing="sometimes"), "gradient_checkpointing")):
        with pytest.raises(ValueError, match=key):
            bad.validate()


# -- the tiny model, in process: what is learned does not change -------------------------------------------

@pytest.mark.ray
@pytest.mark.parametrize("share_prompt", [False, True])
def test_unpadded_tiny_model_scores_as_padded(tiny_model: Path, share_prompt: bool) -> None:
    """TRL's fused-head call on a padded [chosen; rejected] batch vs the unpadded rows (and shared prompts):
    the same per-token log-probs and gradients, up to float rounding."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    prompts = [torch.randint(3, 500, (n,)) for n in (9, 4)]
    completions = [torch.randint(3, 500, (n,)) for n in (5, 2, 3, 7)]  # chosen 0, chosen 1, rejected 0, rejected 1
    rows = [torch.cat([prompts[i % 2], c]) for i, c in enumerate(completions)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(4, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
        start = len(prompts[i % 2])
        labels[i, start:len(r)] = r[start:]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "fused_lm_head": True, "use_cache": False}

    def run() -> tuple[dict, list[torch.Tensor]]:
        model.zero_grad()
        out = model(**batch)
        (out.log_probs.sum() + 0.1 * out.log_probs.pow(2).sum()).backward()
        return out, [p.grad.clone() for p in model.parameters()]

    padded, grads = run()
    unpad_rows(model, share_prompt=share_prompt)
    split, split_grads = run()
    assert torch.allclose(split.log_probs, padded.log_probs, atol=1e-5)
    assert torch.equal(split.label_mask, padded.label_mask)
    assert torch.allclose(split.entropy * padded.label_mask, padded.entropy * padded.label_mask, atol=1e-5)
    # Relative to each gradient's norm: the tied embedding's entries reach ~1e2 through the LM head, where fp32
    # summation order alone moves single entries by ~1e-4.
    for name, g, h in zip([n for n, _ in model.named_parameters()], split_grads, grads):
        assert (g - h).norm() <= 1e-5 * h.norm() + 1e-7, (name, (g - h).norm(), h.norm())


def _steps(cfg: TrainConfig, model_dir: Path, table, out: Path) -> tuple[list[dict], dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsi.train.data import table_to_dataset
    from rsi.train.worker import build_trainer

    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer, decided = build_trainer(cfg, model, AutoTokenizer.from_pretrained(model_dir), table_to_dataset(table),
                                     str(out))
    trainer.train()
    return [e for e in trainer.state.log_history if "loss" in e], decided


@pytest.mark.ray
def test_speedups_learn_the_same(tiny_model: Path, tmp_path: Path) -> None:
    """Per-step loss and chosen/rejected log-probs of 6 weighted-sampled steps agree with the slow path's.

    The two paths differ only in float rounding: GEMM shapes (rows alone vs padded together, completion-only head
    tiles), recomputed activations, and the reference scored before training instead of per step. That noise is
    ~1e-6 relative per forward; Adam's normalisation can amplify it on near-zero gradients over the steps, so
    the bound is 1e-4 absolute on losses near ln 2 and relative on log-probs, far below what one different
    sampled pair or a misaligned reference row changes (~1e-2 and more).
    """
    import datasets
    from test_train import _pairs

    from rsi.train.data import prepare_preferences

    rows = _pairs(16)
    for i, r in enumerate(rows):  # unequal lengths, so batches carry padding
        r["chosen"][0]["content"] = r["chosen"][0]["content"] * (1 + i % 4)
        r["prompt"][1]["content"] += " Use a loop." * (i % 3)
    table, weighted = prepare_preferences(datasets.Dataset.from_list(rows), "weight")
    assert weighted
    common = {"max_steps": 6, "learning_rate": 1e-4, "per_device_batch_size": 2, "seed": 3}
    slow, slow_decided = _steps(TrainConfig(precompute_ref=False, gradient_checkpointing="always",
                                            padding_free=False, max_length=1024, **common), tiny_model, table,
                                tmp_path / "slow")
    fast, fast_decided = _steps(TrainConfig(**common), tiny_model, table, tmp_path / "fast")
    assert slow_decided["gradient_checkpointing"] and not slow_decided["precompute_ref"]
    assert fast_decided["precompute_ref"] and fast_decided["padding_free"]
    assert len(slow) == len(fast) == 6
    assert fast[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # precomputed reference == starting policy
    for a, b in zip(slow, fast):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4), (a, b)
        for key in ("logps/chosen", "logps/rejected"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (key, a, b)
    assert any(abs(a["loss"] - math.log(2)) > 1e-3 for a in slow), "the run must learn for the check to mean much"


@pytest.mark.ray
def test_sft_weight_adds_the_chosen_answers_nll(tiny_model: Path, tmp_path: Path) -> None:
    """`train.sft_weight` adds w × the chosen answers' mean token NLL to the preference loss (RPO): on the first
    step (reference == policy, so DPO's part is ln 2) the extra loss is positive and doubles with w, and over a
    few steps the chosen answers become likelier than under DPO alone."""
    import datasets
    from test_train import _pairs

    from rsi.train.data import prepare_preferences

    table, _ = prepare_preferences(datasets.Dataset.from_list(_pairs(8)), "weight")
    common = {"max_steps": 4, "learning_rate": 1e-3, "per_device_batch_size": 2, "seed": 3}
    runs = {w: _steps(TrainConfig(sft_weight=w, **common), tiny_model, table, tmp_path / str(w))[0]
            for w in (0.0, 1.0, 2.0)}
    assert runs[0.0][0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    nll = runs[1.0][0]["loss"] - math.log(2)
    assert nll > 1.0  # a random tiny model: several nats per token
    assert runs[2.0][0]["loss"] - math.log(2) == pytest.approx(2 * nll, rel=1e-4)
    assert runs[1.0][-1]["logps/chosen"] > runs[0.0][-1]["logps/chosen"]
    with pytest.raises(ValueError, match="train.sft_weight"):
        TrainConfig(sft_weight=-1).validate()
