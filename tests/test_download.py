"""rock download (rock/download.py): the submit-host job that fills HF_HOME for offline nodes.
The hub is replaced by a fake snapshot function (no network here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rock import download
from rock.errors import ModelError

REPO = Path(__file__).resolve().parent.parent


def fake_snapshot(root: Path, files=("config.json", "model-00001.safetensors", "tokenizer.json")):
    calls = []

    def snapshot(repo_id, revision, allow_patterns):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        path = root / "models--org--m" / "snapshots" / "abc123"
        path.mkdir(parents=True, exist_ok=True)
        for name in files:
            (path / name).write_text("{}")
        return str(path)
    return snapshot, calls


def test_record_names_the_snapshot_revision_and_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    snapshot, calls = fake_snapshot(tmp_path)
    record = download.download("org/m", snapshot=snapshot)
    assert record == {"model": "org/m", "revision": "abc123", "hf_home": str(tmp_path),
                      "snapshot": str(tmp_path / "models--org--m" / "snapshots" / "abc123"),
                      "weights": ["model-00001.safetensors"]}
    assert calls[0][0] == "org/m" and "*.safetensors" in calls[0][2] and "*.bin" not in calls[0][2]


def test_a_snapshot_without_weights_is_refused(tmp_path):
    snapshot, _ = fake_snapshot(tmp_path, files=("config.json",))
    with pytest.raises(ModelError, match=r"org/m: the snapshot in .* no \*\.safetensors"):
        download.download("org/m", snapshot=snapshot)


def test_a_hub_error_names_the_model_and_the_submit_host(tmp_path):
    def offline(**kwargs):
        raise OSError("network unreachable")
    with pytest.raises(ModelError, match=r"org/m: download failed \(OSError: network unreachable\).*submit host"):
        download.download("org/m", snapshot=offline)


def test_cli_writes_the_record(tmp_path):
    """`rock download` end to end, with huggingface_hub's snapshot_download patched in a shim."""
    shim = tmp_path / "shim"
    (shim / "huggingface_hub").mkdir(parents=True)
    (shim / "huggingface_hub" / "__init__.py").write_text(
        "import os, pathlib\n"
        "def snapshot_download(repo_id, revision=None, allow_patterns=None):\n"
        "    p = pathlib.Path(os.environ['HF_HOME']) / 'snap' / 'rev1'\n"
        "    p.mkdir(parents=True, exist_ok=True)\n"
        "    (p / 'config.json').write_text('{}'); (p / 'a.safetensors').write_text('')\n"
        "    return str(p)\n")
    env = dict(os.environ, PYTHONPATH=f"{shim}{os.pathsep}{REPO}", HF_HOME=str(tmp_path / "hf"))
    out = tmp_path / "models" / "student.json"
    done = subprocess.run([sys.executable, "-m", "rock.cli", "download", "--model", "org/m", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["revision"] == "rev1"
