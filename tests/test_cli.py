"""Bad input fails at start, before Ray, with the offending key or path named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rsi.config import ConfigError, FamilyConfig, RsiConfig, validate
from rsi.preflight import check_model, preflight
from rsi.tasks.programming import ProgrammingConfig


def _rsi(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsi.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.unit
def test_unknown_key_fails_naming_it(tmp_path: Path) -> None:
    out = _rsi("run", "model=tiny", "loop.iterationz=2", f"run.dir={tmp_path}")
    assert out.returncode != 0
    assert "iterationz" in out.stderr
    assert "Started a local Ray instance" not in out.stdout + out.stderr


@pytest.mark.unit
def test_unknown_group_option_fails(tmp_path: Path) -> None:
    out = _rsi("run", "model=nosuchmodel", f"run.dir={tmp_path}")
    assert out.returncode != 0 and "nosuchmodel" in out.stderr


@pytest.mark.unit
def test_missing_model_path_fails_before_ray(tmp_path: Path) -> None:
    out = _rsi("run", "model=hf", f"model.path={tmp_path}/absent", f"run.dir={tmp_path}/r")
    assert out.returncode == 2
    assert "model.path" in out.stderr and f"{tmp_path}/absent" in out.stderr
    assert "Ray" not in out.stdout + out.stderr


@pytest.mark.unit
@pytest.mark.parametrize("mutate,key", [
    (lambda c: setattr(c.loop, "iterations", 0), "loop.iterations"),
    (lambda c: setattr(c.backend, "name", "tgi"), "backend.name"),
    (lambda c: setattr(c.tasks["programming"], "candidates", 1), "tasks.programming.candidates"),
    (lambda c: c.tasks.update(nosuchfamily=FamilyConfig(seeds=["x"])), "tasks.nosuchfamily"),
    (lambda c: setattr(c.judging, "rankings_per_set", 1), "judging.rankings_per_set"),
    (lambda c: setattr(c.train, "deepspeed", "zero9"), "train.deepspeed"),
    (lambda c: setattr(c.tasks["programming"], "seeds", []), "tasks.programming.seeds"),
])
def test_validate_names_the_key(mutate, key: str) -> None:
    cfg = RsiConfig(tasks={"programming": ProgrammingConfig(seeds=["parsing"])})
    mutate(cfg)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


@pytest.mark.ray
def test_unloadable_models_fail_preflight(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="model.path"):
        check_model(str(tmp_path), "hf")
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text((tiny_model / "config.json").read_text())
    with pytest.raises(ConfigError, match="no weights"):
        check_model(str(weightless), "hf")
    cfg = RsiConfig(tasks={"programming": ProgrammingConfig(seeds=["parsing"])})
    cfg.model.name, cfg.model.path, cfg.backend.name = "tiny", str(tiny_model), "vllm"
    assert preflight(cfg) == str(tiny_model)


@pytest.mark.unit
def test_help_lists_commands() -> None:
    out = _rsi("--help")
    assert out.returncode == 0 and "run" in out.stdout and "eval humaneval" in out.stdout
