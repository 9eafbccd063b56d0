"""The deployment files as a user runs them: every `rsi run` in k8s/, cluster/ and the README composes; the KubeRay
manifests validate against the vendored CRD schemas of KubeRay v1.7.0 with unknown fields rejected; pods meet the
Pod Security level they claim; the sandbox NetworkPolicy denies all but Ray's traffic; the images, the
Dockerfiles' install steps and the manifests' commands are the ones the README shows; the cluster launcher
configs validate against the schema of the installed Ray. No cluster, no image build (no daemon here)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRDS = Path(__file__).parent / "data" / "kuberay"
MANIFESTS = sorted(ROOT.glob("k8s/**/*.yaml"))
LAUNCHER = sorted(ROOT.glob("cluster/*.yaml"))
VERSION = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)

pytestmark = pytest.mark.unit


# ---- every `rsi run` composes --------------------------------------------------------------------------------
def _logical_lines(text: str) -> list[str]:
    """Lines with `\\` continuations joined and a leading comment marker dropped (commands quoted in comments)."""
    text = re.sub(r"\\\n\s*#?", " ", text)
    return [re.sub(r"^\s*#\s?", "", line) for line in text.splitlines()]


def _after_rsi_run(line: str) -> list[str] | None:
    # a command: at a line's start, after `--` (ray job submit), a path (.venv/bin/) or `&&`; not prose
    m = re.search(r"(?:^\s*|--\s+|/|&&\s+)rsi run(?=\s|$)(.*)", line)
    if not m:
        return None
    rest = re.split(r"\s#\s", m.group(1))[0]
    for attempt in (rest, rest.rstrip().rstrip("\"'`")):
        try:
            tokens = shlex.split(attempt)
            break
        except ValueError:
            continue
    else:
        raise AssertionError(f"cannot split: {line}")
    for i, tok in enumerate(tokens):
        if tok in ("&&", ";", "|", "||") or tok.endswith(("`", '"')):
            tokens = tokens[:i]
            break
    return [t for t in tokens if t not in ("...", "…")]


def rsi_runs() -> list[tuple[str, list[str]]]:
    """(where, argv after `rsi run`) for every command in the README's code blocks and in k8s/, cluster/ files
    (their YAML strings, e.g. a RayJob's folded entrypoint, and their comments)."""
    found: list[tuple[str, list[str]]] = []
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S):
        for line in _logical_lines(block):
            if (argv := _after_rsi_run(line)) is not None:
                found.append(("README.md", argv))
    for path in [*MANIFESTS, *LAUNCHER]:
        text = path.read_text()
        strings: list[str] = []
        for doc in yaml.safe_load_all(text):
            _strings(doc, strings)
        for line in [*_logical_lines(text), *strings]:
            if (argv := _after_rsi_run(line)) is not None:
                found.append((str(path.relative_to(ROOT)), argv))
    return found


def _strings(node: Any, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(" ".join(node.split()))
    elif isinstance(node, dict):
        for v in node.values():
            _strings(v, out)
    elif isinstance(node, list):
        for v in node:
            _strings(v, out)


def test_found_the_documented_commands() -> None:
    where = {w for w, _ in rsi_runs()}
    assert {"README.md", "k8s/job/rayjob.yaml", "k8s/raycluster.yaml", "cluster/aws.yaml"} <= where


@pytest.mark.parametrize("where,argv", rsi_runs(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_documented_rsi_run_composes(where: str, argv: list[str]) -> None:
    """Each override list composes through Hydra into the typed config; a sweep (`-m a=1,2`) composes per value."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from rsi.cli import CONF_DIR
    from rsi.config import register_schema, to_dataclass

    overrides, skip = [], False
    for tok in argv:
        if skip:
            skip = False
        elif tok == "--cfg":
            skip = True
        elif not tok.startswith("-"):
            overrides.append(tok)
    parsed = OverridesParser.create().parse_overrides(overrides)
    variants = [[]]
    for o in parsed:
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        text = [o.input_line] if not o.is_sweep_override() else [f"{o.get_key_element()}={v}" for v in values]
        variants = [v + [t] for v in variants for t in text]
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for variant in variants:
            to_dataclass(compose(config_name="config", overrides=variant))


# ---- KubeRay CRD schemas -------------------------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """A CRD's structural openAPIV3Schema as JSON Schema that rejects unknown fields, as the API server's strict
    field validation does: objects with declared properties take no others unless they preserve unknown fields;
    int-or-string and nullable become what they mean."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _validator(kind: str):  # noqa: ANN202
    import jsonschema

    crd = json.loads((CRDS / f"{kind.lower()}s.v1.json").read_text())
    assert crd["kind"] == kind and crd["kuberay"] == "v1.7.0"
    return jsonschema.Draft7Validator(strict(crd["openAPIV3Schema"]))


def ray_docs() -> list[tuple[str, dict]]:
    return [(str(p.relative_to(ROOT)), d) for p in MANIFESTS for d in yaml.safe_load_all(p.read_text())
            if d and d.get("apiVersion") == "ray.io/v1"]


def test_manifests_validate_against_kuberay_crds() -> None:
    docs = ray_docs()
    assert {d["kind"] for _, d in docs} == {"RayCluster", "RayJob"}
    for where, doc in docs:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in _validator(doc["kind"]).iter_errors(doc)]
        assert not errors, f"{where}: {errors}"


def test_strict_validation_rejects_an_unknown_field() -> None:
    [(_, cluster)] = [(w, d) for w, d in ray_docs() if d["kind"] == "RayCluster"]
    cluster = json.loads(json.dumps(cluster))
    cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    assert any("securityContex" in e.message for e in _validator("RayCluster").iter_errors(cluster))


# ---- pods: Pod Security Standards ----------------------------------------------------------------------------
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.33): the rules this checks.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def pod_security_violations(pod: dict, level: str) -> list[str]:
    """Violations of the `baseline` or `restricted` Pod Security Standard by a pod spec."""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            bad.append(host)
    containers = [*pod.get("containers", []), *pod.get("initContainers", [])]
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        added = set((sc.get("capabilities") or {}).get("add", []))
        if added - BASELINE_CAPS:
            bad.append(f"{name}: capabilities.add {sorted(added - BASELINE_CAPS)}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
        for ctx in (psc, sc):
            if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
                bad.append(f"{name}: seccomp Unconfined")
            if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
                bad.append(f"{name}: appArmor Unconfined")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
        if level == "restricted":
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{name}: allowPrivilegeEscalation must be false")
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
                bad.append(f"{name}: runAsNonRoot must be true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                bad.append(f"{name}: runAsUser 0")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
            caps = sc.get("capabilities") or {}
            if "ALL" not in caps.get("drop", []):
                bad.append(f"{name}: capabilities must drop ALL")
            if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                bad.append(f"{name}: capabilities.add beyond NET_BIND_SERVICE")
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if "hostPath" in kinds:
            bad.append(f"volume {v['name']}: hostPath")
        if level == "restricted" and kinds - RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']}: {sorted(kinds)}")
    return bad


def pod_templates() -> list[tuple[str, str, dict]]:
    """(where, group, template) of every pod a manifest starts: head, worker groups, a RayJob's submitter."""
    out = []
    for where, doc in ray_docs():
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        out.append((where, "head", spec["headGroupSpec"]["template"]))
        out += [(where, g["groupName"], g["template"]) for g in spec.get("workerGroupSpecs", [])]
        if "submitterPodTemplate" in doc["spec"]:
            out.append((where, "submitter", doc["spec"]["submitterPodTemplate"]))
    return out


SANDBOX_NEEDS = {  # restricted's rules the sandbox pods break, each because the sandbox needs it
    "runAsNonRoot must be true",  # the host side runs as root to switch to slot uids and sweep them
    "runAsUser 0",
    "capabilities.add beyond NET_BIND_SERVICE",  # SETUID, SETGID, KILL, CHOWN, FOWNER, DAC_OVERRIDE
}


def test_pods_meet_the_pod_security_they_claim() -> None:
    """Ray's pods meet `restricted`. Sandbox pods meet `baseline`, plus every `restricted` rule but the three
    their slot-uid switching needs; they also run a read-only root filesystem without a service-account token."""
    templates = pod_templates()
    sandbox = [(w, t) for w, g, t in templates if g == "sandbox"]
    assert len(sandbox) == 2  # the RayCluster's and the RayJob's
    for where, group, template in templates:
        spec = template["spec"]
        if group != "sandbox":
            assert pod_security_violations(spec, "restricted") == [], f"{where} {group}"
            continue
        assert pod_security_violations(spec, "baseline") == [], where
        left = {v.split(": ", 1)[1] for v in pod_security_violations(spec, "restricted")}
        assert left <= SANDBOX_NEEDS, f"{where}: {left - SANDBOX_NEEDS}"
        [c] = spec["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["automountServiceAccountToken"] is False
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "rsi-sandbox"


def test_pod_security_check_catches_a_violation() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
           "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}
    bad = pod_security_violations(pod, "baseline")
    assert "c: capabilities.add ['SYS_ADMIN']" in bad and "c: appArmor Unconfined" in bad


def test_sandbox_group_offers_what_the_sandbox_actors_request() -> None:
    """Sandbox pods offer the Ray resource `sandbox`; the RayJob's run asks its sandbox actors for it and uses the
    launcher those pods can run (landlock: no user namespaces under RuntimeDefault with capabilities dropped)."""
    for where, doc in ray_docs():
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        [group] = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "sandbox"]
        assert json.loads(json.loads(group["rayStartParams"]["resources"])) == {"sandbox": 8}, where
    [(_, job)] = [(w, d) for w, d in ray_docs() if d["kind"] == "RayJob"]
    assert "sandbox.resource=sandbox" in job["spec"]["entrypoint"]
    assert "sandbox.launcher=landlock" in job["spec"]["entrypoint"]


def test_network_policy_denies_all_but_ray() -> None:
    [policy] = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "rsi-sandbox"}}
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    ray_ports = {(6379, None), (6380, 6383), (10002, 10999)}
    for rule in spec["ingress"] + spec["egress"]:
        assert rule.get("ports"), "a rule without ports allows every port"
        assert rule.get("to", rule.get("from")), "a rule without peers allows every peer"
        for peer in rule.get("to", rule.get("from")):
            assert "ipBlock" not in peer
            labels = peer["podSelector"]["matchLabels"]
            dns = labels == {"k8s-app": "kube-dns"}
            assert dns or labels.get("app.kubernetes.io/part-of") == "rsi", labels
            ports = {(p["port"], p.get("endPort")) for p in rule["ports"]}
            assert ports <= ({(53, None)} if dns else ray_ports), ports


# ---- images, Dockerfiles and the README ----------------------------------------------------------------------
def _pip_installs(text: str) -> set[str]:
    """The pip install/uninstall steps of a shell script or Dockerfile, normalised: interpreter, quiet and cache
    flags dropped, an editable install of the checkout and its dev extra counted as installing the package."""
    steps = set()
    for line in _logical_lines(text):
        m = re.search(r"-m pip (install|uninstall)\s+(.*?)(?:\s*(?:2>|\|\||&&|$))", line)
        if not m:
            continue
        args = [a for a in shlex.split(m.group(2)) if a not in ("-q", "--no-cache-dir", "-y", "-e")]
        args = [a.replace(",dev", "") for a in args]
        steps.add(f"pip {m.group(1)} {' '.join(args)}")
    return steps


def test_cpu_dockerfile_installs_what_setup_installs() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert _pip_installs(docker) == _pip_installs(setup)
    assert docker.startswith("#") and "FROM python:3.11-slim" in docker
    assert "apt-get install -y -qq bubblewrap procps python3" in docker  # setup.sh's system packages
    assert all(pkg in setup for pkg in ("bubblewrap", "procps", "python3"))
    gpu = (ROOT / "Dockerfile.gpu").read_text()
    assert "FROM rayproject/ray:2.60.0-py311-gpu" in gpu and 'pip install -q --no-cache-dir ".[gpu]"' in gpu


def test_manifests_name_the_configurable_image() -> None:
    """Every pod runs the image `rsi`, which each kustomization maps to a registry name (README: kustomize edit
    set image); no placeholder registry is left."""
    images = re.findall(r"image:\s*(\S+)", "".join(p.read_text() for p in MANIFESTS if "kustomization" not in p.name))
    assert images and set(images) == {"rsi"}
    for kust in ROOT.glob("k8s/**/kustomization.yaml"):
        doc = yaml.safe_load(kust.read_text())
        assert [i["name"] for i in doc.get("images", [{"name": "rsi"}])] == ["rsi"], kust
    assert not re.search(r"\bOWNER\b", "".join(p.read_text() for p in [*MANIFESTS, *LAUNCHER]))


def test_readme_shows_the_build_and_deploy_commands() -> None:
    """The README's commands are the ones the files hold: the image builds, kustomize's image setting, the
    RayJob's entrypoint and each `ray job submit` quoted in k8s/ and cluster/."""
    readme = " ".join(" ".join(_logical_lines((ROOT / "README.md").read_text())).split())
    for path in ("Dockerfile", "Dockerfile.gpu"):
        [build] = re.findall(r"`(docker build[^`]*)`", (ROOT / path).read_text())
        assert build in readme, build
    assert "kustomize edit set image rsi=REGISTRY/rsi:0.1.0" in readme
    assert "kubectl apply -k k8s/" in readme and "kubectl apply -k k8s/job/" in readme
    [(_, job)] = [(w, d) for w, d in ray_docs() if d["kind"] == "RayJob"]
    assert " ".join(job["spec"]["entrypoint"].split()) in readme
    for path in [*MANIFESTS, *LAUNCHER]:
        for line in _logical_lines(path.read_text()):
            if "ray job submit" in line:
                assert " ".join(line.split()) in readme, f"{path.name}: {line.strip()}"


def test_dangling_links_are_gone() -> None:
    for path in [*MANIFESTS, ROOT / "k8s" / "README.md", ROOT / "README.md"]:
        for target in re.findall(r"\b([\w./-]+\.md)\b", path.read_text()):
            assert (path.parent / target).exists() or (ROOT / target).exists(), f"{path.name}: {target}"


# ---- cluster launcher ----------------------------------------------------------------------------------------
def test_cluster_launcher_configs_validate_against_ray_schema() -> None:
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    assert len(LAUNCHER) == 3
    for path in LAUNCHER:
        config = yaml.safe_load(path.read_text())
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft7Validator(schema).iter_errors(config)]
        assert not errors, f"{path.name}: {errors}"


def test_cluster_launcher_installs_a_pinned_release_and_mounts_shared_storage() -> None:
    for path in LAUNCHER:
        config = yaml.safe_load(path.read_text())
        commands = [c for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                                  "initialization_commands") for c in config.get(key, [])]
        assert commands, path.name
        assert not any("|| true" in c for c in commands), path.name
        install = " ".join(commands)
        # the checkout's wheel at the package's version, or the synced checkout through scripts/setup.sh
        assert f"rsi-{VERSION}-py3-none-any.whl" in install or "scripts/setup.sh" in install, path.name
        assert "/shared" in install, f"{path.name}: no shared storage mounted at /shared"
