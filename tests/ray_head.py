"""A real Ray head for tests of the cluster path: `ray start --head` on 127.0.0.1 with free ports, token
authentication and a temp dir of its own, stopped again without touching any other Ray on the machine.

`ray stop` ends every Ray process of the machine; this head is stopped by signalling its own `ray start --block`
process (which shuts its node down) and then ending whatever process still names its temp dir.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent  # the venv's ray and rsi scripts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_ports() -> list[str]:
    """Free ports for a node's agents: their defaults are fixed numbers, which another Ray on this machine (the
    test session's own) already holds, and a node whose job agent cannot bind never runs a submitted job."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


@dataclass
class RayHead:
    """`with RayHead(num_cpus=4) as head:` then `head.ray("job", "submit", "--address", head.dashboard, ...)`."""

    num_cpus: int = 4
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the head and its clients
    temp_dir: Path = field(init=False)
    dashboard: str = field(init=False)
    _proc: subprocess.Popen | None = field(init=False, default=None)
    _nodes: list[subprocess.Popen] = field(init=False, default_factory=list)

    def __enter__(self) -> RayHead:
        # Short: Ray's socket paths under the temp dir must fit in 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rsi-ray-", dir="/tmp"))
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # Ray 2.60 authenticates with a token when one exists; this head's own, so ~/.ray is left alone. A client
        # needs the same two variables (RAY_AUTH_MODE=token and the token), or it fails with "no authentication
        # token was found".
        self.client_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                           **self.env}
        self.client_env.pop("RAY_ADDRESS", None)
        gcs, dash, client = free_port(), free_port(), free_port()
        self.gcs = f"127.0.0.1:{gcs}"
        self.dashboard = f"http://127.0.0.1:{dash}"
        self.log = open(self.temp_dir / "ray-start.log", "w")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
             f"--num-cpus={self.num_cpus}", f"--temp-dir={self.temp_dir}", "--include-dashboard=true",
             *agent_ports()],
            env=self.client_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, num_cpus: int = 1, wrapper: tuple[str, ...] = ()) -> None:
        """A second Ray node of this cluster on this machine, started through `wrapper` (e.g. bwrap with a
        tmpfs over a path, so that node does not see what the others see there); stopped with the head."""
        log = open(self.temp_dir / "ray-node.log", "w")  # noqa: SIM115 - lives as long as the node
        self._nodes.append(subprocess.Popen(
            [*wrapper, str(BIN / "ray"), "start", "--block", f"--address={self.gcs}", "--node-ip-address=127.0.0.1",
             f"--num-cpus={num_cpus}", f"--temp-dir={self.temp_dir}", *agent_ports()],
            env=self.client_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 120
        want = 1 + len(self._nodes)
        probe = "import ray; ray.init(); print(len([n for n in ray.nodes() if n['Alive']]))"
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", probe], env={**self.client_env, "RAY_ADDRESS": self.gcs},
                                 capture_output=True, text=True, timeout=120)
            if out.stdout.strip() == str(want):
                return
            time.sleep(2)
        raise TimeoutError(f"the extra Ray node did not join:\n{(self.temp_dir / 'ray-node.log').read_text()}")

    def _wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self._proc.returncode}:\n{self.log_text()}")
            if self.ray("job", "list", "--address", self.dashboard, timeout=60).returncode == 0:
                return
            time.sleep(2)
        raise TimeoutError(f"the Ray head did not answer within {timeout:.0f} s:\n{self.log_text()}")

    def submit(self, *args: str, cwd: Path | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
        """`ray job submit --address <head> ARGS`, tried again while the head's job agent is still starting:
        the dashboard answers before the agent that runs jobs is up, and Ray says to try again later."""
        deadline = time.monotonic() + 180
        while True:
            done = self.ray("job", "submit", "--address", self.dashboard, *args, cwd=cwd, timeout=timeout)
            if "No available agent to submit job" not in done.stdout + done.stderr or time.monotonic() > deadline:
                return done
            time.sleep(3)

    def log_text(self) -> str:
        return (self.temp_dir / "ray-start.log").read_text()[-4000:]

    def ray(self, *args: str, timeout: float = 900, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], env=env or self.client_env, cwd=cwd, text=True,
                              capture_output=True, timeout=timeout)

    def own_processes(self) -> list[psutil.Process]:
        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.temp_dir) in arg for arg in proc.info["cmdline"] or ()):
                    mine.append(proc)
            except psutil.Error:
                pass
        return mine

    def stop(self) -> None:
        """The scoped `ray stop`: this head's node shuts down, then any straggler naming its temp dir goes."""
        for proc in [*self._nodes, self._proc]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        left = self.own_processes()
        for proc in left:
            proc.terminate()
        _, alive = psutil.wait_procs(left, timeout=15)
        for proc in alive:
            proc.kill()
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
