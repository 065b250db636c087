"""``rock download``: put a hub model into the Hugging Face cache (HF_HOME) on the submit host.

Compute nodes of many clusters have no internet. The workflow therefore downloads every hub model
of ``models:`` once, in a job that runs where the network is (``localrules``,
workflow/rules/download.smk), and every job that loads the model waits for that job's record
(``{run_dir}/models/<role>.json``). GPU jobs then run with ``HF_HUB_OFFLINE=1`` (set by
``rock gpus``, rock/gpu_slots.py) and ``from_pretrained(<hub id>)``/vLLM read the same cache.
HF_HOME must therefore be on a file system that the submit host and the nodes share.

    rock download --model Qwen/Qwen3-4B-Instruct-2507 --out results/paper/models/student.json

Only the files a causal LM and its tokenizer need are fetched (:data:`ALLOW_PATTERNS`). The toy
world's models are local directories: no download, no HF_HOME.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rock.atomic import write_json
from rock.errors import ModelError

#: weights (safetensors), configs, tokenizer and chat-template files; no .bin/.pth duplicates
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.py"]


def download(model: str, *, revision: str | None = None, snapshot=None) -> dict:
    """Download ``model`` into the hub cache; the record written next to the run's outputs.

    ``snapshot`` (default ``huggingface_hub.snapshot_download``) is injectable for tests.
    """
    if snapshot is None:
        from huggingface_hub import snapshot_download as snapshot
    try:
        path = Path(snapshot(repo_id=model, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except Exception as err:  # hub errors have no common base class across huggingface_hub versions
        raise ModelError(f"{model}: download failed ({type(err).__name__}: {err}); run this job "
                         "where the hub is reachable (it is a localrule: the submit host)") from err
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    if not weights or not (path / "config.json").exists():
        raise ModelError(f"{model}: the snapshot in {path} has no config.json or no *.safetensors")
    return {"model": model, "revision": path.name, "snapshot": str(path),
            "hf_home": os.environ.get("HF_HOME"), "weights": weights}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id, e.g. Qwen/Qwen3-4B-Instruct-2507")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    parser.add_argument("--out", required=True, type=Path, help="record of the download (json)")


def run(args: argparse.Namespace) -> int:
    record = download(args.model, revision=args.revision)
    write_json(args.out, record)
    print(f"{args.model}: {len(record['weights'])} weight files in {record['snapshot']}")
    return 0
