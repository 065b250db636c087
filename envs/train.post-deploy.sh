#!/bin/sh
# Run by Snakemake (--sdm conda) inside the new env created from envs/train.yaml, from the workflow's
# working directory (the repository root). It makes the env what the "train" image is:
# 1. every package at the version of envs/train.lock.txt (no resolver: --no-deps), then `pip check`;
# 2. a `rock` command that runs the checkout's rock package (containers/rock-launcher.sh), as in
#    the images, so jobs never pick up another `rock` (e.g. the quick start's .venv).
# Snakemake hashes this script, not the lock: the line below (written by envs/lock.py) changes
# with the lock, so a new lock gives a new env.
# lock sha256: 324fcc11c98ff86480018cb2487ca90697a4cf09c53433b4de2117981de87b9b
set -eu
python -m pip install --no-deps -r envs/train.lock.txt
python -m pip check
install -m 755 containers/rock-launcher.sh "$CONDA_PREFIX/bin/rock"
