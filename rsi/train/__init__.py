"""DPO training of the policy on the preferences corpus: TRL's DPOTrainer under Ray Train, optional ZeRO."""

from rsi.train.config import TrainConfig, TrainResult
from rsi.train.data import load_preferences
from rsi.train.dpo import train_dpo

__all__ = ["TrainConfig", "TrainResult", "load_preferences", "train_dpo"]
