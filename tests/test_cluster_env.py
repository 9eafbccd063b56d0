"""The cluster path: joining a running cluster (RAY_ADDRESS), the runtime_env actors get, the shared-storage
check, and a real `ray job submit` of `rsi run` to a `ray start --head` on this machine with token auth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from overlay_venv import make_overlay_venv
from tiny_run import assert_iteration_written

from rsi.cluster_env import (
    ClusterConfig,
    ClusterError,
    check_storage_uri,
    ray_init_kwargs,
    runtime_env,
    storage_problems,
)
from rsi.config import ConfigError, RsiConfig, validate

ROOT = Path(__file__).resolve().parents[1]


# ---- unit ----------------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_relative_run_dir_inside_a_ray_job_fails_naming_the_key() -> None:
    from rsi.cluster_env import ClusterError, check_job_run_dir

    job = {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}", "RAY_ADDRESS": "auto"}  # what Ray's job supervisor sets
    with pytest.raises(ClusterError, match=r"run\.dir: 'runs/a' is relative"):
        check_job_run_dir("runs/a", job)
    check_job_run_dir("/shared/runs/a", job)
    check_job_run_dir("s3://bucket/runs/a", job)
    check_job_run_dir("runs/a", {"RAY_ADDRESS": "auto"})  # a driver of its own: its cwd stays


@pytest.mark.unit
def test_ray_address_joins_without_sizes() -> None:
    """Inside a submitted job RAY_ADDRESS is set: rsi joins that cluster and passes no num_cpus (which Ray refuses
    when connecting); without it, an embedded Ray gets its size."""
    joined = ray_init_kwargs(ClusterConfig(), {"RAY_ADDRESS": "10.0.0.1:6379"})
    assert joined == {"address": "10.0.0.1:6379"}
    embedded = ray_init_kwargs(ClusterConfig(num_cpus=6), {})
    assert embedded == {"address": "local", "num_cpus": 6}  # its own Ray, whatever `ray start` left behind
    explicit = ray_init_kwargs(ClusterConfig(address="auto"), {"RAY_ADDRESS": "10.0.0.1:6379"})
    assert explicit["address"] == "auto" and "num_cpus" not in explicit


@pytest.mark.unit
def test_runtime_env_follows_config() -> None:
    assert runtime_env(ClusterConfig()) == {}  # one machine: the node's own interpreter
    env = runtime_env(ClusterConfig(runtime_env="python", python="/opt/rsi/.venv/bin/python",
                                    env_vars={"HF_HUB_OFFLINE": "1"}))
    assert env == {"py_executable": "/opt/rsi/.venv/bin/python", "env_vars": {"HF_HUB_OFFLINE": "1"}}
    assert runtime_env(ClusterConfig(runtime_env="python"))["py_executable"] == sys.executable
    pip = runtime_env(ClusterConfig(runtime_env="pip"))["pip"]["packages"]
    assert any(r.startswith("torch==") for r in pip) and any(r.startswith("ray[") for r in pip)
    assert runtime_env(ClusterConfig(runtime_env="image", image="ghcr.io/x/rsi:1"))["image_uri"] == "ghcr.io/x/rsi:1"
    with pytest.raises(ClusterError, match="cluster.image"):
        runtime_env(ClusterConfig(runtime_env="image"))


@pytest.mark.unit
def test_unknown_runtime_env_names_the_key() -> None:
    cfg = RsiConfig()
    cfg.cluster.runtime_env = "conda"
    with pytest.raises(ConfigError, match="cluster.runtime_env"):
        validate(cfg)


@pytest.mark.unit
def test_storage_problems_name_key_and_nodes() -> None:
    """Node-local run.dir on two nodes fails naming the key, the blind node and what to set; URIs and a single
    node pass."""
    seen = {("a", "/shared/r"), ("b", "/shared/r"), ("a", "runs/x")}
    sees = lambda node, path: (node, path) in seen  # noqa: E731
    assert storage_problems({"run.dir": "/shared/r", "cluster.storage_path": "s3://b/p"}, ["a", "b"], sees) == []
    assert storage_problems({"run.dir": "runs/x"}, ["a"], sees) == []
    [problem] = storage_problems({"run.dir": "runs/x", "cluster.storage_path": None}, ["a", "b"], sees)
    assert problem.startswith("run.dir: runs/x is not visible from node(s) b") and "/shared/runs/NAME" in problem
    [problem] = storage_problems({"cluster.storage_path": "/local/ray"}, ["a", "b"], sees)
    assert "s3://" in problem
    check_storage_uri("cluster.storage_path", "gs://bucket/rsi")
    with pytest.raises(ClusterError, match="cluster.storage_path"):
        check_storage_uri("cluster.storage_path", "ftp://host/x")


# ---- real Ray ------------------------------------------------------------------------------------------------
PROBE = """
import os, sys, ray
from rsi.cluster_env import ClusterConfig, init_ray
init_ray(ClusterConfig(num_cpus=2, runtime_env="python", python=sys.argv[1], env_vars={"RSI_PROBE": "on"}))

@ray.remote(num_cpus=0)
class Where:
    def where(self):
        return sys.executable, os.environ.get("RSI_PROBE")

print("ACTOR", *ray.get(Where.remote().where.remote()))
"""


@pytest.mark.ray
def test_actors_run_in_the_configured_python(tmp_path: Path) -> None:
    """cluster.runtime_env=python: actors start in `cluster.python`, not the driver's interpreter (the .venv a
    cluster has at one path on every node). A driver of its own, so the session's Ray is not reused."""
    other = make_overlay_venv(tmp_path / "nodevenv")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(other)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert f"ACTOR {other} on" in out.stdout, out.stderr[-3000:]


PLACED = """
import ray
from rsi.config import RsiConfig
from rsi.serving import start_sandbox
from rsi.sandbox.executor import humaneval_job
ray.init(num_cpus=2, resources={"sandbox": 3})
cfg = RsiConfig()
cfg.sandbox.resource, cfg.sandbox.workers = "sandbox", 2
pool = start_sandbox(cfg)
held = 3 - ray.available_resources().get("sandbox", 0)
[verdict] = pool.run_dicts([humaneval_job("def f():\\n    return 2\\n", "def check(c):\\n    assert c() == 2\\n", "f")])
pool.close()
import time
for _ in range(50):  # a killed actor's resources come back asynchronously
    if ray.available_resources().get("sandbox") == 3:
        break
    time.sleep(0.2)
print("HELD", held, ray.available_resources().get("sandbox"), verdict["status"])
"""


@pytest.mark.ray
def test_sandbox_actors_request_the_sandbox_resource() -> None:
    """sandbox.resource=sandbox: each sandbox actor holds one unit of the node's `sandbox` resource (what the
    KubeRay sandbox pods offer), so the actors can only run there; released when the pool closes."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", PLACED], capture_output=True, text=True, env=env, timeout=300)
    assert "HELD 2.0 3.0 pass" in out.stdout, (out.stdout + out.stderr)[-3000:]


STORAGE = """
import sys, ray
from rsi.cluster_env import ClusterError, check_shared_storage
ray.init()
try:
    check_shared_storage(sys.argv[1], None)
    print("LOCAL accepted")
except ClusterError as e:
    print("LOCAL", e)
check_shared_storage(sys.argv[2], sys.argv[2] + "/ray")
print("SHARED accepted")
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_node_local_run_dir_fails_on_two_nodes(tmp_path: Path) -> None:
    """Two Ray nodes, the second started under bwrap with a tmpfs over one folder, so that folder is node-local:
    a run.dir there fails the storage check naming the key, the blind node and what to set; a folder both
    nodes see passes."""
    from ray_head import RayHead

    local, shared = tmp_path / "local", tmp_path / "shared"
    local.mkdir()
    shared.mkdir()
    with RayHead(num_cpus=1) as head:
        head.add_node(num_cpus=1, wrapper=("bwrap", "--dev-bind", "/", "/", "--tmpfs", str(local), "--"))
        out = subprocess.run([sys.executable, "-c", STORAGE, str(local / "run"), str(shared / "run")],
                             env={**head.client_env, "RAY_ADDRESS": head.gcs}, capture_output=True, text=True,
                             timeout=300)
    assert "SHARED accepted" in out.stdout, (out.stdout + out.stderr)[-3000:]
    [line] = [x for x in out.stdout.splitlines() if x.startswith("LOCAL")]
    # exactly one blind node: the one under bwrap (named by its address and node id)
    assert re.fullmatch(rf"LOCAL run\.dir: {re.escape(str(local / 'run'))} is not visible from node\(s\) "
                        r"[\d.]+ \([0-9a-f]{8}\); a run on 2 nodes needs storage every node sees: set run\.dir to "
                        r"a shared mount \(e\.g\. /shared/runs/NAME\)", line), line


# ---- ray job submit ------------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.slow
def test_ray_job_submit_runs_rsi(tmp_path: Path) -> None:
    """README's command, as is: `ray start --head` (token auth), `ray job submit --working-dir . -- rsi run …`;
    the job succeeds, its run dir holds the three tables and checkpoint v1, and its logs show the iteration
    table. A client without the token is refused with Ray's own message."""
    from ray_head import RayHead

    run_dir = tmp_path / "run"
    job = f"rsi-{uuid.uuid4().hex[:8]}"
    with RayHead(num_cpus=4, env={"HF_HUB_OFFLINE": "1"}) as head:
        no_token = {k: v for k, v in head.client_env.items() if not k.startswith("RAY_AUTH")}
        no_token["HOME"] = str(tmp_path / "home")  # no ~/.ray/auth_token either
        refused = head.ray("job", "list", "--address", head.dashboard, env=no_token, timeout=120)
        assert refused.returncode != 0 and "no authentication token was found" in refused.stderr + refused.stdout

        # the README's command; the job builds the tiny model itself (`model=tiny`), as it would for a user
        submitted = head.submit("--submission-id", job, "--working-dir", ".", "--", "rsi", "run",
                                "+preset=smoke", f"run.dir={run_dir}", cwd=ROOT)
        status = head.ray("job", "status", "--address", head.dashboard, job, timeout=120)
        logs = head.ray("job", "logs", "--address", head.dashboard, job, timeout=120).stdout
        assert f"Job '{job}' succeeded" in status.stdout, (submitted.stdout + submitted.stderr)[-6000:]
    assert_iteration_written(run_dir)
    assert "rsi · iterations" in logs and "v0 → v1" in logs
    assert not head.own_processes()  # its own head, and only that, is gone


LEFT_BEHIND = """
from rsi.cluster_env import ClusterConfig, init_ray
print(init_ray(ClusterConfig(num_cpus=1), verbose=False))
import ray
print("NODES", len(ray.nodes()))
"""


@pytest.mark.ray
def test_an_address_left_by_ray_start_is_not_joined() -> None:
    """`ray start --head` leaves its address in RAY_TMPDIR/ray/ray_current_cluster, and a plain ray.init()
    would join it (then refuse num_cpus, or join a dead head). rsi run starts a Ray of its own and says so,
    naming the address it left alone."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="rl", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        (Path(tmp) / "ray").mkdir()
        (Path(tmp) / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")  # a head that is gone
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = tmp
        out = subprocess.run([sys.executable, "-c", LEFT_BEHIND], capture_output=True, text=True, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Ray: a private instance of 1 CPUs on this machine (not the one `ray start` left at 127.0.0.1:1" \
            in out.stdout and "NODES 1" in out.stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
