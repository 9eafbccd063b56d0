"""The deployment files as a user runs them: every `rsi run` in k8s/ and cluster/ composes (tests/test_docs.py
composes the README's and docs/'s with `compose_argv`); the KubeRay manifests validate against the vendored CRD
schemas of KubeRay v1.7.0 with unknown fields rejected; every pod meets Pod Security `restricted` (the
per-slot-uid variant's sandbox pods `baseline`); the sandbox NetworkPolicy denies all but Ray's traffic; the
images, the Dockerfiles' install steps and the manifests' commands are the ones the README and docs/ show; the
cluster launcher configs validate against the schema of the installed Ray. No cluster, no image build (no daemon
here)."""

from __future__ import annotations

import copy
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
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # what a user reads: the README and its pages
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
    """(where, argv after `rsi run`) for every command in k8s/, cluster/ files (their YAML strings, e.g. a RayJob's
    folded entrypoint, and their comments)."""
    found: list[tuple[str, list[str]]] = []
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
    assert {"k8s/job/rayjob.yaml", "k8s/raycluster.yaml", "cluster/aws.yaml"} <= where


@pytest.mark.parametrize("where,argv", rsi_runs(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_documented_rsi_run_composes(where: str, argv: list[str]) -> None:
    compose_argv(argv)


def compose_argv(argv: list[str]) -> list[Any]:
    """Each override list composes through Hydra into the typed config; a sweep (`-m a=1,2`) composes per value.
    Returns the RsiConfig of each variant."""
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
        return [to_dataclass(compose(config_name="config", overrides=variant)) for variant in variants]


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
            if isinstance(d, dict) and d.get("apiVersion") == "ray.io/v1"]


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
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.33): every control of `baseline` and
# `restricted`, over the pod, its containers, init and ephemeral containers, as Pod Security admission reads them.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
BASELINE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
                    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range", "net.ipv4.tcp_fin_timeout",
                    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_keepalive_time",
                    "net.ipv4.tcp_rmem", "net.ipv4.tcp_syncookies", "net.ipv4.tcp_wmem"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def pod_security_violations(pod: dict, level: str, annotations: dict | None = None) -> list[str]:
    """Violations of the `baseline` or `restricted` Pod Security Standard by a pod spec (and its annotations)."""
    bad: list[str] = []
    psc = pod.get("securityContext") or {}
    containers = [*pod.get("containers", []), *pod.get("initContainers", []), *pod.get("ephemeralContainers", [])]
    contexts = [("pod", psc), *[(c["name"], c.get("securityContext") or {}) for c in containers]]
    # baseline
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            bad.append(host)
    for name, ctx in contexts:
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{name}: windowsOptions.hostProcess")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{name}: seccomp Unconfined")
        if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{name}: appArmor Unconfined")
        selinux = ctx.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            bad.append(f"{name}: seLinuxOptions {selinux}")
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            bad.append(f"{key.removeprefix(APPARMOR_ANNOTATION)}: appArmor {value}")
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in BASELINE_SYSCTLS:
            bad.append(f"pod: sysctl {sysctl['name']}")
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
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if "hostPath" in kinds:
            bad.append(f"volume {v['name']}: hostPath")
        elif level == "restricted" and kinds - RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']}: {sorted(kinds)}")
    if level != "restricted":
        return bad
    # restricted: a pod-level value counts for every container that leaves the field unset
    if psc.get("runAsNonRoot") is False:
        bad.append("pod: runAsNonRoot must be true")
    if psc.get("runAsUser") == 0:
        bad.append("pod: runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append("pod: seccompProfile must be RuntimeDefault or Localhost")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            bad.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        if (sc.get("seccompProfile") or {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities.add beyond NET_BIND_SERVICE")
    return bad


def pod_templates(docs: list[tuple[str, dict]] | None = None) -> list[tuple[str, str, dict]]:
    """(where, group, template) of every pod a manifest starts: head, worker groups, a RayJob's submitter."""
    out = []
    for where, doc in ray_docs() if docs is None else docs:
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        out.append((where, "head", spec["headGroupSpec"]["template"]))
        out += [(where, g["groupName"], g["template"]) for g in spec.get("workerGroupSpecs", [])]
        if "submitterPodTemplate" in doc["spec"]:
            out.append((where, "submitter", doc["spec"]["submitterPodTemplate"]))
    return out


def _violations(template: dict, level: str) -> list[str]:
    return pod_security_violations(template["spec"], level, (template.get("metadata") or {}).get("annotations"))


def test_every_pod_meets_restricted_pod_security() -> None:
    """Every pod meets `restricted` with no exception, the sandbox pods included: they run as uid 1000 without
    any capability, like the head and GPU pods, and besides on a read-only root filesystem whose one writable
    place is a size-limited /tmp (Ray's session, the sandbox's lock dir), without a service-account token."""
    from rsi.sandbox.config import SandboxConfig

    templates = pod_templates()
    for where, group, template in templates:
        assert _violations(template, "restricted") == [], f"{where} {group}"
    sandbox = [(w, t) for w, g, t in templates if g == "sandbox"]
    assert len(sandbox) == 2  # the RayCluster's and the RayJob's
    for where, template in sandbox:
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (1000, 1000), where
        [c] = spec["containers"]
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, where
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
        assert spec["automountServiceAccountToken"] is False, where
        [mount] = c["volumeMounts"]
        [tmp] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert mount["mountPath"] == "/tmp" and tmp["emptyDir"]["sizeLimit"], where
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "rsi-sandbox"
    # without root the sandbox keeps its slot locks, work dirs and harness in "<lock_dir>-<uid>": on that /tmp
    assert SandboxConfig().lock_dir.startswith("/tmp/")


def json_patch(doc: Any, ops: list[dict]) -> Any:
    """RFC 6902 test/add/replace/remove on a copy of `doc` (what kustomize applies for a JSON6902 patch)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            assert node[key] == op["value"], op
        elif op["op"] == "add" and isinstance(node, list):
            node.insert(key, op["value"])
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                node[key]  # noqa: B018 - replace needs the target to exist
            node[key] = op["value"]
        elif op["op"] == "remove":
            del node[key]
        else:
            raise AssertionError(f"unsupported op {op}")
    return doc


def test_slot_uid_variant_changes_only_the_sandbox_pods_and_meets_baseline() -> None:
    """k8s/variants/slot-uids, the documented alternative with a uid per slot, is a kustomize component that runs
    the sandbox pods as root with the six capabilities slot uids need: `baseline` allows that, `restricted` does
    not, and the check says which rules it breaks. Nothing else in either manifest changes."""
    component = yaml.safe_load((ROOT / "k8s" / "variants" / "slot-uids" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component" and not component.get("resources")
    patches = {p["target"]["kind"]: yaml.safe_load(p["patch"]) for p in component["patches"]}
    docs = ray_docs()
    assert set(patches) == {d["kind"] for _, d in docs}
    patched = [(w, json_patch(d, patches[d["kind"]])) for w, d in docs]
    for where, doc in patched:
        errors = [e.message for e in _validator(doc["kind"]).iter_errors(doc)]
        assert not errors, f"{where}: {errors}"
    for (where, group, before), (_, _, after) in zip(pod_templates(), pod_templates(patched), strict=True):
        if group != "sandbox":
            assert after == before, f"{where} {group}"
            continue
        assert _violations(after, "baseline") == [], where
        assert set(_violations(after, "restricted")) == {
            "pod: runAsUser 0",
            "ray-worker: runAsNonRoot must be true",
            "ray-worker: capabilities.add beyond NET_BIND_SERVICE",
        }, where
        caps = after["spec"]["containers"][0]["securityContext"]["capabilities"]
        assert caps == {"drop": ["ALL"], "add": ["SETUID", "SETGID", "KILL", "CHOWN", "FOWNER", "DAC_OVERRIDE"]}


def test_pod_security_check_catches_a_violation() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
           "securityContext": {"appArmorProfile": {"type": "Unconfined"}, "sysctls": [{"name": "kernel.msgmax"}]}}
    bad = pod_security_violations(pod, "baseline")
    assert "c: capabilities.add ['SYS_ADMIN']" in bad and "pod: appArmor Unconfined" in bad
    assert "pod: sysctl kernel.msgmax" in bad
    assert "c: appArmor unconfined" in pod_security_violations(
        {"containers": [{"name": "c"}]}, "baseline", {APPARMOR_ANNOTATION + "c": "unconfined"})
    # restricted: a default pod breaks every rule it leaves to the runtime
    assert set(pod_security_violations({"containers": [{"name": "c"}]}, "restricted")) == {
        "c: allowPrivilegeEscalation must be false", "c: runAsNonRoot must be true",
        "c: seccompProfile must be RuntimeDefault or Localhost", "c: capabilities must drop ALL"}
    # a pod-level runAsNonRoot=false is rejected even where the container sets true; uid 0 at either level
    ok = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
          "seccompProfile": {"type": "RuntimeDefault"}}
    pod = {"securityContext": {"runAsNonRoot": False, "runAsUser": 0},
           "containers": [{"name": "c", "securityContext": ok}],
           "ephemeralContainers": [{"name": "e", "securityContext": {**ok, "runAsUser": 0}}]}
    assert set(pod_security_violations(pod, "restricted")) == {
        "pod: runAsNonRoot must be true", "pod: runAsUser 0", "e: runAsUser 0"}
    assert pod_security_violations({"containers": [{"name": "c", "securityContext": ok}]}, "restricted") == []


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
    [policy] = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text())
                if isinstance(d, dict) and d.get("kind") == "NetworkPolicy"]
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
    """The commands of the README and docs/ are the ones the files hold: the image builds, kustomize's image
    setting, the RayJob's entrypoint and each `ray job submit` quoted in k8s/ and cluster/."""
    readme = " ".join(" ".join(_logical_lines("\n".join(p.read_text() for p in DOCS))).split())
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
