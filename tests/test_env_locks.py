"""The images' lock files (envs/lock.py): consistent with their env files, installed by the images
and by --sdm conda, and re-resolvable from PyPI (the resolver test needs PyPI and `uv`; it is
skipped, with the reason, where either is missing; CI has both: envs/cpu-requirements.txt pins uv).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("envs_lock", REPO / "envs" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def _pins(name: str) -> dict[str, str]:
    out = {}
    for line in lock.pip_pins(lock.env_file(name)):
        if not line.startswith("-"):
            pkg, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", pkg.split("[")[0]).lower()] = version.split()[0]
    return out


@pytest.mark.parametrize("name", lock.NAMES)
def test_lock_pins_every_env_pin_at_its_version(name):
    have = lock.pinned(lock.lock_file(name).read_text())
    for pkg, version in _pins(name).items():
        assert have.get(pkg) == version, f"envs/{name}.lock.txt: {pkg} {have.get(pkg)} != {version}"
    assert lock.lock_date(lock.lock_file(name).read_text()), "no exclude-newer date in the header"


def test_locks_agree_on_shared_packages():
    """One version of every package that two images share (files written by one image are read by
    another: parquet, safetensors, numpy arrays)."""
    locks = {name: lock.pinned(lock.lock_file(name).read_text()) for name in lock.NAMES}
    for pkg in set(locks["train"]) & set(locks["generate"]) & set(locks["analysis"]):
        versions = {locks[name][pkg] for name in lock.NAMES}
        assert len(versions) == 1, f"{pkg}: {versions}"
    assert locks["generate"]["vllm"] == "0.33.0" and locks["generate"]["numpy"] == "2.3.5"
    assert "vllm" not in locks["train"] and "vllm" not in locks["analysis"]


@pytest.mark.parametrize("name", lock.NAMES)
def test_conda_post_deploy_installs_the_recorded_lock_and_rock(name):
    """--sdm conda: the post-deploy script installs exactly this lock (its sha256 is recorded, so
    Snakemake, which hashes the script, rebuilds the env when the lock changes) and a `rock`."""
    text = lock.post_deploy_file(name).read_text()
    assert lock.recorded_sha(name) == lock.sha256(lock.lock_file(name).read_text()), \
        f"envs/{name}.post-deploy.sh records another lock; run python envs/lock.py"
    assert f"python -m pip install --no-deps -r envs/{name}.lock.txt" in text
    assert 'install -m 755 containers/rock-launcher.sh "$CONDA_PREFIX/bin/rock"' in text


def test_conda_post_deploy_gives_a_rock_that_runs_the_checkout(tmp_path):
    """The post-deploy script's last step, run in a fake env prefix: the installed `rock` runs
    this checkout's package (no pip call: its lines are run one by one, the installs skipped)."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    script = lock.post_deploy_file("train").read_text().splitlines()
    install = next(line for line in script if line.startswith("install "))
    env = dict(os.environ, CONDA_PREFIX=str(prefix),
               PATH=f"{prefix / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["sh", "-c", install], cwd=REPO, env=env, check=True)
    done = subprocess.run([str(prefix / "bin" / "rock"), "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "stages:" in done.stdout


def _pypi_unreachable() -> str | None:
    try:
        lock.uv_command()
    except lock.LockError as err:
        return str(err)
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError as err:
        return f"PyPI unreachable ({err}): the lock check needs the network"
    return None


@pytest.mark.parametrize("name", lock.NAMES)
def test_env_file_resolves_to_its_lock(name):
    """`uv pip compile` of envs/<name>.yaml at the lock's date gives the lock: it fails when the
    pins are unsatisfiable (e.g. numpy 2.4.6 with vLLM 0.33.0) or the lock is stale."""
    reason = _pypi_unreachable()
    if reason:
        pytest.skip(reason)
    assert lock.check(name) == []


def test_check_reports_an_unsatisfiable_env_file(tmp_path, monkeypatch):
    """The failure this guards against: vLLM 0.33.0 with numpy 2.4.6 does not resolve."""
    reason = _pypi_unreachable()
    if reason:
        pytest.skip(reason)
    bad = tmp_path / "generate.yaml"
    bad.write_text(lock.env_file("generate").read_text().replace("numpy==2.3.5", "numpy==2.4.6"))
    monkeypatch.setattr(lock, "env_file", lambda name: bad)
    with pytest.raises(lock.LockError, match=r"numpy.*unsatisfiable|unsatisfiable"):
        lock.compile_lock("generate", lock.lock_date(lock.lock_file("generate").read_text()))


def test_uv_is_pinned_for_ci():
    cpu = (REPO / "envs" / "cpu-requirements.txt").read_text()
    assert "\nuv==" in cpu, "CI needs uv for the lock check"
    assert shutil.which("sed")


def test_check_keeps_locked_versions_that_still_fit(tmp_path, monkeypatch):
    """A newer upload of a locked package (an index without upload times lets it past
    `--exclude-newer`) does not make a lock stale: uv prefers the lock's versions. A locked version
    the env file no longer allows does."""
    reason = _pypi_unreachable()
    if reason:
        pytest.skip(reason)
    text = lock.lock_file("train").read_text()
    older = re.sub(r"^idna==\S+$", "idna==3.20", text, flags=re.M)
    assert older != text
    locked = tmp_path / "train.lock.txt"
    locked.write_text(older)
    monkeypatch.setattr(lock, "lock_file", lambda name: locked)
    monkeypatch.setattr(lock, "recorded_sha", lambda name: lock.sha256(locked.read_text()))
    assert lock.check("train") == []
    env = tmp_path / "train.yaml"
    pins = _pins("train")
    pkg = "numpy"
    env.write_text(lock.env_file("train").read_text().replace(f"numpy=={pins[pkg]}", "numpy==2.2.6"))
    monkeypatch.setattr(lock, "env_file", lambda name: env)
    assert any("numpy" in p and "stale" in p for p in lock.check("train"))
