"""A checkpoint read once into Ray's object store, for every replica of a pool to load from shared memory.

Replicas on one node map the same object store pages: the tensors are read from disk and parsed once, not once
per replica, and each replica copies them straight into its live parameters. Arrays travel as raw bytes with
their torch dtype beside them, since numpy has no bfloat16.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

SharedTensors = dict[str, tuple[Any, str]]  # parameter name -> (numpy array of the raw bytes, torch dtype name)


def read_checkpoint(path: str) -> SharedTensors:
    """Every tensor of the safetensors files in the checkpoint folder `path`."""
    import torch
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in checkpoint folder {path}")
    shared: SharedTensors = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            raw = tensor.contiguous().view(torch.uint8) if tensor.dim() else tensor.reshape(1).view(torch.uint8)
            shared[name] = (raw.numpy(), str(tensor.dtype).removeprefix("torch."))
    return shared


def iter_tensors(shared: SharedTensors) -> Iterator[tuple[str, Any]]:
    """(name, tensor) views of the shared arrays, without a copy: what a model's `load_weights` takes."""
    import warnings

    import torch

    with warnings.catch_warnings():  # object store arrays are read-only; loading only reads them
        warnings.simplefilter("ignore", UserWarning)
        for name, (raw, dtype) in shared.items():
            yield name, torch.from_numpy(raw).view(getattr(torch, dtype))


def start_reading(path: str) -> Any:
    """The checkpoint as an object ref, read by a task beside the caller (which may go on draining meanwhile)."""
    import ray

    return ray.remote(read_checkpoint).options(num_cpus=0).remote(path)
