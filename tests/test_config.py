"""The config: the dataclasses hold every default, conf/ only what presets change, and a bad value fails at
composition or preflight with its key in the message. No Ray, no model."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_rsi
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from rsi.cli import CONF_DIR
from rsi.config import (
    BackendConfig,
    ConfigError,
    FamilyConfig,
    ModelConfig,
    ModelName,
    RsiConfig,
    register_schema,
    to_dataclass,
    validate,
)
from rsi.sandbox.config import Launcher, SandboxConfig
from rsi.tasks import BUILTIN, get_family, register_family
from rsi.tasks.family import Family, Generate, Rank
from rsi.tasks.parsing import Parsed
from rsi.tasks.programming import ProgrammingConfig
from rsi.train.config import TrainConfig

pytestmark = pytest.mark.unit


@contextmanager
def _hydra(conf: Path = CONF_DIR) -> Iterator[None]:
    register_schema()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        yield


def _compose(*overrides: str, conf: Path = CONF_DIR) -> RsiConfig:
    with _hydra(conf):
        return to_dataclass(compose(config_name="config", overrides=list(overrides)))


def _yaml_keys(path: Path) -> dict[str, Any]:
    node = OmegaConf.to_container(OmegaConf.load(path)) or {}
    node.pop("defaults", None)
    return node


def _family(name: str, count: str = "candidates") -> Family:
    return register_family(Family(name=name, ops=(
        Generate("say", "say.txt", count, lambda text, parent: Parsed("ok", text), render=lambda item: "",
                 variables=lambda seed, parent: {}),
        Rank("rank", of="say", template="say.txt"))))


def test_default_composition_is_the_dataclass_defaults_plus_the_presets() -> None:
    seeds = _yaml_keys(CONF_DIR / "tasks" / "programming.yaml")["seeds"]
    assert _compose() == RsiConfig(tasks={"programming": ProgrammingConfig(seeds=seeds)})
    tiny = _compose("model=tiny", "backend=hf")
    assert tiny.model == ModelConfig(name=ModelName["tiny"], max_model_len=4096)
    assert tiny.backend == BackendConfig(name="hf", kv_cache_gb=0.0)


@pytest.mark.parametrize("group,section", [("model", "model"), ("backend", "backend"), ("train", "train")])
def test_every_preset_composes_to_defaults_plus_its_keys(group: str, section: str) -> None:
    default = getattr(RsiConfig(), section)
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        keys = _yaml_keys(path)
        extra = ["model.path=some/model"] if keys.get("path") == "???" else []
        got = getattr(_compose(f"{group}={path.stem}", *extra), section)
        expected = dataclasses.replace(default, **{k: v for k, v in keys.items() if v != "???"},
                                       **({"path": "some/model"} if extra else {}))
        assert got == expected, path.name
        for key in keys:  # a preset holds only what it changes
            assert keys[key] == "???" or keys[key] != getattr(default, key), f"{path.name}: {key} is the default"


@pytest.mark.parametrize("name", BUILTIN)
def test_family_yaml_holds_only_keys_of_its_config_type(name: str) -> None:
    kind = get_family(name).config
    keys = _yaml_keys(CONF_DIR / "tasks" / f"{name}.yaml")
    assert set(keys) <= {f.name for f in dataclasses.fields(kind)}
    default = kind()
    assert all(getattr(default, k) != v for k, v in keys.items()), "a family YAML restates a default"
    fam = _compose(f"tasks=[{name}]").tasks[name]
    assert type(fam) is kind and fam == dataclasses.replace(default, **keys)
    validate(RsiConfig(tasks={name: fam}))


def test_a_key_the_yaml_leaves_out_can_be_overridden() -> None:
    cfg = _compose("tasks=[programming,python_output]", "tasks.programming.keep=2",
                   "tasks.python_output.predictions=5")
    assert cfg.tasks["programming"].keep == 2 and cfg.tasks["python_output"].predictions == 5


@pytest.mark.parametrize("override", ["judging.mode=x", "judging.aggregator=x", "train.loss_type=x",
                                      "train.deepspeed=zero9", "model.dtype=x", "model.name=x", "backend.name=x",
                                      "sandbox.launcher=x", "loop.iterationz=2", "tasks.programming.solutons=2"])
def test_bad_value_fails_at_composition_naming_the_key(override: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigCompositionException) as e:
        _compose(override)
    assert key in f"{e.value} {e.value.__cause__}"


def test_unknown_family_key_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.programming\.solutons"):
        _compose("+tasks.programming.solutons=2")  # `+` adds past the schema; the family's type still refuses it


def test_a_family_without_a_registered_schema_is_typed_by_family_config(tmp_path: Path) -> None:
    """A family outside the built-ins (the README's `explain`): its YAML needs no schema line."""
    _family("cfg_test_plain")
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    yaml = conf / "tasks" / "cfg_test_plain.yaml"
    yaml.write_text("# @package tasks.cfg_test_plain\nseeds: [recursion, hashing]\ncandidates: 3\n")
    cfg = _compose("tasks=[cfg_test_plain]", "tasks.cfg_test_plain.max_tokens=9", conf=conf)
    assert cfg.tasks == {"cfg_test_plain": FamilyConfig(seeds=["recursion", "hashing"], candidates=3, max_tokens=9)}
    validate(cfg)
    yaml.write_text(yaml.read_text() + "solutons: 2\n")
    with pytest.raises(ConfigCompositionException) as e:
        _compose("tasks=[cfg_test_plain]", conf=conf)
    assert "tasks.cfg_test_plain.solutons" in f"{e.value} {e.value.__cause__}"


@pytest.mark.parametrize("override,key", [
    ("train.learning_rate=0", "train.learning_rate"), ("train.max_steps=0", "train.max_steps"),
    ("train.threads=-1", "train.threads"), ("tasks.programming.keep=0", "tasks.programming.keep"),
    ("tasks.programming.candidates=1", "tasks.programming.candidates"), ("loop.iterations=0", "loop.iterations"),
    ("train.sft_weight=-1", "train.sft_weight"), ("+evals.limits.judge_accuracy=1", "evals.limits.judge_accuracy"),
    ("+evals.limits.judge_acuracy=9", "evals.limits.judge_acuracy"),
])
def test_bad_range_fails_at_validate_naming_the_key(override: str, key: str) -> None:
    cfg = _compose(override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


@pytest.mark.parametrize("section,key", [("judging", "mode"), ("train", "loss_type"), ("train", "deepspeed"),
                                         ("model", "dtype"), ("model", "name"), ("backend", "name"),
                                         ("sandbox", "launcher")])
def test_choice_set_in_code_is_checked_at_validate(section: str, key: str) -> None:
    cfg = RsiConfig(tasks={"programming": ProgrammingConfig(seeds=["a"])})
    validate(cfg)
    setattr(getattr(cfg, section), key, "x")
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: unknown 'x'"):
        validate(cfg)


def test_family_config_of_the_wrong_type_or_missing_a_count_fails() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.programming: needs a ProgrammingConfig"):
        validate(RsiConfig(tasks={"programming": FamilyConfig(seeds=["a"])}))
    _family("cfg_test_no_count", count="predictions")
    with pytest.raises(ConfigError, match=r"tasks\.cfg_test_no_count: .*\['predictions'\].*FamilyConfig"):
        validate(RsiConfig(tasks={"cfg_test_no_count": FamilyConfig(seeds=["a"])}))


def test_choices_behave_as_their_strings() -> None:
    name = ModelName["smollm2-135m"]  # a member whose value is no identifier
    assert name == "smollm2-135m" and f"{name}" == str(name) == "smollm2-135m"
    assert {"smollm2-135m": 1}[name] == 1 and pickle.loads(pickle.dumps(name)) is name
    assert TrainConfig().loss_type == "sigmoid" and str(TrainConfig().deepspeed) == "none"
    assert SandboxConfig(launcher="landlock").launcher is Launcher.landlock
    with pytest.raises(ValueError, match="sandbox.launcher"):
        SandboxConfig(launcher="docker")




def test_cli_prints_the_composed_config_and_names_a_bad_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_rsi(["run", "model=tiny", "tasks.programming.keep=2", "--cfg", "job"], capsys)
    assert code == 0, err
    job = OmegaConf.create(out)
    assert job.model.name == "tiny" and job.train.loss_type == "sigmoid" and job.tasks.programming.keep == 2
    code, out, err = run_rsi(["run", "model=tiny", "train.loss_type=sigmoidd", "--cfg", "job"], capsys)
    assert code != 0 and "train.loss_type" in err
