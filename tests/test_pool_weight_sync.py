"""The CPU-checkable parts of the trainer → pool push: per-replica NCCL rank offsets, the weight source's
metadata agreeing with its iteration (vLLM sizes its receive buffers from one and reads bytes from the other),
and the tied head left out as in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsi.inference.weight_sync import GatheredSource, PoolSyncClient


def test_each_replica_worker_gets_its_own_nccl_rank() -> None:
    client = PoolSyncClient(["r0", "r1", "r2"], backend="nccl", tensor_parallel_size=2, version=3, checkpoint=None)
    payloads = client.init_payloads({"master_address": "10.0.0.1", "master_port": 1234, "world_size": 7})
    assert client.world_size() == 7  # trainer rank 0 + 3 replicas × TP 2
    assert [p["rank_offset"] for p in payloads] == [1, 3, 5]
    assert all(p["master_port"] == 1234 for p in payloads)
    ipc = PoolSyncClient(["r0", "r1"], backend="ipc", tensor_parallel_size=1, version=1, checkpoint=None)
    assert ipc.init_payloads({"packed": False}) == [{"packed": False}, {"packed": False}]


def test_source_metadata_matches_iteration_and_casts(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    source = GatheredSource(model, dtype=torch.bfloat16)
    meta = source.metadata()
    pairs = list(source)
    assert [m.name for m in meta] == [n for n, _ in pairs]
    for m, (_, t) in zip(meta, pairs):
        assert t.dtype == m.dtype == torch.bfloat16 and tuple(t.shape) == m.shape
    names = {m.name for m in meta}
    assert "lm_head.weight" not in names  # tied: vLLM takes the head from the embedding, as from the checkpoint
    from safetensors import safe_open

    with safe_open(str(tiny_model / "model.safetensors"), "pt") as f:
        assert names == set(f.keys())
    groups = source.groups()
    assert sorted(n for g in groups for n in g) == sorted(names)


def test_push_rejects_disk_as_a_push_backend() -> None:
    from rsi.inference.weight_sync import _send

    client = PoolSyncClient([], backend="disk", tensor_parallel_size=1, version=1, checkpoint=None)
    with pytest.raises(ValueError, match="push needs nccl or ipc"):
        _send("disk", client, object(), 0)
