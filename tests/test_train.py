"""DPO training on the tiny model: corpus checks, weighted sampling, and real Ray Train runs (plain and ZeRO-2)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import datasets  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from rsi.train import TrainConfig, load_preferences, train_dpo  # noqa: E402
from rsi.train.data import prepare_preferences, table_to_dataset  # noqa: E402

N_PAIRS = 12


def _pairs(n: int = N_PAIRS) -> list[dict]:
    """Rows shaped like the corpus' preferences: TRL conversational columns plus the corpus extras."""
    rows = []
    for i in range(n):
        rows.append({
            "id": f"pair-{i:03d}",
            "prompt": [{"role": "system", "content": "Answer with code."},
                       {"role": "user", "content": f"Write solve() that sums the even numbers, case {i}."}],
            "chosen": [{"role": "assistant",
                        "content": "def solve(nums):\n    return sum(x for x in nums if x % 2 == 0)\n"}],
            "rejected": [{"role": "assistant", "content": f"The quick brown fox {i}."}],
            "margin": 0.5 + i / n,
            "level": 1 + i % 2,
            "weight": 1.0 + i % 3,
            "source_judgment_ids": [f"j{i}", f"j{i + 1}"],
        })
    return rows


def _write(folder: Path, rows: list[dict], parts: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, math.ceil(len(rows) / parts))
    for k in range(0, max(len(rows), 1), step):
        pq.write_table(pa.Table.from_pylist(rows[k:k + step]), folder / f"part-{k:05d}.parquet")
    return folder


# `tiny_model` and `ray_local` are the session's, from conftest.py: one build and one Ray for the whole run.
@pytest.fixture(scope="module")
def preferences(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("prefs") / "preferences", _pairs())


# -- corpus loading and checks (no Ray) ------------------------------------------------------------------

@pytest.mark.unit
def test_loader_is_load_dataset(preferences: Path) -> None:
    files = sorted(str(p) for p in preferences.glob("*.parquet"))
    expected = datasets.load_dataset("parquet", data_files=files, split="train")
    got = load_preferences(preferences)
    assert got.features == expected.features
    assert got.to_list() == expected.to_list()
    assert len(got) == N_PAIRS


@pytest.mark.unit
def test_prepare_keeps_dpo_columns_and_weight(preferences: Path) -> None:
    table, weighted = prepare_preferences(load_preferences(preferences), "weight")
    assert weighted and table.column_names == ["prompt", "chosen", "rejected", "weight"]
    assert table_to_dataset(table).to_list()[0]["prompt"][1]["role"] == "user"
    table, weighted = prepare_preferences(load_preferences(preferences), None)
    assert not weighted and table.column_names == ["prompt", "chosen", "rejected"]


@pytest.mark.unit
def test_capped_runs_draw_their_pairs_up_front() -> None:
    """With max_steps taking fewer pairs than the corpus holds, only those are kept (so the reference pass
    scores only them): by weight with replacement for a weighted corpus, never a zero-weight pair; a random
    subset otherwise; the same draw for the same seed."""
    from rsi.train.data import WEIGHT_COLUMN, draw_pairs, table_to_dataset

    rows = [{**r, "weight": 0.0 if i % 2 else 1.0} for i, r in enumerate(_pairs(16))]
    weighted = table_to_dataset(prepare_preferences(datasets.Dataset.from_list(rows), "weight")[0])
    drawn = draw_pairs(weighted, 12, seed=0)
    assert len(drawn) == 12 and WEIGHT_COLUMN not in drawn.column_names
    kept = {r["prompt"][1]["content"] for i, r in enumerate(rows) if i % 2 == 0}
    assert {r["prompt"][1]["content"] for r in drawn} <= kept
    assert drawn["prompt"] == draw_pairs(weighted, 12, seed=0)["prompt"]
    plain = table_to_dataset(prepare_preferences(datasets.Dataset.from_list(_pairs(16)), None)[0])
    subset = draw_pairs(plain, 5, seed=1)
    assert len(subset) == 5 and len({r["prompt"][1]["content"] for r in subset}) == 5
    assert draw_pairs(plain, 16, seed=1) is plain


@pytest.mark.ray
def test_empty_and_malformed_corpora_fail_before_training(tmp_path: Path, tiny_model: Path) -> None:
    cfg = TrainConfig()
    with pytest.raises(ValueError, match="not found"):
        train_dpo(str(tmp_path / "nothing-here"), str(tiny_model), str(tmp_path / "o1"), cfg)
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(ValueError, match="no Parquet files"):
        train_dpo(str(tmp_path / "empty-dir"), str(tiny_model), str(tmp_path / "o2"), cfg)
    schema_only = tmp_path / "zero-rows"
    schema_only.mkdir()
    pq.write_table(pa.Table.from_pylist(_pairs(1)).slice(0, 0), schema_only / "part-0.parquet")
    with pytest.raises(ValueError, match="empty"):
        train_dpo(str(schema_only), str(tiny_model), str(tmp_path / "o3"), cfg)
    no_rejected = [{k: v for k, v in r.items() if k != "rejected"} for r in _pairs(2)]
    with pytest.raises(ValueError, match="rejected"):
        train_dpo(str(_write(tmp_path / "missing", no_rejected)), str(tiny_model), str(tmp_path / "o4"), cfg)
    negative = [{**r, "weight": -1.0} for r in _pairs(2)]
    with pytest.raises(ValueError, match="weight"):
        train_dpo(str(_write(tmp_path / "neg", negative)), str(tiny_model), str(tmp_path / "o5"), cfg)
    with pytest.raises(ValueError, match="deepspeed"):
        train_dpo(str(_write(tmp_path / "ok", _pairs(2))), str(tiny_model), str(tmp_path / "o6"),
                  TrainConfig(deepspeed="zero9"))


@pytest.mark.ray
def test_weighted_sampler_draws_by_weight(tiny_model: Path, tmp_path: Path) -> None:
    """Zero-weight pairs are never drawn; heavier pairs are drawn more."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    from rsi.train.weighted import WeightedDPOTrainer
    from rsi.train.worker import dpo_config_kwargs

    rows = [{**r, "weight": 0.0 if i % 2 else 1.0 + (i == 0) * 9.0} for i, r in enumerate(_pairs())]
    table, _ = prepare_preferences(datasets.Dataset.from_list(rows), "weight")
    args = DPOConfig(**dpo_config_kwargs(TrainConfig(), str(tmp_path / "t")))
    trainer = WeightedDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                                 train_dataset=table_to_dataset(table),
                                 processing_class=AutoTokenizer.from_pretrained(tiny_model))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, torch.utils.data.WeightedRandomSampler)
    draws = [i for _ in range(50) for i in sampler]
    assert draws and all(i % 2 == 0 for i in draws)
    counts = {i: draws.count(i) for i in set(draws)}
    assert counts[0] > 3 * max(c for i, c in counts.items() if i != 0)


# -- real Ray Train runs --------------------------------------------------------------------------------

def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["none", "zero2"])
def test_train_dpo_moves_weights_and_saves_loadable_model(mode: str, tiny_model: Path, preferences: Path,
                                                           tmp_path: Path, ray_local) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / f"policy-{mode}"
    cfg = TrainConfig(deepspeed=mode, max_steps=4, learning_rate=1e-4, per_device_batch_size=2, max_length=256)
    # The folder path, or exactly what `datasets.load_dataset("parquet")` returns for it.
    source = (str(preferences) if mode == "none" else
              datasets.load_dataset("parquet", data_files=sorted(str(p) for p in preferences.glob("*.parquet")),
                                    split="train"))
    started = time.monotonic()
    result = train_dpo(source, str(tiny_model), str(out), cfg)
    wall = time.monotonic() - started

    assert Path(result.checkpoint) == out.resolve()
    assert result.steps == 4
    assert result.loss is not None and math.isfinite(result.loss)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"):
        assert math.isfinite(result.metrics[key]), key
    assert result.metrics["weighted_sampling"] is True
    # The run's wall time holds the trainer's own, and both are this call's, not a default or another clock's.
    train_seconds = result.metrics["train_seconds"]
    assert 0 < train_seconds < result.seconds <= wall
    assert result.metrics["seconds_per_step"] == pytest.approx(train_seconds / result.steps)
    # One worker on CPU: all of this node's cores, and the process started with that OpenMP count (Ray's default
    # of 1, its CPU request, left matrix products slower in Ray Train's loop thread).
    assert result.metrics["decided/threads"] == os.cpu_count()
    assert result.metrics["decided/omp_num_threads"] == str(os.cpu_count())

    trained, base = _weights(out), _weights(tiny_model)
    assert set(trained) == set(base), "tied embeddings must not come back as a separate lm_head"
    assert any(not torch.equal(trained[k], base[k]) for k in base), "training left the weights unchanged"
    assert all(t.dtype == torch.float32 for t in trained.values())

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    tok, base_tok = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tiny_model)
    messages = [{"role": "user", "content": "hi"}]
    assert tok.chat_template and tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) \
        == base_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        logits = model(**tok("def solve(nums):", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()

    with pytest.raises(FileExistsError):
        train_dpo(str(preferences), str(tiny_model), str(out), cfg)


@pytest.mark.unit
def test_cpu_workers_start_with_the_trainers_thread_count() -> None:
    """A CPU worker's process starts with OpenMP at the trainer's thread count (Ray would give it 1, its CPU
    request) and at normal priority; GPU workers keep Ray's thread default."""
    from rsi.train.dpo import worker_env

    cpu = worker_env(TrainConfig(threads=3))
    assert (cpu["OMP_NUM_THREADS"], cpu["MKL_NUM_THREADS"], cpu["RAY_worker_niceness"]) == ("3", "3", "0")
    assert worker_env(TrainConfig())["OMP_NUM_THREADS"] == str(os.cpu_count())
    assert "OMP_NUM_THREADS" not in worker_env(TrainConfig(use_gpu=True))


@pytest.mark.unit
def test_gradient_checkpointing_where_it_works() -> None:
    """`always` turns it on, except under DeepSpeed on CPU, where it fails; `auto` leaves it to the memory
    estimate once the corpus is tokenized (off in the DPOConfig); `threads` < 0 is refused before Ray starts."""
    from rsi.train.worker import dpo_config_kwargs

    plain = dpo_config_kwargs(TrainConfig(gradient_checkpointing="always"), "/tmp/x")
    zero2 = dpo_config_kwargs(TrainConfig(deepspeed="zero2", gradient_checkpointing="always"), "/tmp/x")
    gpu = dpo_config_kwargs(TrainConfig(deepspeed="zero2", use_gpu=True, gradient_checkpointing="always"), "/tmp/x")
    assert plain["gradient_checkpointing"] and not zero2["gradient_checkpointing"] and gpu["gradient_checkpointing"]
    for mode in ("never", "auto"):
        assert not dpo_config_kwargs(TrainConfig(gradient_checkpointing=mode), "/tmp/x")["gradient_checkpointing"]
    with pytest.raises(ValueError, match="threads=-1"):
        TrainConfig(threads=-1).validate()


# -- label noise (no Ray) --------------------------------------------------------------------------------

def _swapped(rows: list[dict], noise: float, seed: int) -> set[str]:
    """The ids of the pairs `add_label_noise` swaps, read back from the table the trainer would get."""
    from rsi.train.data import add_label_noise, pair_keys

    dataset = datasets.Dataset.from_list(rows)
    table, count = add_label_noise(prepare_preferences(dataset, "weight")[0], pair_keys(dataset), noise, seed)
    out = table_to_dataset(table).to_list()
    swapped = {r["id"] for r, t in zip(rows, out) if t["chosen"] == r["rejected"] and t["rejected"] == r["chosen"]}
    assert all(t["chosen"] == r["chosen"] for r, t in zip(rows, out) if r["id"] not in swapped)
    assert [t["prompt"] for t in out] == [r["prompt"] for r in rows] and count == len(swapped)
    return swapped


@pytest.mark.unit
def test_label_noise_of_one_swaps_every_pair_and_zero_none() -> None:
    rows = _pairs(40)
    assert _swapped(rows, 1.0, seed=0) == {r["id"] for r in rows}
    assert _swapped(rows, 0.0, seed=0) == set()


@pytest.mark.unit
def test_the_same_seed_swaps_the_same_pairs_in_any_order() -> None:
    import random

    rows = _pairs(200)
    first = _swapped(rows, 0.3, seed=7)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert _swapped(shuffled, 0.3, seed=7) == first
    assert _swapped(shuffled[:120], 0.3, seed=7) == first & {r["id"] for r in shuffled[:120]}  # a subset too
    other = _swapped(rows, 0.3, seed=8)
    assert other != first and 0.15 < len(other) / len(rows) < 0.45
    assert first <= _swapped(rows, 0.6, seed=7)  # a larger share swaps every pair a smaller one did


@pytest.mark.unit
def test_label_noise_of_one_half_swaps_about_half() -> None:
    rows = _pairs(2000)
    share = len(_swapped(rows, 0.5, seed=3)) / len(rows)
    assert 0.46 < share < 0.54  # 4 standard deviations of Binomial(2000, 0.5)


@pytest.mark.unit
def test_pairs_without_ids_are_keyed_by_their_content() -> None:
    from rsi.train.data import pair_keys

    rows = [{k: v for k, v in r.items() if k != "id"} for r in _pairs(30)]
    keys = pair_keys(datasets.Dataset.from_list(rows))
    assert len(set(keys)) == 30 and keys[::-1] == pair_keys(datasets.Dataset.from_list(rows[::-1]))


@pytest.mark.unit
@pytest.mark.parametrize("noise", [-0.1, 1.5, float("nan")])
def test_label_noise_outside_zero_to_one_fails_naming_the_key(noise: float) -> None:
    with pytest.raises(ValueError, match=r"^train\.label_noise: must be within \[0, 1\]"):
        TrainConfig(label_noise=noise).validate()
    TrainConfig(label_noise=1.0).validate()


@pytest.mark.unit
def test_train_dpo_hands_the_workers_the_swapped_pairs(preferences: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What train_dpo ships to the Ray Train workers carries the noise, and its result says how many pairs
    swapped (the trainer itself is a stand-in: nothing starts Ray)."""
    import types

    import pyarrow.fs
    import ray.train.torch

    shipped = {}

    class Trainer:
        def __init__(self, loop, train_loop_config, **kwargs) -> None:  # noqa: ANN001, ANN003
            shipped.update(train_loop_config)

        def fit(self) -> types.SimpleNamespace:
            folder = tmp_path / "ckpt"
            folder.mkdir()
            (folder / "config.json").write_text("{}")
            checkpoint = types.SimpleNamespace(filesystem=pyarrow.fs.LocalFileSystem(), path=str(folder))
            return types.SimpleNamespace(error=None, checkpoint=checkpoint, metrics={"steps": 1, "curve": []})

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    rows = load_preferences(preferences).to_list()
    result = train_dpo(str(preferences), "unused", str(tmp_path / "out"), TrainConfig(label_noise=1.0, seed=3))
    got = table_to_dataset(shipped["table"]).to_list()
    assert [t["chosen"] for t in got] == [r["rejected"] for r in rows]
    assert [t["rejected"] for t in got] == [r["chosen"] for r in rows]
    assert result.metrics["label_noise_swapped"] == N_PAIRS
    result = train_dpo(str(preferences), "unused", str(tmp_path / "out2"), TrainConfig())
    assert result.metrics["label_noise_swapped"] == 0


@pytest.mark.ray
def test_a_full_disk_while_dpo_saves_is_one_oserror_naming_the_checkpoint(tiny_model: Path, preferences: Path,
                                                                            tmp_path: Path, ray_local) -> None:
    """The checkpoint's disk fills up inside a Ray Train worker: the caller gets the same ENOSPC OSError, naming
    the checkpoint folder, that a full disk gives the corpus pass (rsi run prints it as one line), not Ray
    Train's wrapped worker error."""
    import errno

    from test_disk_full import small_disk

    with small_disk(tmp_path / "disk", "256k") as disk:
        out = disk / "checkpoints" / "v1"
        with pytest.raises(OSError) as raised:
            train_dpo(str(preferences), str(tiny_model), str(out), TrainConfig(max_steps=1, max_length=128))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out)


@pytest.mark.unit
def test_out_of_space_is_found_under_any_wrapping() -> None:
    from rsi.train.dpo import _out_of_space

    def wrapped(inner: BaseException) -> RuntimeError:
        try:
            raise RuntimeError("worker group failed") from inner
        except RuntimeError as e:
            return e

    assert _out_of_space(wrapped(OSError(28, "No space left on device", "/x")))
    assert _out_of_space(RuntimeError("Training worker 0 failed: OSError: [Errno 28] No space left on device"))
    assert not _out_of_space(wrapped(OSError(13, "Permission denied")))
