#!/usr/bin/env bash
# GPU check of the serving and training path, meant for one H100 in under 8 minutes:
#   1. install rsi with the gpu extra (vLLM CUDA build) into a fresh venv,
#   2. build a random ~0.5B Qwen2-architecture model offline (no download: the box may have no internet),
#   3. 2-replica vLLM pool: tokens/s; a training process writes new weights and the pool swaps to them from disk
#      (reload_weights in place); greedy outputs must equal a fresh engine on them, and equal the pool's own
#      outputs again after swapping back;
#   4. 10 DeepSpeed (ZeRO-2) DPO steps on the GPU under Ray Train: step time;
#   5. LoRA (train.lora): 10 DPO steps training an adapter under ZeRO-2 and ZeRO-3 with peft, then a 2-replica
#      vLLM pool with LoRA on CUDA: adapter swap and rollback by route, greedy equality with a fresh engine.
# Offline installs: RSI_WHEELHOUSE=/path/to/wheels (pip --no-index --find-links) with vllm, torch, ray, trl,
# deepspeed and their dependencies for this Python.  Output: one line per figure, also in $OUT/gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$LOG") 2>&1
export HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1 VLLM_ENABLE_V1_MULTIPROCESSING=0
WORK=${RSI_GPU_WORK:-/tmp/rsi-gpu}
mkdir -p "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$(date +%s)

# 1. install
PY=${PYTHON:-python3}
if [ ! -x "$WORK/venv/bin/python" ]; then
  "$PY" -m venv "$WORK/venv"
fi
VPY=$WORK/venv/bin/python
pip_args=(-q)
if [ -n "${RSI_WHEELHOUSE:-}" ]; then pip_args+=(--no-index --find-links "$RSI_WHEELHOUSE"); fi
DS_BUILD_OPS=0 $VPY -m pip install "${pip_args[@]}" -e ".[gpu]"
$VPY -c "import vllm, torch, ray, trl, deepspeed, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'vllm', vllm.__version__, 'ray', ray.__version__, 'peft', peft.__version__, 'gpus', torch.cuda.device_count())"
echo "install s: $(( $(date +%s) - start ))"

# 2 + 3. model, pool, disk swap, greedy equality (the model is built on first use)
t=$(date +%s)
$VPY scripts/gpu_check.py --model "$WORK/qwen2-0.5b-random" --replicas 2 --prompts 64 --max-tokens 128
echo "pool check s: $(( $(date +%s) - t ))"

# 4. DPO steps under Ray Train with DeepSpeed on the GPU (the reference model shares the GPU)
t=$(date +%s)
$VPY scripts/bench/train_step.py --gpu --model "$WORK/qwen2-0.5b-random" --steps 10 --batch 2 --modes zero2
echo "dpo check s: $(( $(date +%s) - t ))"

# 5. LoRA: adapter DPO with DeepSpeed and peft (ZeRO-2 and ZeRO-3), then adapters hot-loaded into a vLLM pool
t=$(date +%s)
$VPY scripts/bench/train_step.py --gpu --lora --model "$WORK/qwen2-0.5b-random" --steps 10 --batch 2 --modes zero2,zero3
$VPY scripts/gpu_check_lora.py --model "$WORK/qwen2-0.5b-random" --replicas 2
echo "lora check s: $(( $(date +%s) - t ))"
echo "gpu_check total s: $(( $(date +%s) - start ))"
