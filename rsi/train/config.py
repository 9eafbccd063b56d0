"""Settings and outcome of one DPO training run (`train:` in the config; conf/train/ holds presets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rsi.choice import Choice, check_choices


class DeepSpeed(Choice):
    none = "none"  # plain DDP (gloo on CPU, nccl on GPU)
    zero2 = "zero2"  # optimizer state and gradients sharded
    zero3 = "zero3"  # parameters sharded too; rank 0 gathers the full weights on save


class Checkpointing(Choice):
    """Activation (gradient) checkpointing: one more forward per step for far less activation memory."""

    auto = "auto"  # on only when rsi.train.speed's estimate of the step's peak memory does not fit
    always = "always"
    never = "never"


class LossType(Choice):
    """TRL 1.16 DPOTrainer loss types: a typo fails when the config is built, not in a Ray Train worker."""

    sigmoid = "sigmoid"
    hinge = "hinge"
    ipo = "ipo"
    exo_pair = "exo_pair"
    nca_pair = "nca_pair"
    robust = "robust"
    bco_pair = "bco_pair"
    sppo_hard = "sppo_hard"
    aot = "aot"
    aot_unpaired = "aot_unpaired"
    apo_zero = "apo_zero"
    apo_down = "apo_down"
    discopop = "discopop"
    sft = "sft"
    sigmoid_norm = "sigmoid_norm"


# Module names LoRA may wrap: the attention and MLP projections of the Llama, Qwen2 and Mistral families (SmolLM2
# and the tiny model are Llamas), which vLLM's LoRA kernels serve; "all-linear" is peft's every linear but the head.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "all-linear")


@dataclass
class LoraSettings:
    """`train.lora`: DPO trains a LoRA adapter (peft's LoraConfig fields) instead of every weight, and the pools
    serve it by name on base weights that stay loaded (docs/lora.md says when it pays)."""

    enabled: bool = False  # true: DPO trains an adapter, the engines keep the base and hot-load each version's
    r: int = 16  # rank of each adapter matrix pair; vLLM serves ranks up to 512
    alpha: float = 32.0  # scale alpha/r on the adapter's update (lora_alpha)
    # lora_dropout: TRL's DPO switches every dropout off (DPOConfig.disable_dropout), this one too
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])

    def validate(self) -> None:
        if self.r < 1:
            raise ValueError(f"train.lora.r: must be >= 1 (got r={self.r})")
        if self.r > 512:
            raise ValueError(f"train.lora.r: at most 512, the largest rank vLLM serves (got r={self.r})")
        if not self.alpha > 0:
            raise ValueError(f"train.lora.alpha: must be > 0 (got alpha={self.alpha})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"train.lora.dropout: must be within [0, 1) (got dropout={self.dropout})")
        unknown = [m for m in self.target_modules if m not in LORA_TARGETS]
        if unknown or not self.target_modules:
            raise ValueError(f"train.lora.target_modules: unknown {unknown} (known: {', '.join(LORA_TARGETS)})"
                             if unknown else "train.lora.target_modules: name at least one module")


@dataclass
class TrainConfig:
    deepspeed: DeepSpeed = DeepSpeed.none
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    # torch threads per CPU worker; 0: the node's cores shared among the workers. The engines are idle while
    # DPO runs, so the default takes every core (measured on SmolLM2, 2 cores: 54 → 28 s/step).
    threads: int = 0
    # Recompute activations in the backward pass: on SmolLM2 at max_length 1024 the CPU trainer's peak RSS
    # fell from 13.7 to 8.4 GB for 23% more time per step, so `auto` turns it on only when the estimate of the
    # step's memory (rsi/train/speed.py: weights, AdamW state, activations per token and layer, a fixed overhead
    # fitted to those two peaks) exceeds 90% of what the worker has free. Off under DeepSpeed on CPU (it fails).
    gradient_checkpointing: Checkpointing = Checkpointing.auto
    # Reference log-probs of every pair in one no-grad pass before training (TRL's precompute_ref_log_probs):
    # no reference model in memory, no reference forward per step. The reference is the starting policy either
    # way. Under DeepSpeed the reference model stays (rsi.train.worker.precomputes_ref).
    precompute_ref: bool = True
    # Each row of a batch scored alone at its real length instead of padded to the batch's longest (TRL 1.16's
    # own padding_free is disabled), the LM head on completion tokens only (rsi/train/unpad.py); the same
    # log-probs up to float noise, for the real tokens' cost.
    padding_free: bool = True
    # With padding_free: each pair's prompt runs once, both completions continue from its key/value cache
    # (off under activation checkpointing, which drops the cache). Prompts are most of a code pair's tokens.
    share_prompt: bool = True
    learning_rate: float = 5e-6
    beta: float = 0.1
    epochs: int = 1
    max_steps: int = -1  # > 0 overrides epochs
    per_device_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    # Truncation in tokens; None: the corpus' longest pair, capped at rsi.train.speed.MAX_LENGTH_CAP (1024).
    max_length: int | None = None
    seed: int = 0
    # The share of preference pairs trained with chosen and rejected swapped, a control for how much the labels
    # matter: 0.5 makes them random, 1.0 swaps every pair. Which pairs swap follows from `seed` and each pair's id
    # alone, so the same seed swaps the same pairs whatever order the corpus is read in.
    label_noise: float = 0.0
    loss_type: LossType = LossType.sigmoid
    # Weight of the chosen completion's mean token NLL added to the preference loss (RPO, "Iterative Reasoning
    # Preference Optimization", Pang et al. 2024; TRL's "sft" loss term); 0: off. DPO alone lowers the rejected
    # answer's likelihood and, with it, the format the chosen one shares: this keeps the chosen answers likely.
    sft_weight: float = 0.0
    # Mid-run checkpoints every `save_steps` optimizer steps (0: none), reported to Ray Train; a worker that
    # dies is restarted up to `max_failures` times (-1: without limit) and resumes from the newest checkpoint.
    save_steps: int = 0
    max_failures: int = 0
    # LoRA instead of full fine-tuning: a checkpoint is then an adapter folder on the unchanged base weights.
    lora: LoraSettings = field(default_factory=LoraSettings)

    def validate(self) -> None:
        """Fail before any Ray worker starts on settings that can never train; the message starts with the key.

        Run by rsi.config.validate at preflight, and again by `train_dpo` for callers that skip preflight.
        """
        check_choices(self, "train")
        self.lora.validate()
        positive = {"num_workers": self.num_workers, "cpus_per_worker": self.cpus_per_worker,
                    "epochs": self.epochs, "per_device_batch_size": self.per_device_batch_size,
                    "gradient_accumulation_steps": self.gradient_accumulation_steps}
        if self.max_length is not None:
            positive["max_length"] = self.max_length
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"train.{key}: must be >= 1 (got {key}={value})")
        if self.threads < 0:
            raise ValueError(f"train.threads: must be >= 0, 0 for the node's cores (got threads={self.threads})")
        for key in ("learning_rate", "beta"):
            if getattr(self, key) <= 0:
                raise ValueError(f"train.{key}: must be > 0 (got {getattr(self, key)})")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"train.label_noise: must be within [0, 1], 0 for the labels as written "
                             f"(got {self.label_noise})")
        if self.sft_weight < 0:
            raise ValueError(f"train.sft_weight: must be >= 0, 0 for the preference loss alone (got {self.sft_weight})")
        if self.save_steps < 0:
            raise ValueError(f"train.save_steps: must be >= 0, 0 for no mid-run checkpoints (got {self.save_steps})")
        if self.max_failures < -1:
            raise ValueError(f"train.max_failures: use -1 (no limit) or a count >= 0 (got {self.max_failures})")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"train.max_steps: use -1 (epochs decide) or a positive count (got {self.max_steps})")


@dataclass
class TrainResult:
    # HF folder (safetensors weights, config, tokenizer; loadable by from_pretrained and vLLM), or with train.lora
    # an adapter folder in peft's format whose rsi_adapter.json names the base model and its hash
    checkpoint: str
    steps: int  # optimizer steps taken
    loss: float | None  # mean training DPO loss over all steps (HF Trainer's `training_loss`)
    metrics: dict = field(default_factory=dict)  # last logged value of each TRL metric, plus run totals
    seconds: float = 0.0  # wall time of the Ray Train run, worker start and save included
    curve: list[tuple[int, float]] = field(default_factory=list)  # (optimizer step, logged DPO loss)
