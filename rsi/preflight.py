"""Checks that run before Ray starts: a bad config or an unloadable model fails here, naming the key or path."""

from __future__ import annotations

from pathlib import Path

from rsi.config import ConfigError, RsiConfig, validate
from rsi.models import resolve_model_path


def check_model(path: str, backend: str, lora: bool = False) -> None:
    """Fail fast when the backend cannot load the model at `path` (missing, not a model, unknown arch), or, with
    `lora`, cannot serve adapters on it."""
    from transformers import AutoConfig

    p = Path(path)
    if path.startswith(("/", ".", "~")) and not p.is_dir():
        raise ConfigError(f"model.path: no such model folder: {path}")
    try:
        hf_config = AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any failure here means the engine could not load it either
        raise ConfigError(f"model.path: {path} is not a loadable model ({type(e).__name__}: {e})") from e
    if p.is_dir() and not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
        raise ConfigError(f"model.path: {path} has a config but no weights (*.safetensors or *.bin)")
    archs = getattr(hf_config, "architectures", None) or []
    if backend == "vllm":
        from vllm.model_executor.models import ModelRegistry

        supported = set(ModelRegistry.get_supported_archs())
        if not any(a in supported for a in archs):
            raise ConfigError(f"model.path: {path} has architectures {archs}, none of which vLLM serves; "
                              "use backend=hf")
        if lora:
            from vllm.model_executor.models.interfaces import supports_lora

            classes = [ModelRegistry._try_load_model_cls(a) for a in archs if a in supported]
            if not any(c is not None and supports_lora(c) for c in classes):
                raise ConfigError(f"train.lora.enabled: vLLM serves no LoRA adapters on {archs} ({path}); "
                                  "use backend=hf or train.lora.enabled=false")


def preflight(cfg: RsiConfig) -> str:
    """Validate every section of the config and resolve the model; returns the model folder (or HF id) the
    engines load."""
    from rsi.cluster_env import check_job_run_dir

    validate(cfg)
    check_job_run_dir(cfg.run.dir)
    try:
        path = resolve_model_path(str(cfg.model.name), cfg.model.path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"model: {e}") from e
    check_model(path, str(cfg.backend.name), cfg.train.lora.enabled)
    return path
