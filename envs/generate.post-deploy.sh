#!/bin/sh
# Run by Snakemake (--sdm conda) inside the new env created from envs/generate.yaml, from the workflow's
# working directory (the repository root). It makes the env what the "generate" image is:
# 1. every package at the version of envs/generate.lock.txt (no resolver: --no-deps), then `pip check`;
# 2. a `rock` command that runs the checkout's rock package (containers/rock-launcher.sh), as in
#    the images, so jobs never pick up another `rock` (e.g. the quick start's .venv).
# Snakemake hashes this script, not the lock: the line below (written by envs/lock.py) changes
# with the lock, so a new lock gives a new env.
# lock sha256: 61a36f02f3ee0bf180236deb55ac29609634dabfbc11faeca9e257ab447048f6
set -eu
python -m pip install --no-deps -r envs/generate.lock.txt
python -m pip check
install -m 755 containers/rock-launcher.sh "$CONDA_PREFIX/bin/rock"
