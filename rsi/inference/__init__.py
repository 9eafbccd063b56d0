"""Model serving: EngineActor with vLLM and transformers backends, and in-place weight swaps."""

from rsi.inference.engine import EngineActor, EngineSpec, start_engine
from rsi.inference.requests import Completion, GenerationRequest

__all__ = ["Completion", "EngineActor", "EngineSpec", "GenerationRequest", "start_engine"]
