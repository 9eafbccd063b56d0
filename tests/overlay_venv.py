"""A fresh venv that reuses this venv's installed dependencies through a .pth file: a distinct interpreter at
its own path (and its own site-packages for what is installed into it) without reinstalling torch, vLLM, Ray
and the rest from PyPI, which takes many minutes and needs the network."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path


def make_overlay_venv(where: Path) -> Path:
    """Returns the new venv's python. Only the dependency folders are added to its path: .pth files inside them
    (such as this checkout's editable install of rsi) are not processed, so `import rsi` finds only what is
    installed into the new venv itself."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    py = where / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    base = dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()])
    (Path(purelib) / "_base_site.pth").write_text("\n".join(base) + "\n")
    return py
