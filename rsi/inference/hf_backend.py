"""transformers backend: `generate` on a loaded model; the portable fallback and a reference for vLLM."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from rsi.inference.requests import Completion, GenerationRequest, prompt_length


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

    def _compiled_grammar(self, schema: dict[str, Any]) -> Any:
        import xgrammar as xgr

        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
            self._grammar_compiler = xgr.GrammarCompiler(info)
        # No free whitespace, as on vLLM: small models otherwise spend their budget on blanks.
        return self._grammar_compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)

    def generate(self, requests: list[GenerationRequest], version: int) -> list[Completion]:
        # Batch requests that share sampling settings; a schema-constrained batch gets one grammar per row.
        results: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            n = prompt_length(self.tokenizer, r.messages)
            if n >= self.max_model_len:  # answered alone and empty, as on vLLM; the batch goes on
                results[i] = Completion("", n, 0, "prompt_too_long", version)
                continue
            groups[(r.max_tokens, r.temperature, r.top_p, r.json_schema is not None)].append(i)
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
        # One generator draw per batch: seeding from all request seeds makes a rerun of the same batch repeat.
        digest = hashlib.sha256(json.dumps([r.seed for r in batch] + [self.seed]).encode()).digest()
        torch.manual_seed(int.from_bytes(digest[:8], "little") % (2**63))
        first = batch[0]
        processors = []
        if first.json_schema is not None:
            processors.append(xgr.contrib.hf.LogitsProcessor([self._compiled_grammar(r.json_schema) for r in batch]))
        sampling = first.temperature > 0
        budget = min(first.max_tokens, self.max_model_len - enc["input_ids"].shape[1])
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=budget, do_sample=sampling,
                temperature=first.temperature if sampling else None, top_p=first.top_p if sampling else None,
                top_k=None, logits_processor=processors or None, pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = enc["input_ids"].shape[1]
        eos = {self.tokenizer.eos_token_id, *(self.model.generation_config.eos_token_id or [])} \
            if isinstance(self.model.generation_config.eos_token_id, list) else \
            {self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id}
        completions = []
        for row, mask in zip(out, enc["attention_mask"]):
            new = row[prompt_len:].tolist()
            stopped = next((k for k, t in enumerate(new) if t in eos), None)
            tokens = new if stopped is None else new[:stopped]
            completions.append(Completion(
                text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                num_prompt_tokens=int(mask.sum()), num_tokens=len(tokens),
                finish_reason="stop" if stopped is not None else "length", model_version=version,
            ))
        return completions

    def load_weights(self, path: str) -> None:
        from transformers import AutoModelForCausalLM

        fresh = AutoModelForCausalLM.from_pretrained(path, dtype=self.model.dtype)
        # Copy into the live module so anything holding a reference to it sees the new weights.
        missing, unexpected = self.model.load_state_dict(fresh.state_dict(), strict=False)
        if unexpected or any(not k.endswith("lm_head.weight") for k in missing):
            raise ValueError(f"checkpoint {path} does not match the served model: "
                             f"missing={missing[:5]} unexpected={unexpected[:5]}")
        if getattr(self.model.config, "tie_word_embeddings", False):
            self.model.tie_weights()
