#!/bin/sh
# `rock` inside the images (installed as /usr/local/bin/rock by containers/*.def).
# The images hold the pinned environment, not the code: this runs the rock package of the checkout
# the workflow runs in. Snakemake starts every job in the workflow's working directory and mounts
# it into the container (apptainer exec --home <workdir>), so a code change needs no image rebuild.
# Set ROCK_SRC to use a checkout elsewhere.
src="${ROCK_SRC:-$PWD}"
if [ ! -f "$src/rock/cli.py" ]; then
    echo "rock: no rock/ package in '$src': run from the repository root or set ROCK_SRC" >&2
    exit 2
fi
export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
exec python -m rock.cli "$@"
