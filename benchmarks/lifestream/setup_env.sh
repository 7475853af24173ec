#!/usr/bin/env bash
# Creates the isolated pytorch-lifestream environment used by benchmarks/lifestream (default: .venv-lifestream).
# ptls 0.7.0 pins spacy==3.7.4 -> typer<0.10, which conflicts with our stack (transformers 5 -> typer 0.29), so it
# cannot live in .venv. torch is pinned to the CPU 2.13.0 wheel in the same pip command: an unpinned torch
# would pull a multi-GB CUDA build.
#   bash benchmarks/lifestream/setup_env.sh            # idempotent; LIFESTREAM_VENV=/path to put it elsewhere
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${LIFESTREAM_VENV:-$ROOT/.venv-lifestream}"
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/benchmarks/lifestream/requirements.txt"

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# The venv ignores itself, so it never shows up in `git status` whatever the root .gitignore says.
printf '*\n' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0" -r "$REQS"
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version

import torch
from ptls.frames.coles import CoLESModule  # noqa: F401
from ptls.nn import RnnSeqEncoder, TransformerSeqEncoder  # noqa: F401

print(f"pytorch-lifestream {version('pytorch-lifestream')}, torch {torch.__version__}: ready")
PY
