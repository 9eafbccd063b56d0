"""Per-pair weights for DPO, applied by sampling.

The corpus weights a pair by how much its judges are trusted. Drawing pairs with probability proportional to
weight (with replacement) makes the expected gradient the gradient of the weighted DPO loss
sum_i w_i * loss_i / sum_i w_i, without touching TRL's loss code, for every TRL loss type alike.
An epoch still draws len(dataset) pairs.
"""

from __future__ import annotations

import torch
from trl import DPOTrainer

from rsi.train.data import WEIGHT_COLUMN


class WeightedDPOTrainer(DPOTrainer):
    """DPOTrainer whose training sampler draws pairs in proportion to the dataset's weight column.

    With `unpad`, the policy (and a reference model, if kept) scores each row at its real length, and with
    `share_prompt` each pair's prompt once (`unpad.unpad_rows`), in the reference pass before training as in
    every step. Reference log-probs computed in
    that pass are columns of `train_dataset`, row-aligned with the weights the sampler reads.
    """

    def __init__(self, *args, unpad: bool = False, share_prompt: bool = False, **kwargs) -> None:
        # Set before super(): its reference pass already uses them.
        self._unpad, self._share_prompt, self._unpadded = unpad, share_prompt, False
        super().__init__(*args, **kwargs)
        self._install_unpad()

    def _install_unpad(self) -> None:
        from rsi.train.unpad import unpad_rows

        if self._unpad and not self._unpadded:  # after TRL's fused LM head, which the row split calls
            for model in (self.model, self.ref_model):
                if model is not None:
                    unpad_rows(model, self._share_prompt)
            self._unpadded = True

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        self._install_unpad()
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler | None:
        # The argument has had unused columns (the weight) removed; the prepared dataset still holds them,
        # row-aligned, since TRL's filtering of over-long prompts happened before both.
        dataset = self.train_dataset
        if dataset is None or WEIGHT_COLUMN not in dataset.column_names:
            return super()._get_train_sampler(train_dataset)
        weights = torch.tensor(dataset[WEIGHT_COLUMN], dtype=torch.double)
        # Same seed on every rank: accelerate shards one shared index stream across processes.
        generator = torch.Generator().manual_seed(self.args.data_seed or self.args.seed)
        return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(weights), replacement=True,
                                                      generator=generator)
