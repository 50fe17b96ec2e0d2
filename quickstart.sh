#!/usr/bin/env bash
# One command from a fresh checkout to a trained StructNet and its per-action MPJPE table:
# a virtual environment in .venv, the package with its test extra, training on the embedded
# synthetic Human3.6M-like dataset (generated on first use, cached in cache/), then evaluation
# on the test subjects S9, S11. About 8.5 minutes on an idle 2-core CPU. Extra arguments go to
# run_train.py (e.g. ./quickstart.sh --epochs 4 for a shorter run).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
.venv/bin/python run_train.py "$@"
.venv/bin/python run_eval.py --json runs/latest/results.json --figures runs/latest/figures --sweep-A auto
