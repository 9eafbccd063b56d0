"""A non-editable install runs `rsi run`: the wheel built from the tracked files carries the Hydra presets
(rsi/conf/), and `rsi run model=tiny …` from that install, outside any checkout, completes an iteration.

The clean venv reuses this venv's dependencies through a .pth file (tests/overlay_venv.py) instead of
installing torch, vLLM and Ray from PyPI, which takes many minutes and the network; rsi itself is installed
into it from the wheel, non-editable, and the test checks that `import rsi` resolves there."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from overlay_venv import make_overlay_venv
from tiny_run import assert_iteration_written, tiny_run

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path) -> Path:
    """The wheel of the tracked (and new, unignored) files only, built offline from a copy of them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    src = out / "src"
    src.mkdir(parents=True)
    archive = out / "src.tar"
    with tarfile.open(archive, "w") as tar:
        for name in files:
            if (ROOT / name).is_file():
                tar.add(ROOT / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(out / "dist"), str(src)], check=True, capture_output=True, text=True)
    [wheel] = (out / "dist").glob("rsi-*.whl")
    return wheel


@pytest.mark.e2e
@pytest.mark.slow
def test_installed_wheel_runs_rsi(tmp_path: Path, tiny_model: Path) -> None:
    wheel = build_wheel(tmp_path / "build")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rsi/conf/config.yaml" in names and "rsi/conf/model/tiny.yaml" in names

    py = make_overlay_venv(tmp_path / "venv")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    away = tmp_path / "elsewhere"  # no checkout in sight: conf/ must come from the install
    away.mkdir()
    where = subprocess.run([str(py), "-c", "import rsi.cli; print(rsi.cli.CONF_DIR)"], cwd=away, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert where == str(tmp_path / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
                        / "site-packages" / "rsi" / "conf")

    rsi = tmp_path / "venv" / "bin" / "rsi"
    run_dir = tmp_path / "run"
    out = subprocess.run([str(rsi), "run", *tiny_run(tiny_model), f"run.dir={run_dir}"], cwd=away,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    assert_iteration_written(run_dir)
    assert "rsi · iterations" in out.stdout
    # the console: chain counts, and no Ray/vLLM chatter (it is in run.dir/logs/, with a link to Ray's logs)
    assert "corpus pass · chains 2/2 · generations" in out.stdout and "DPO step 1/1 · loss" in out.stdout
    logs = "".join(p.read_text() for p in (run_dir / "logs").glob("*.log"))
    # a vLLM warning, and torch's inductor lines (logged under its module name or its file path)
    for noise in ("vllm.triton_utils", "_inductor"):
        assert noise in logs and noise not in out.stdout + out.stderr
    assert (run_dir / "logs" / "ray").is_dir()
