"""Build hook: the Hydra presets under conf/ ship inside the package as rsi/conf/, so an installed rsi (a wheel,
an image) composes its config without a checkout. Everything else is declared in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "rsi" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(__file__).resolve().parent / "conf", target)


setup(cmdclass={"build_py": BuildPyWithConf})
