"""Model serving: EngineActor with vLLM and transformers backends, replica pools, in-place weight swaps."""

from rsi.inference.engine import EngineActor, EngineSpec, start_engine
from rsi.inference.pool import EnginePool, PoolConfig, start_pool
from rsi.inference.requests import Completion, GenerationRequest

__all__ = ["Completion", "EngineActor", "EnginePool", "EngineSpec", "GenerationRequest", "PoolConfig",
           "start_engine", "start_pool"]
