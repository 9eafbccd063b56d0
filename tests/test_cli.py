"""Bad input fails at start, before Ray, with the offending key or path named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_rsi

from rsi.cli import field_comments, run_help
from rsi.config import ConfigError, FamilyConfig, RsiConfig, RunConfig, validate
from rsi.preflight import check_model, preflight
from rsi.tasks.programming import ProgrammingConfig


def _rsi(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsi.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.unit
def test_unknown_key_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_rsi(["run", "model=tiny", "loop.iterationz=2", f"run.dir={tmp_path}"], capsys)
    assert code != 0
    assert "iterationz" in err
    assert "Started a local Ray instance" not in out + err


@pytest.mark.unit
def test_unknown_group_option_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_rsi(["run", "model=nosuchmodel", f"run.dir={tmp_path}"], capsys)
    assert code != 0 and "nosuchmodel" in err


@pytest.mark.unit
def test_missing_model_path_fails_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_rsi(["run", "model=hf", f"model.path={tmp_path}/absent", f"run.dir={tmp_path}/r"], capsys)
    assert code == 2
    assert "model.path" in err and f"{tmp_path}/absent" in err
    assert "Ray" not in out + err


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


def _set(cfg: RsiConfig, key: str, value: float) -> None:
    *path, last = key.split(".")
    node: object = cfg
    for part in path:
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    setattr(node, last, value)


def _number_keys() -> list[str]:
    from rsi.config import numbers

    return [k for k, _ in numbers(_full_config(), "")]


def _full_config() -> RsiConfig:
    from rsi.tasks import BUILTIN, get_family

    return RsiConfig(tasks={n: get_family(n).config(seeds=["x"]) for n in BUILTIN})


@pytest.mark.unit
@pytest.mark.parametrize("key", _number_keys())
def test_every_number_rejects_nan_infinity_and_out_of_range_values(key: str) -> None:
    """The class, not cases: each numeric key of the whole config (every family's too) refuses NaN, infinity,
    a value below its range and one above it, naming the key, before Ray starts."""
    from rsi.config import BOUNDS

    pattern = ".".join(["tasks", "*", *key.split(".")[2:]]) if key.startswith("tasks.") else key
    low, high = BOUNDS.get(pattern, (0, float("inf")))
    bad = [float("nan"), float("inf"), low - 1 if low > -1 else -1e9, high * 2 + 1 if high < float("inf") else None]
    for value in [v for v in bad if v is not None]:
        cfg = _full_config()
        _set(cfg, key, value)
        with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}: "):
            validate(cfg)


@pytest.mark.unit
def test_the_documented_dangerous_values_are_refused_at_start(tmp_path: Path) -> None:
    for override, key in [("train.learning_rate=nan", "train.learning_rate"),
                          ("judging.max_tokens=0", "judging.max_tokens"),
                          ("model.max_model_len=-1", "model.max_model_len"),
                          ("backend.kv_cache_gb=-1", "backend.kv_cache_gb"),
                          ("sandbox.limits.memory_mb=-5", "sandbox.limits.memory_mb")]:
        cfg = _full_config()
        name, value = override.split("=")
        _set(cfg, name, float(value))
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(cfg)


@pytest.mark.unit
@pytest.mark.parametrize("text,where", [("{\"a\": 1}\n{bad\n", ":2: not JSON"), (b"\xff\xfe\n", "evals.data"),
                                        ("[1, 2]\n", ":1:"), ("{\"code\": 3}\n", ":1:")])
def test_evals_data_files_are_read_whole_at_start(tmp_path: Path, text: str | bytes, where: str) -> None:
    """A bad `evals.data` file fails validation, naming the key and the line, before the pools start."""
    path = tmp_path / "items.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    cfg = _full_config()
    cfg.evals.data = {"output_prediction": str(path)}
    with pytest.raises(ConfigError, match=r"^evals\.data\.output_prediction: ") as raised:
        validate(cfg)
    assert where in str(raised.value)


@pytest.mark.unit
def test_help_explains_the_main_keys(capsys: pytest.CaptureFixture[str]) -> None:
    text = run_help()
    assert "run.dir=runs/default" in text and "corpus, checkpoints and summaries land here" in text
    assert "cluster.runtime_env=inherit (inherit|python|pip|image)" in text
    assert "log.verbose=false" in text and "sandbox.resource=null" in text
    assert field_comments(RunConfig)["commit_chains"].startswith("finished chains per committed corpus part")
    code, out, _ = run_rsi(["run", "--help"], capsys)
    assert code == 0 and out.strip() == text.strip()
    assert "Powered by Hydra" not in out


@pytest.mark.unit
def test_help_prints_each_key_with_the_comment_of_the_class_that_defines_it() -> None:
    """The help is built from the dataclasses themselves, so it cannot say what a copy of a class once said:
    every field of every section (nested ones too, sandbox.limits.*) is listed with its own class's comment."""
    from dataclasses import fields, is_dataclass

    from rsi.config import RsiConfig

    text = run_help()
    lines = text.splitlines()

    def check(prefix: str, value: object) -> int:
        comments, seen = field_comments(type(value)), 0
        for f in fields(value):  # type: ignore[arg-type]
            default = getattr(value, f.name)
            if is_dataclass(default):
                seen += check(f"{prefix}.{f.name}", default)
                continue
            [line] = [x for x in lines if x.strip().startswith(f"{prefix}.{f.name}=")]
            assert line.rstrip().endswith(comments.get(f.name, "")), (line, comments.get(f.name))
            seen += 1
        return seen

    cfg = RsiConfig()
    counted = sum(check(f.name, getattr(cfg, f.name)) for f in fields(RsiConfig) if is_dataclass(getattr(cfg, f.name)))
    assert counted > 60
    assert "sandbox.limits.memory_mb=1024" in text and "sandbox.jobs_per_sandbox=2000" in text
    assert "tasks=[programming,python_output,open_ended,code_review,negotiation]" in text
