"""transformers backend: `generate` on a loaded model; the portable fallback and a reference for vLLM."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from rsi.inference.adapters import AdapterSlots
from rsi.inference.requests import Completion, GenerationRequest, prompt_length


class RowSampler:
    """Per-row sampling inside a greedy `generate`: temperature, top-p, then the Gumbel-max trick
    (argmax of log-probabilities plus Gumbel noise is an exact sample from the softmax).

    Each row draws its noise from its own generator seeded by the request's seed, so a request's text does not
    depend on which other requests share its batch: a rerun reproduces it, as vLLM's per-request seeds do.
    Rows with temperature 0 stay greedy.
    """

    def __init__(self, batch: list[GenerationRequest], engine_seed: int, device: str):
        import torch

        self.temperature = [r.temperature for r in batch]
        self.top_p = [r.top_p for r in batch]
        self.generators = []
        for r in batch:
            seed = r.seed if r.seed is not None else int.from_bytes(
                hashlib.sha256(json.dumps([engine_seed, r.messages]).encode()).digest()[:8], "little") >> 1
            self.generators.append(torch.Generator(device=device).manual_seed(seed))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float()
        for i, (t, p, gen) in enumerate(zip(self.temperature, self.top_p, self.generators)):
            if t <= 0:
                continue
            logp = torch.log_softmax(scores[i] / t, dim=-1)
            if p < 1.0:
                sorted_logp, order = torch.sort(logp, descending=True)
                cum = sorted_logp.exp().cumsum(-1)
                drop = cum - sorted_logp.exp() > p  # keep the smallest prefix whose mass reaches p
                logp[order[drop]] = float("-inf")
            u = torch.rand(logp.shape, generator=gen, device=logp.device).clamp_(1e-20, 1.0)
            scores[i] = logp - torch.log(-torch.log(u))
        return scores


class HFBackend:
    def __init__(self, model_path: str, *, dtype: str, threads: int, seed: int, max_model_len: int,
                 batch_size: int = 16):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"  # decoder-only batches must be left-padded
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.seed = seed
        self.max_model_len = max_model_len
        self.batch_size = batch_size
        self._grammar_compiler: Any = None
        self.adapters = AdapterSlots()

    def _compiled_grammar(self, schema: dict[str, Any]) -> Any:
        import xgrammar as xgr

        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
            self._grammar_compiler = xgr.GrammarCompiler(info)
        # No free whitespace, as on vLLM: small models otherwise spend their budget on blanks.
        return self._grammar_compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)

    def generate(self, requests: list[GenerationRequest], version: int) -> list[Completion]:
        # Sampling is per row (see RowSampler), so any requests may share a batch; only the presence of a
        # grammar splits them, since xgrammar's processor needs one grammar for every row.
        results: list[Completion | None] = [None] * len(requests)
        groups: dict[bool, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            n = prompt_length(self.tokenizer, r.messages)
            if n >= self.max_model_len:  # answered alone and empty, as on vLLM; the batch goes on
                results[i] = Completion("", n, 0, "prompt_too_long", version)
                continue
            groups[r.json_schema is not None].append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                for i, c in zip(chunk, self._generate_batch([requests[i] for i in chunk], version)):
                    results[i] = c
        return [c for c in results if c is not None]

    def _generate_batch(self, batch: list[GenerationRequest], version: int) -> list[Completion]:
        import torch
        import xgrammar as xgr

        texts = [self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
                 for r in batch]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        processors: list[Any] = []
        if batch[0].json_schema is not None:
            processors.append(xgr.contrib.hf.LogitsProcessor([self._compiled_grammar(r.json_schema) for r in batch]))
        processors.append(RowSampler(batch, self.seed, self.device))  # after the grammar: samples among allowed
        budget = min(max(r.max_tokens for r in batch), self.max_model_len - enc["input_ids"].shape[1])
        with torch.inference_mode(), self._routing():
            out = self.model.generate(
                **enc, max_new_tokens=budget, do_sample=False, temperature=None, top_p=None, top_k=None,
                logits_processor=processors, pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = enc["input_ids"].shape[1]
        eos_ids = self.model.generation_config.eos_token_id
        eos = {self.tokenizer.eos_token_id, *(eos_ids if isinstance(eos_ids, list) else [eos_ids])}
        completions = []
        for r, row, mask in zip(batch, out, enc["attention_mask"]):
            new = row[prompt_len:].tolist()[: r.max_tokens]
            stopped = next((k for k, t in enumerate(new) if t in eos), None)
            tokens = new if stopped is None else new[:stopped]
            completions.append(Completion(
                text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                num_prompt_tokens=int(mask.sum()), num_tokens=len(tokens),
                finish_reason="stop" if stopped is not None else "length", model_version=version,
                token_ids=tokens,
            ))
        return completions

    def _routing(self) -> Any:
        """The adapter requests go to: the active one, or none (the base) with every adapter switched off."""
        from contextlib import nullcontext

        if self.adapters.active is None and hasattr(self.model, "disable_adapter"):
            return self.model.disable_adapter()
        return nullcontext()

    def load_adapter(self, path: str, version: int | None = None) -> None:
        """Serve the LoRA adapter at `path`: loaded beside the previous one (a rollback routes back to it without
        reading the disk), older ones dropped. The calls of one replica are serial, so routing is a switch."""
        from peft import PeftModel

        before = dict(self.adapters.names)
        name, new, evict = self.adapters.admit(path)
        try:
            if new:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(path, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
                self.model.eval()
        except BaseException:
            self.adapters.names = before  # still serving what it served
            raise
        self.model.set_adapter(name)
        for old in evict:
            self.model.delete_adapter(old)
        self.adapters.active = name

    def use_base(self, version: int | None = None) -> None:
        self.adapters.active = None

    def load_weights(self, path: str, version: int | None = None) -> None:
        from transformers import AutoModelForCausalLM

        if hasattr(self.model, "unload"):  # new base weights: the adapters were trained on the old ones
            self.model = self.model.unload()
            self.adapters = AdapterSlots()
        fresh = AutoModelForCausalLM.from_pretrained(path, dtype=self.model.dtype)
        # Copy into the live module so anything holding a reference to it sees the new weights.
        missing, unexpected = self.model.load_state_dict(fresh.state_dict(), strict=False)
        if unexpected or any(not k.endswith("lm_head.weight") for k in missing):
            raise ValueError(f"checkpoint {path} does not match the served model: "
                             f"missing={missing[:5]} unexpected={unexpected[:5]}")
        if getattr(self.model.config, "tie_word_embeddings", False):
            self.model.tie_weights()

