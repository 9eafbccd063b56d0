"""The disk fills up mid-write: a small tmpfs holds the corpus (and, end to end, the whole run.dir). The error names
the path it could not write, no truncated or uncommitted Parquet part is ever visible to a reader, and after space
is freed a resumed writer (`run.resume=true` for `rsi run`) finishes with exactly the ids of a clean run.

Mounting a tmpfs needs root (or CAP_SYS_ADMIN); where the mount is refused the tests skip and say why."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rsi.corpus.ids import content_id
from rsi.corpus.stream import COMMITS, CorpusWriter, manifest_complete, read_manifest, read_table

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("performances", "judgments", "preferences")
CHAINS = 40


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    """Free space: the same filesystem, larger (what deleting other files on a full disk amounts to)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def fill(path: Path) -> Path:
    """Take every free byte of the filesystem holding `path`; the filler is returned so it can be deleted."""
    filler = path / "filler"
    # Unbuffered: a buffered file keeps the bytes a full disk refused and raises again when closed.
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def chain_rows(k: int) -> dict[str, list[dict]]:
    """One chain's rows, about 12 kB of incompressible text, the same for the same k."""
    rng = random.Random(k)
    chain = f"c{k:04d}"
    msg = [{"role": "user", "content": f"task {k}"}]
    perf = [{"id": content_id("performance", chain=chain, i=i), "iteration": 0, "chain_id": chain, "prompt": msg,
             "completion": rng.randbytes(2000).hex(), "parse_status": "ok"} for i in range(3)]
    judg = [{"id": content_id("judgment", chain=chain), "iteration": 0, "level": 1, "chain_id": chain,
             "candidate_ids": [p["id"] for p in perf], "ranking": [0, 1, 2], "parse_status": "ok",
             "raw_text": "{}", "prompt": msg}]
    pref = [{"id": content_id("preference", chain=chain), "iteration": 0, "prompt": msg,
             "chosen": [{"role": "assistant", "content": perf[0]["completion"]}],
             "rejected": [{"role": "assistant", "content": perf[1]["completion"]}]}]
    return {"performances": perf, "judgments": judg, "preferences": pref}


def write_corpus(out: Path, resume: bool) -> CorpusWriter:
    writer = CorpusWriter(out, resume=resume, max_chains=2)
    done = writer.done_chain_ids()
    for k in range(CHAINS):
        if f"c{k:04d}" not in done:
            writer.add_chain(f"c{k:04d}", chain_rows(k))
    writer.close(iteration=0)
    return writer


def ids(iter_dir: Path) -> dict[str, list[str]]:
    return {t: read_table(iter_dir, t, ["id"]).column("id").to_pylist() for t in TABLES}


def assert_only_whole_parts_visible(iter_dir: Path) -> None:
    """What a reader sees: every visible part is named by a commit record and reads back whole."""
    committed = {(t, f"part-{json.loads(p.read_text())['part']:05d}.parquet")
                 for p in (iter_dir / COMMITS).glob("part-*.json")
                 for t in json.loads(p.read_text())["tables"]}
    for t in TABLES:
        for f in (iter_dir / t).glob("[!._]*") if (iter_dir / t).is_dir() else []:
            assert (t, f.name) in committed, f"{f} is visible but was never committed"
            pq.read_table(f)  # a truncated file fails here: its footer is missing


@pytest.mark.unit
def test_writer_on_a_full_disk_names_the_path_and_resumes(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    write_corpus(clean, resume=False)
    want = ids(clean)

    with small_disk(tmp_path / "disk", "160k") as disk:  # about a third of the corpus fits
        out = disk / "corpus" / "iter_000"
        with pytest.raises(OSError) as failure:
            write_corpus(out, resume=False)
        assert failure.value.errno == errno.ENOSPC
        assert failure.value.filename and str(out) in failure.value.filename, failure.value
        assert str(out) in str(failure.value)  # the message a user reads names the path too
        assert not manifest_complete(out)
        assert_only_whole_parts_visible(out)
        before = ids(out)
        assert 0 < len(before["performances"]) < len(want["performances"])

        grow(disk, "4m")
        resumed = write_corpus(out, resume=True)
        assert_only_whole_parts_visible(out)
        got = ids(out)
        for t in TABLES:
            assert sorted(got[t]) == sorted(want[t]), t
            assert not [i for i, n in Counter(got[t]).items() if n > 1], f"{t}: a row written twice"
        assert read_manifest(out)["rows"] == read_manifest(clean)["rows"] == resumed.rows()


def _run(tiny_model: Path, run_dir: Path, resume: bool) -> subprocess.Popen:
    overrides = [
        "model=tiny", f"model.path={tiny_model}", "backend=hf", "backend.num_cpus=0", "cluster.num_cpus=4",
        f"run.dir={run_dir}", "run.seed=11", f"run.resume={str(resume).lower()}", "loop.iterations=1",
        "tasks=[open_ended]", "tasks.open_ended.seeds=[queues,dates,csv files,logs,graphs,matrices]",
        "tasks.open_ended.candidates=2", "tasks.open_ended.max_tokens=24",
        "judging.max_tokens=40", "judging.rationale_chars=16", "train.max_steps=1",
        "loop.chains_in_flight=1", "run.commit_chains=1", "evals.enabled=false", "gate.enabled=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "rsi.cli", "run", *overrides], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.e2e
@pytest.mark.slow
def test_rsi_run_on_a_full_disk_stops_cleanly_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    """`rsi run` with run.dir on a tmpfs that fills up during the corpus pass (after the first commit): a one-line
    error naming the path, no traceback, only whole parts visible; after space is freed, run.resume=true finishes
    with the ids of a clean run of the same seed."""
    reference = tmp_path / "reference"
    proc = _run(tiny_model, reference, resume=False)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    want = ids(reference / "corpus" / "iter_000")

    with small_disk(tmp_path / "disk", "64m") as disk:
        run_dir = disk / "run"
        corpus = run_dir / "corpus" / "iter_000"
        proc = _run(tiny_model, run_dir, resume=False)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None and not list((corpus / COMMITS).glob("part-*")):
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the disk could fill"
        filler = fill(disk)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 1, out[-4000:]
        assert "Traceback" not in out, out[-4000:]
        message = [line for line in out.splitlines() if line.startswith("rsi: no space left")]
        assert message and str(run_dir) in message[0], out[-4000:]
        assert not manifest_complete(corpus)
        assert_only_whole_parts_visible(corpus)

        filler.unlink()
        proc = _run(tiny_model, run_dir, resume=True)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-4000:]
        assert_only_whole_parts_visible(corpus)
        got = ids(corpus)
    for t in ("performances", "judgments"):
        assert sorted(got[t]) == sorted(want[t]), f"{t}: seeded sampling, yet different ids after the resume"
    for t in TABLES:
        assert not [i for i, n in Counter(got[t]).items() if n > 1], f"{t}: a row written twice"
