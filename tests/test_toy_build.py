"""``rock toy build``: layout, loadable HF dirs, determinism (a smoke world; the full one in test_toy_workflow)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from rock import cli, paths
from rock.errors import ConfigError
from rock.config import load_config
from rock.toy import accuracy, settings_from

REPO = Path(__file__).resolve().parent.parent
TOY_CONFIG = REPO / "tests" / "config_toy" / "config.yaml"
TINY = {  # a smoke world: seconds, untrained models, every file written
    "threads": 2,                                  # the default path: two pretraining workers
    "tokenizer": {"n_documents": 300, "vocab_size": 450},
    "teacher": {"steps": 3, "batch_size": 8, "warmup_steps": 1, "layers": 1, "hidden": 32,
                "heads": 2, "kv_heads": 1, "intermediate": 64},
    "student": {"steps": 3, "batch_size": 8, "warmup_steps": 1, "layers": 1, "hidden": 16,
                "heads": 2, "kv_heads": 1, "intermediate": 32},
    "sizes": {"openthoughts": 12, "openthoughts_other_domains": 2, "math500": 4, "ifeval": 3,
              "aime24": 2, "aime25": 2, "hmmt25": 2},
    "eval": {"max_new_tokens": 8, "batch_size": 4, "min_margin": -1.0},
}


def _config(tmp_path: Path, seed: int = 0) -> Path:
    """The toy config (every stage reads a whole, schema-checked config) with the smoke world."""
    cfg = yaml.safe_load(TOY_CONFIG.read_text())
    cfg.update(run_dir=str(tmp_path / "run"), seed=seed, toy=TINY)
    cfg["models"]["teacher_system_prompts"] = ["style: so", "style: then"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _hashes(world: Path) -> dict[str, str]:
    return {str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(world.rglob("*")) if p.is_file() and p.name != "world.json"}


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    cfg = _config(tmp)
    assert cli.main(["toy", "build", "--config", str(cfg)]) == 0        # --out default
    assert cli.main(["toy", "build", "--config", str(cfg), "--out", str(tmp / "again")]) == 0
    return paths.world_dir(tmp / "run"), tmp / "again", cfg


def test_layout_follows_rock_paths(two_builds):
    world, _, _ = two_builds
    run_dir = world.parent
    for name in paths.RAW_DATASETS:
        assert paths.world_raw(run_dir, name).is_file()
    for role in ("teacher", "student"):
        d = paths.world_model(run_dir, role)
        assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json"} <= {p.name for p in d.iterdir()}
    assert (paths.world_tokenizer(run_dir) / "tokenizer.json").is_file()
    info = json.loads(paths.world_info(run_dir).read_text())
    assert info["seed"] == 0 and info["sizes"]["math500"] == 4 and info["sizes"]["openthoughts"] == 14
    assert set(info["accuracy_math500"]) == {"teacher", "student"}
    assert info["tokenizer"]["size"] == 450 and info["tokenizer"]["embedding_rows"] == 512
    assert {"corpus", "tokenizer", "pretrain", "pretrain_teacher", "pretrain_student", "datasets",
            "accuracy", "total"} <= set(info["timings"])
    assert not list(run_dir.glob(".world.*"))                  # no temporary directory left


def test_same_seed_gives_identical_files(two_builds):
    world, again, _ = two_builds
    first, second = _hashes(world), _hashes(again)
    assert len(first) >= 20 and first == second
    a, b = (json.loads((d / "world.json").read_text()) for d in (world, again))
    a.pop("timings"), b.pop("timings")
    assert a == b                                              # world.json differs only in timings


def test_another_seed_gives_other_weights(two_builds, tmp_path):
    world, _, _ = two_builds
    cfg = _config(tmp_path, seed=1)
    assert cli.main(["toy", "build", "--config", str(cfg)]) == 0
    other = _hashes(paths.world_dir(tmp_path / "run"))
    first = _hashes(world)
    assert other["teacher/model.safetensors"] != first["teacher/model.safetensors"]
    assert other["raw/math500.jsonl"] != first["raw/math500.jsonl"]


def test_models_load_with_auto_classes(two_builds):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world, _, _ = two_builds
    for role, hidden in (("teacher", 32), ("student", 16)):
        tok = AutoTokenizer.from_pretrained(str(world / role))
        model = AutoModelForCausalLM.from_pretrained(str(world / role))
        assert type(model).__name__ == "Qwen3ForCausalLM"
        assert model.config.hidden_size == hidden and model.config.vocab_size == 512
        assert model.config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
        assert model.generation_config.do_sample is False


def load_settings(path, overrides=()):
    """What ``rock toy build --config path --set ...`` reads (rock.config.stage_config, then this)."""
    return settings_from(load_config(path), overrides, path)


def test_settings_errors_name_the_file_and_key(tmp_path):
    cfg = _config(tmp_path)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_settings(cfg, ["teacher.steps"])
    with pytest.raises(ConfigError, match=r"config.yaml: toy.teacher: unknown key"):
        load_settings(cfg, ["teacher.stepz=3"])
    assert load_settings(cfg, ["teacher.steps=9"])["toy"].teacher.steps == 9
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="missing required key 'run_dir'"):
        load_settings(bad)


def test_last_boxed_and_integer_match():
    assert accuracy.last_boxed("a \\boxed{1} b $\\boxed{\\frac{1}{2}}$") == "\\frac{1}{2}"
    assert accuracy.last_boxed("no box") is None and accuracy.last_boxed("\\boxed{12") is None
    assert accuracy.is_correct("**Answer:** $\\boxed{42}$", "42")
    assert accuracy.is_correct("The answer is \\boxed{ 42 }.", 42)
    assert not accuracy.is_correct("\\boxed{41} then \\boxed{43}", 42)
    assert not accuracy.is_correct("\\boxed{forty-two}", 42)


# The full toy-config build (teacher beats student by 0.3, answers end within 96 tokens, same seed ->
# same bytes) is checked on the world the toy workflow builds: tests/test_toy_workflow.py.


def test_schema_lists_exactly_the_toy_config_keys():
    """workflow/schemas/config.schema.yaml's toy section and ToyConfig stay in sync; the defaults
    validate."""
    import dataclasses

    import jsonschema

    from rock import config as rc
    from rock.toy.config import ToyConfig

    schema = rc.load_schema()
    toy = schema["properties"]["toy"]

    def resolve(node):
        ref = node.get("$ref")
        return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node

    def check(cls, node):
        props = resolve(node)["properties"]
        assert set(props) == {f.name for f in dataclasses.fields(cls)}, cls.__name__
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if dataclasses.is_dataclass(default):
                check(type(default), props[f.name])

    check(ToyConfig, toy)
    validator = jsonschema.Draft202012Validator({**toy, "$defs": schema["$defs"]})
    validator.validate(ToyConfig().to_dict())
    full = yaml.safe_load(TOY_CONFIG.read_text()).get("toy", {})
    validator.validate(full)
    ToyConfig.from_dict(full)                 # the toy config's own section parses


def test_sequential_build_equals_parallel_build(two_builds, tmp_path):
    """threads 1 (one process) and 2 (two pretraining workers) both train with 1 torch thread."""
    world, _, cfg = two_builds
    assert cli.main(["toy", "build", "--config", str(cfg), "--out", str(tmp_path / "seq"),
                     "--set", "threads=1"]) == 0
    assert _hashes(tmp_path / "seq") == _hashes(world)


def test_a_teacher_below_the_margin_trains_another_round_then_fails(tmp_path):
    """toy.eval.teacher_rounds: an unreachable margin (1.0) runs round 2 (the teacher's weights
    change, its summary records the round) and still fails the build with ModelError; with one
    round the same world stops after round 1. A world that passes round 1 never trains more
    (the golden seed: test_toy_workflow)."""
    from rock.errors import ModelError
    from rock.toy.build import build_world
    from rock.toy.config import ToyConfig

    base = settings_from(load_config(_config(tmp_path)))
    worlds = {}
    for rounds in (1, 2):
        cfg = ToyConfig.from_dict({**TINY, "eval": {**TINY["eval"], "min_margin": 1.0,
                                                    "teacher_rounds": rounds}})
        out = tmp_path / f"rounds{rounds}"
        with pytest.raises(ModelError, match="not 1.0 above"):
            build_world(out, cfg, 0, base["system_prompts"])
        worlds[rounds] = json.loads((out / "world.json").read_text())
    one, two = worlds[1]["pretraining"]["teacher"], worlds[2]["pretraining"]["teacher"]
    assert "later_rounds" not in one
    assert [r["round"] for r in two["later_rounds"]] == [2] and two["later_rounds"][0]["steps"] == 3
    assert _hashes(tmp_path / "rounds1")["teacher/model.safetensors"] != \
        _hashes(tmp_path / "rounds2")["teacher/model.safetensors"]
    assert _hashes(tmp_path / "rounds1")["student/model.safetensors"] == \
        _hashes(tmp_path / "rounds2")["student/model.safetensors"]
