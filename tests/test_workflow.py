"""The workflow frame: rules, environments, containers, lint, dry runs, config errors.

Dry runs (`snakemake -n`) need no network, no GPU and no Apptainer: with `--sdm apptainer` they
use the test-only stand-in tests/bin/apptainer, which answers `--version` and refuses everything
else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "workflow" / "rules"
PAPER_CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
TOY_CONFIG_FILE = REPO / "tests" / "config_toy" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def snakemake(*args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        ([str(path_prefix)] if path_prefix else []) + [str(Path(sys.executable).parent),
                                                       env.get("PATH", "")])
    return subprocess.run([*SNAKEMAKE, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m.group(1) != "total"}


def rule_blocks() -> dict[str, tuple[Path, str]]:
    """rule name -> (file, text of its block) for every rule in workflow/rules/*.smk."""
    blocks = {}
    for smk in sorted(RULES_DIR.glob("*.smk")):
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)rule (\w+):\s*$", line)
            if not m:
                continue
            indent, body = len(m.group(1)), []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            blocks[m.group(2)] = (smk, "\n".join(body))
    return blocks


RULES = rule_blocks()
ENVS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((REPO / "envs").glob("*.yaml"))}
DEFS = {p.stem: p.read_text() for p in sorted((REPO / "containers").glob("*.def"))}


def pip_pins(env: dict) -> dict[str, str]:
    """Package name (normalised, extras dropped) -> exact version of an env file's pip section."""
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("--"):
                    continue
                m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([^\s]+)", line)
                assert m, f"pip entry not pinned exactly: {line!r}"
                pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", name, maxsplit=1)[0]).lower()


# ------------------------------------------------------------------------------------------------
# rules: log, env, container, threads, resources, thin shell
# ------------------------------------------------------------------------------------------------

def test_rules_found():
    assert {"toy_world", "data_prompts", "data_benchmark"} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_declares_log_env_container_threads_resources(rule):
    smk, body = RULES[rule]
    assert re.search(r"^\s+log:", body, re.M), f"{rule}: no log:"
    # wall-clock per stage: `rock report timings`, the report's provenance
    assert re.search(r"^\s+benchmark:\s*\n\s+paths\.job_timing\(", body, re.M), f"{rule}: no benchmark:"
    env = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", body, re.M)
    assert env, f"{rule}: no conda: env file"
    env_file = (smk.parent / env.group(1)).resolve()
    assert env_file.exists(), f"{rule}: env file {env_file} missing"
    container = re.search(r'^\s+container:\s*\n\s+lookup\(dpath="containers/(\w+)", within=config\)',
                          body, re.M)
    assert container, f"{rule}: container: must be lookup(dpath=\"containers/<key>\", ...)"
    key = container.group(1)
    assert key in PAPER_CONFIG["containers"], f"{rule}: no container key {key!r} in config.yaml"
    assert env_file.stem == key, f"{rule}: runs in container {key!r} but env {env_file.name}"
    assert re.search(r"^\s+threads:", body, re.M), f"{rule}: no threads:"
    assert re.search(r'^\s+resources:\s*\n\s+\*\*job_resources\("\w+"\),', body, re.M), \
        f"{rule}: resources must be **job_resources(\"<group>\") (gpu, mem_mb, runtime of the group)"
    shell = body.split("shell:", 1)[1] if "shell:" in body else ""
    # `rock <stage>`, or {params.launcher} <stage> where the launcher is `rock` or
    # `torchrun ... -m rock.cli` for multi-GPU jobs (common.smk)
    assert re.search(r'"\s*(rock|\{params\.launcher\}) \w+', shell), \
        f"{rule}: the shell must call `rock <stage>`"
    assert "> {log} 2>&1" in shell, f"{rule}: the shell must send its output to {{log}}"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_gpu_job_gets_its_own_devices(rule):
    """A rule whose config.yaml resources ask for GPUs runs its command behind
    `rock gpus {resources.gpu} --` (rock.gpu_slots: its own CUDA_VISIBLE_DEVICES on one machine),
    directly or through the distill launcher (common.smk); CPU rules do not."""
    _, body = RULES[rule]
    group = re.search(r'job_resources\("(\w+)"\)', body).group(1)
    shell = body.split("shell:", 1)[1]
    wrapped = re.search(r'"rock gpus \{resources\.gpu\} --"\s*" rock \w+', shell) or \
        "{params.launcher}" in shell and "distill_launcher(" in body
    assert bool(wrapped) == (PAPER_CONFIG["resources"][group]["gpu"] > 0), rule


def test_every_rule_resource_group_is_in_both_configs():
    toy = yaml.safe_load(TOY_CONFIG_FILE.read_text())
    for rule, (_, body) in RULES.items():
        groups = re.findall(r'dpath="resources/(\w+)/|job_resources\("(\w+)"\)', body)
        for group in {g for pair in groups for g in pair if g}:
            assert group in PAPER_CONFIG["resources"], f"{rule}: resources.{group} not in config.yaml"
            assert group in toy["resources"], f"{rule}: resources.{group} not in the toy config"
            assert toy["resources"][group]["gpu"] == 0, f"toy resources.{group}.gpu must be 0"


# ------------------------------------------------------------------------------------------------
# environments and container definitions agree
# ------------------------------------------------------------------------------------------------

def test_one_env_and_one_definition_per_container_key():
    keys = set(PAPER_CONFIG["containers"])
    assert keys == {"train", "generate", "analysis"}
    assert set(ENVS) == keys
    assert set(DEFS) == keys


@pytest.mark.parametrize("name", sorted(ENVS))
def test_env_file_is_exactly_pinned(name):
    env = ENVS[name]
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    for dep in conda:
        assert re.fullmatch(r"[\w.-]+=\d+(\.\d+)+", dep), f"{name}: conda pin not exact: {dep}"
    assert any(d.startswith("python=3.11.") for d in conda)
    pins = pip_pins(env)  # asserts every entry is name==version
    assert pins["torch"].startswith("2.14.0")


def test_envs_pin_every_package_dependency():
    """Every import-level dependency of the rock package is pinned in every image."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, env in ENVS.items():
        pins = pip_pins(env)
        missing = [d for d in deps if normalise(d) not in pins]
        assert not missing, f"envs/{name}.yaml does not pin {missing}"


def test_shared_pins_agree_across_images():
    pins = {name: pip_pins(env) for name, env in ENVS.items()}
    shared = set.intersection(*(set(p) for p in pins.values()))
    for package in shared:
        versions = {p[package].split("+")[0] for p in pins.values()}
        assert len(versions) == 1, f"{package}: different versions across images {versions}"


def test_generate_image_versions():
    pins = pip_pins(ENVS["generate"])
    assert pins["vllm"] == "0.33.0"
    assert pins["torch"] == "2.14.0"
    assert pins["lm-eval"] == "0.4.13"
    major, minor = (int(x) for x in pins["transformers"].split(".")[:2])
    assert (major, minor) < (5, 21), "vLLM 0.33.0 needs transformers < 5.21"
    assert "math-verify" in pins
    assert "vllm" not in pip_pins(ENVS["train"]) and "vllm" not in pip_pins(ENVS["analysis"])
    # PyPI's wheel in every image (the CPU-only wheel's index is unreachable for the lock check)
    assert pip_pins(ENVS["analysis"])["torch"] == "2.14.0"
    assert pins["numpy"] == "2.3.5", "vLLM 0.33.0 needs numpy < 2.4 (through mistral-common)"


#: where the images knowingly differ from the CPU environment that CI tests, and why
CPU_ENV_DEVIATIONS = {
    "torch": "images: 2.14.0 (CUDA build; vLLM 0.33.0 pins it); CPU env: 2.13.0 CPU build",
    "transformers": "vLLM 0.33.0 needs < 5.21; the CPU env has 5.23.0",
    "numpy": "vLLM 0.33.0 needs < 2.4 (mistral-common); the CPU env has 2.4.6",
}


def test_images_match_cpu_env_except_documented_deviations():
    cpu = {}
    for line in (REPO / "envs" / "cpu-requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            cpu[normalise(name)] = version
    for name, env in ENVS.items():
        for package, version in pip_pins(env).items():
            if package in CPU_ENV_DEVIATIONS or package not in cpu:
                continue
            assert cpu[package] == version, \
                f"envs/{name}.yaml pins {package}=={version}, the tested CPU env {cpu[package]}"


@pytest.mark.parametrize("name", sorted(DEFS))
def test_definition_installs_exactly_its_lock(name):
    """Each image: python/pip from its env file's conda part, then exactly its lock (envs/lock.py)
    with `pip install --no-deps` (no resolver at build time), checked by `pip check`."""
    text = DEFS[name]
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert re.search(rf"^\s+envs/{name}\.yaml /opt/rock/env\.yaml$", code, re.M), \
        f"containers/{name}.def must copy envs/{name}.yaml into the image"
    assert re.search(rf"^\s+envs/{name}\.lock\.txt /opt/rock/lock\.txt$", code, re.M), \
        f"containers/{name}.def must copy envs/{name}.lock.txt into the image"
    assert "micromamba create -y -p /opt/rock/env -f /opt/rock/env-conda.yaml" in code
    installs = re.findall(r"pip install[^\n]*", code)
    assert installs == ["pip install --no-deps --no-cache-dir -r /opt/rock/lock.txt"], installs
    assert "python -m pip check" in code and "micromamba install" not in code
    assert "==" not in code  # no version pins in the def
    assert "containers/rock-launcher.sh /usr/local/bin/rock" in code
    assert "export PATH=/opt/rock/env/bin:$PATH" in code
    for image in re.findall(r"^From:\s*(\S+)", code, re.M):
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"


@pytest.mark.parametrize("name", sorted(ENVS))
def test_definition_cut_keeps_only_python_and_pip(name, tmp_path):
    """The def's sed cut of the env file (everything from `  - pip:` on) leaves a valid conda env
    of python and pip only: the pip packages come from the lock alone."""
    cut = re.search(r"sed '([^']+)' /opt/rock/env\.yaml", DEFS[name]).group(1)
    src = tmp_path / "env.yaml"
    src.write_text((REPO / "envs" / f"{name}.yaml").read_text())
    done = subprocess.run(["sed", cut, str(src)], capture_output=True, text=True, check=True)
    env = yaml.safe_load(done.stdout)
    assert [d.split("=")[0] for d in env["dependencies"]] == ["python", "pip"]


def test_generate_definition_stores_punkt_tab():
    code = DEFS["generate"]
    assert "python -m nltk.downloader -d /opt/nltk_data punkt_tab" in code
    assert "export NLTK_DATA=/opt/nltk_data" in code


def test_gpu_images_build_on_the_cuda_of_torch():
    """PyPI's torch 2.14.0 wheel is built for CUDA 13.0 (nvidia-cuda-runtime 13.0.x)."""
    for name in ("train", "generate"):
        assert "From: nvidia/cuda:13.0." in DEFS[name]


def test_launcher_runs_the_checkout(tmp_path):
    launcher = REPO / "containers" / "rock-launcher.sh"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("ROCK_SRC", None)
    ok = subprocess.run(["sh", str(launcher), "--help"], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "stages:" in ok.stdout
    bad = subprocess.run(["sh", str(launcher), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no rock/ package" in bad.stderr


# ------------------------------------------------------------------------------------------------
# snakemake: lint, dry runs, containers
# ------------------------------------------------------------------------------------------------

def test_lint_passes():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_paper_dry_run_plans_data_stage_from_the_hub():
    result = snakemake("-n", "-p")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    counts = job_counts(out)
    assert counts["data_prompts"] == 1
    assert counts["data_benchmark"] == len(PAPER_CONFIG["data"]["benchmarks"]) == 5
    assert "toy_world" not in counts  # paper models and data come from the hub
    assert "--hub open-thoughts/OpenThoughts3-1.2M --split train --streaming" in out
    assert "--stage1 0 20000 --stage2 20000 30000" in out
    assert "--hub Maxwell-Jia/AIME_2024 --split train --out results/paper/data/aime24.jsonl" in out


def test_toy_profile_uses_only_the_toy_config():
    result = snakemake("-n", "-p", "-F", "--profile", "workflow/profiles/toy")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    counts = job_counts(out)
    assert counts["toy_world"] == 1 and counts["data_prompts"] == 1
    assert "rock toy build --config tests/config_toy/config.yaml" in out
    assert "--jsonl results/toy/world/raw/aime24.jsonl --out results/toy/data/aime24.jsonl" in out
    assert "--hub" not in out and "results/paper" not in out


def test_apptainer_dry_run_references_the_containers():
    stand_in = REPO / "tests" / "bin"
    refused = subprocess.run([str(stand_in / "apptainer"), "exec", "x.sif", "true"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "test stand-in" in refused.stderr
    result = snakemake("-n", "--sdm", "apptainer", path_prefix=stand_in)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    pulled = set(re.findall(r"Singularity image (\S+) will be pulled", out))
    planned = set(job_counts(out)) - {"all"}
    expected = {PAPER_CONFIG["containers"][re.search(r'dpath="containers/(\w+)"',
                                                     RULES[rule][1]).group(1)]
                for rule in planned}
    assert pulled == expected
    assert PAPER_CONFIG["containers"]["analysis"] in pulled  # the data stage


# ------------------------------------------------------------------------------------------------
# broken configs stop the dry run with a message naming the key
# ------------------------------------------------------------------------------------------------

def broken_toy(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(TOY_CONFIG_FILE.read_text())
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _set(path, value):
    def edit(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(path):
    def edit(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


def test_broken_toy_config_stops_the_dry_run(tmp_path):
    """One file with four schema problems: all four are reported, each naming its key."""
    def edit(cfg):
        _set(("stage2", "lr"), "abc")(cfg)             # wrong type
        _set(("stage2", "lrr"), 1.0)(cfg)              # unknown key
        _set(("models", "teacher"), None)(cfg)         # missing value
        # present in config.yaml: with snakemake's merge it would leak in and hide the omission
        _delete(("stage2", "n_checkpoints"))(cfg)      # missing key

    result = snakemake("-n", "--configfile", str(broken_toy(tmp_path, edit)))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ConfigError" in out and "Job stats" not in out
    source = str(tmp_path / "config.yaml")
    for message in ("stage2.lr: 'abc' is not of type 'number'",
                    "unknown key 'stage2.lrr' (allowed: ",
                    "models.teacher: no value given (expected string)",
                    "missing required key 'stage2.n_checkpoints'"):
        assert f"{source}: {message}" in out, out


def test_missing_toy_model_stops_the_dry_run(tmp_path):
    path = broken_toy(tmp_path, _set(("models", "student"), "results/toy/elsewhere/student"))
    result = snakemake("-n", "--configfile", str(path))
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in out
    assert ("models.student: local model directory 'results/toy/elsewhere/student' does not "
            "exist and is not built by rule toy_world") in out, out


# ------------------------------------------------------------------------------------------------
# the SLURM profile plans every paper-scale stage with the intended resources
# ------------------------------------------------------------------------------------------------

def planned_jobs(output: str) -> list[tuple[str, dict[str, str], str]]:
    """(rule, resources, shell command) of every job block of a dry run's output."""
    jobs = []
    for block in re.split(r"^\[[^\]]+\]\s*$", output, flags=re.M):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if not rule or not res:
            continue
        resources = dict(item.split("=", 1) for item in res.group(1).split(", "))
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs.append((rule.group(1), resources, shell.group(1) if shell else ""))
    return jobs


#: the FSDP2 training jobs (rock launch: torchrun on one node or srun + torchrun on several)
TRAINING = ("stage1", "stage2", "freeze_train")


def test_slurm_profile_dry_run_plans_every_stage_with_its_resources(monkeypatch):
    """`snakemake --profile workflow/profiles/slurm -n` with config.yaml: every rule of the paper
    scale is planned, each job asks for config.yaml's gpu/mem_mb/runtime of its resource group, GPU
    jobs go to the GPU partition with a gpu_model, CPU jobs to the CPU partition, and multi-GPU
    training goes through `rock launch` (one torchrun rank per GPU)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and "--nv" in profile["apptainer-args"]
    # the traps of a real cluster (issue 15): sacct-less clusters hang the plugin's default status
    # query, retries repeat deterministic failures, multi-GPU jobs must stay on one node
    assert profile["slurm-status-command"] == "squeue"
    assert profile["retries"] == 0 and profile["slurm-requeue"] is True
    assert profile["default-resources"]["nodes"] == 1
    assert "envvars" not in profile                  # HF_HOME is not required (the toy needs none)
    monkeypatch.delenv("HF_HOME", raising=False)
    result = snakemake("-n", "-p", "--profile", "workflow/profiles/slurm", path_prefix=REPO / "tests" / "bin")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    jobs = planned_jobs(out)
    jobs = [job for job in jobs if job[0] != "all"]
    planned = {rule for rule, _, _ in jobs}
    # every rule except the toy world and stats_hidden (with config.yaml, stats_score writes the
    # hidden states of the detection checkpoint itself)
    assert planned == set(RULES) - {"toy_world", "stats_hidden"}, sorted(set(RULES) ^ planned)
    for rule, res, shell in jobs:
        group = re.search(r'job_resources\("(\w+)"\)', RULES[rule][1]).group(1)
        want = PAPER_CONFIG["resources"][group]
        assert int(res["gpu"]) == want["gpu"], (rule, res)
        assert int(res["mem_mb"]) == want["mem_mb"], (rule, res)
        assert int(res["runtime"]) == want["runtime"], (rule, res)
        assert res["slurm_account"] == "CHANGE_ME_ACCOUNT", (rule, res)
        assert res["nodes"] == "1", (rule, res)
        assert "gres" not in res, (rule, res)           # never both --gres and --gpus
        if want["gpu"]:
            assert res["slurm_partition"] == "CHANGE_ME_GPU_PARTITION" and res["gpu_model"] == "h100", (rule, res)
            assert rule in profile["set-resources"], f"{rule}: no set-resources entry in the SLURM profile"
        else:
            assert res["slurm_partition"] == "CHANGE_ME_CPU_PARTITION" and "gpu_model" not in res, (rule, res)
        if rule in TRAINING:  # rock launch: torchrun, one rank per GPU, after the batch check
            batch = PAPER_CONFIG["stage1" if rule == "stage1" else "stage2"]["global_batch"]
            assert shell.startswith(f"rock launch --gpus-per-node {want['gpu']} --global-batch {batch} -- "), shell
        elif want["gpu"]:  # every GPU job gets its own devices and reads the model cache offline
            assert shell.startswith(f"rock gpus {want['gpu']} -- "), (rule, shell)
    # hub models are downloaded once, on the submit host, before the jobs that load them
    assert sum(r == "download_model" for r, _, _ in jobs) == 2
    assert re.search(r"^localrules:\s*\n\s+download_model,", (RULES_DIR / "download.smk").read_text(), re.M)
    for rule in TRAINING:  # multi-GPU training: one process per GPU (rock/launch.py)
        assert any(r == rule and "rock launch" in s for r, _, s in jobs), rule


# ------------------------------------------------------------------------------------------------
# one GPU machine: the local-gpu profile, and the command-line form of --nv
# ------------------------------------------------------------------------------------------------

def test_local_gpu_profile_plans_gpu_jobs_behind_the_slot_wrapper():
    profile = yaml.safe_load((REPO / "workflow/profiles/local-gpu/config.yaml").read_text())
    assert profile["software-deployment-method"] == "apptainer" and profile["apptainer-args"] == "--nv"
    assert profile["resources"]["gpu"] == 8
    result = snakemake("-n", "-p", "--profile", "workflow/profiles/local-gpu", path_prefix=REPO / "tests" / "bin")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    evaluations = [s for r, _, s in planned_jobs(out) if r == "evaluate"]
    assert len(evaluations) == 4 and all(s.startswith("rock gpus 2 -- rock evaluate ") for s in evaluations)


def test_nv_on_the_command_line_needs_the_equals_sign():
    """The README's old `--singularity-args "--nv"` does not parse; `--singularity-args=--nv` does."""
    bad = snakemake("-n", "--sdm", "apptainer", "--singularity-args", "--nv", "--resources", "gpu=8",
                    path_prefix=REPO / "tests" / "bin")
    assert bad.returncode != 0 and "expected one argument" in bad.stderr
    good = snakemake("-n", "--sdm", "apptainer", "--singularity-args=--nv", "--resources", "gpu=8",
                     path_prefix=REPO / "tests" / "bin")
    assert good.returncode == 0, (good.stdout + good.stderr)[-3000:]
    commands = [line.strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.strip().startswith("snakemake ")]
    assert not any('--singularity-args "--nv"' in c for c in commands)
    assert any("--singularity-args=--nv" in c for c in commands)


def test_make_toy_unlocks_only_a_stale_lock(tmp_path):
    """`make toy` runs `snakemake --unlock` first when a killed run left .snakemake/locks behind and
    no Snakemake process runs in the directory; with one running, the lock stays (fake snakemake)."""
    import shutil

    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("")
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport sys, time\n"
                    f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                    "if sys.argv[1:] == ['sleep']:\n    time.sleep(60)\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    stale = subprocess.run(["make", "-s", "unlock-stale"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert "stale Snakemake lock" in stale.stdout, stale.stdout + stale.stderr
    assert calls.read_text() == "--profile workflow/profiles/toy --unlock\n"
    running = subprocess.Popen([str(fake), "sleep"], cwd=tmp_path, env=env)
    try:
        time.sleep(0.5)
        busy = subprocess.run(["make", "-s", "unlock-stale"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        running.kill()
        running.wait()
    assert f"Snakemake runs here (pid {running.pid})" in busy.stdout, busy.stdout
    assert calls.read_text().count("--unlock") == 1


@pytest.mark.parametrize("rst", sorted((REPO / "workflow" / "report").glob("*.rst")), ids=lambda p: p.name)
def test_report_captions_are_valid_restructuredtext(rst):
    """`snakemake --report` renders these captions with docutils: an unescaped |Delta| is an
    "Undefined substitution" error in the report log."""
    import io

    import docutils.core

    errors = io.StringIO()
    docutils.core.publish_string(rst.read_text(), writer="html",
                                 settings_overrides={"warning_stream": errors, "report_level": 2})
    assert errors.getvalue() == "", errors.getvalue()


# ------------------------------------------------------------------------------------------------
# a --config override re-plans only the jobs that use the value (job_settings in common.smk)
# ------------------------------------------------------------------------------------------------

def _finished_toy_run(tmp_path, **freeze):
    """A finished toy run standing in as empty files: every output of the DAG, recorded by
    `snakemake --touch`. Returns the base snakemake arguments."""
    cfg = yaml.safe_load(TOY_CONFIG_FILE.read_text())
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["freeze"].update(freeze)
    for role in ("teacher", "student"):
        cfg["models"][role] = str(tmp_path / "run" / "world" / role)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    base = ["-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
            str(tmp_path / "config.yaml"), "--cores", "1"]
    summary = snakemake(*base, "-n", "--summary")
    assert summary.returncode == 0, summary.stderr[-3000:]
    outputs = [Path(line.split("\t")[0]) for line in summary.stdout.splitlines()]
    outputs = [out for out in outputs if tmp_path in out.parents]   # not the header or log lines
    assert len(outputs) > 100, summary.stdout[-3000:]
    for out in outputs:
        if out.suffix:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.touch()
        else:  # directory() outputs: models, checkpoints
            out.mkdir(parents=True, exist_ok=True)
    touched = snakemake(*base, "--touch", "-F")
    assert touched.returncode == 0, touched.stderr[-3000:]
    assert "Nothing to be done" in snakemake(*base, "-n").stdout
    return cfg, base


def _planned(base, override):
    result = snakemake(*base, "-n", "--config", override)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(job_counts(result.stdout))


_AFTER_EVALUATION = {"knockout_gather", "knockout_analyze", "freeze_report", "report_check",
                     "report_render", "all"}


def test_overriding_an_evaluation_value_replans_only_the_jobs_that_use_it(tmp_path):
    """`--config evaluation=...` plans the jobs that read that value (and what reads their outputs),
    never the toy world, data, teacher sampling, stage 1, stage 2 or the analysis. Before
    job_settings, every job's params held the config file, whose name (a content hash) any override
    changes, so the whole DAG was planned again. The IFEval metric is not read by the freeze
    evaluation (AIME/HMMT), so no freeze job runs again (before freeze_eval_settings: every freeze
    evaluation, and through the temp() checkpoints every freeze training run). A value the freeze
    evaluation does read (dtype) re-scores the checkpoints, which temp() deleted, so the
    regimes train again: freeze.keep_checkpoints (next test) avoids that."""
    cfg, base = _finished_toy_run(tmp_path)
    metric = {"prompt_level_strict_acc": "prompt_level_loose_acc"}.get(cfg["evaluation"]["ifeval_metric"],
                                                                        "prompt_level_strict_acc")
    planned = _planned(base, f'evaluation={{"ifeval_metric": "{metric}"}}')
    assert {"evaluate", "knockout_shard"} <= planned, planned
    assert planned <= {"evaluate", "knockout_shard"} | _AFTER_EVALUATION, planned
    assert not {p for p in planned if p.startswith("freeze_train") or p.startswith("freeze_evaluate")}
    planned = _planned(base, 'evaluation={"dtype": "bfloat16"}')
    assert {"evaluate", "freeze_evaluate", "freeze_evaluate_start", "freeze_train"} <= planned, planned


def test_kept_freeze_checkpoints_are_rescored_without_training(tmp_path):
    """freeze.keep_checkpoints: true: a changed evaluation value re-scores the kept checkpoints;
    no freeze regime is trained again."""
    _, base = _finished_toy_run(tmp_path, keep_checkpoints=True)
    planned = _planned(base, 'evaluation={"dtype": "bfloat16"}')
    assert {"evaluate", "freeze_evaluate", "freeze_evaluate_start"} <= planned, planned
    assert "freeze_train" not in planned, planned
    assert planned <= {"evaluate", "knockout_shard", "freeze_evaluate", "freeze_evaluate_start"} | _AFTER_EVALUATION


def test_jobs_are_given_their_rules_inputs():
    """Issue 16: detection (stability, figure, clusters, compare), geometry, freeze training and the
    freeze report read the files their rule declares: the printed command names every named input of the rule
    as `--in NAME=PATH` (rock.job_files), the geometry inputs at the toy's configured checkpoints."""
    result = snakemake("-n", "-p", "-F", "--profile", "workflow/profiles/toy")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    commands = [line for line in out.splitlines() if line.lstrip().startswith(("rock ", "python -m rock"))
                or " rock " in line]
    expected = {
        "detect stability": ["post", "ranking"],   # pre too in context mode
        "detect figure": ["ranking", "density", "sweep", "summary"],
        "detect clusters": ["ranking", "tokenizer"],
        "detect compare": ["rankings"],
        "geometry gradients": ["trajectories", "tokens", "rocks", "teacher"],
        "geometry analyze": ["per_type", "tokens", "early", "late", "pre", "rocks", "selection"],
        "freeze train": ["student", "prompts", "rocks", "ranking", "info", "teacher"],
        "freeze report": ["evals", "logs", "counts", "control"],
    }
    for action, names in expected.items():
        lines = [c for c in commands if f"rock {action} " in c or f"-- {action} " in c]  # rock launch
        assert lines, f"no `rock {action}` job planned"
        for line in lines:
            for name in names:
                assert re.search(rf"--in {name}=results/toy/\S+", line), (action, name, line)
    geometry = next(c for c in commands if "rock geometry analyze " in c)
    toy = yaml.safe_load(TOY_CONFIG_FILE.read_text())["geometry"]
    assert f"--in early=results/toy/stats/tokens_{toy['early']}.parquet" in geometry
    assert f"--in late=results/toy/stats/tokens_{toy['late']}.parquet" in geometry
