"""Config validation (rock.config + workflow/schemas/config.schema.yaml)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rock import config as rc
from rock import paths
from rock.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "config.yaml"
TOY = REPO / "tests" / "config_toy" / "config.yaml"


@pytest.fixture(scope="module")
def schema():
    return rc.load_schema()


@pytest.fixture
def paper():
    return rc.load_yaml(PAPER)


@pytest.fixture
def toy():
    return rc.load_yaml(TOY)


def problems(cfg, schema, source="c.yaml") -> str:
    with pytest.raises(ConfigError) as err:
        rc.validate_config(cfg, source, schema=schema)
    return str(err.value)


def test_shipped_configs_are_valid(paper, toy, schema):
    rc.validate_config(paper, "config.yaml", schema=schema)
    rc.validate_config(toy, "tests/config_toy/config.yaml", schema=schema)


def test_toy_config_has_exactly_the_paper_keys(paper, toy):
    """Same keys at every level (except the toy-only `toy` section); only values differ."""
    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k != "toy":
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(toy) - {"toy"} == keys(paper) - {"toy"}


def test_every_object_in_schema_forbids_unknown_keys(schema):
    """additionalProperties: false at every level, except typed maps (name -> validated value)."""
    open_objects = []

    def walk(node, where):
        if isinstance(node, dict):
            extra = node.get("additionalProperties")
            typed_map = isinstance(extra, dict) and bool(extra)  # values validated by a schema
            if node.get("type") == "object" and extra is not False and not typed_map:
                open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "#")
    assert open_objects == []


def test_wrong_type_names_key_path(paper, schema):
    paper["stage2"]["lr"] = "abc"
    assert problems(paper, schema, "config.yaml") == \
        "config.yaml: stage2.lr: 'abc' is not of type 'number'"


def test_yaml_exponent_without_dot_gets_a_hint(paper, schema):
    paper["stage1"]["lr"] = "2e-5"  # what PyYAML makes of `lr: 2e-5`
    assert "write numbers with a decimal point" in problems(paper, schema)


def test_unknown_key_lists_allowed_keys(paper, schema):
    paper["stage2"]["lrr"] = 1e-6
    text = problems(paper, schema, "config.yaml")
    assert text.startswith("config.yaml: unknown key 'stage2.lrr' (allowed: ")
    assert "lr, " in text and "n_rollouts" in text


@pytest.mark.parametrize("section", [
    # what the stages' own unknown-key checks used to catch (rock.detect.config, rock.knockout.config,
    # rock.distill.config, rock.stats, rock.geometry, rock.freeze.config, rock.evaluate.config):
    # the schema alone catches it now
    ("detection", "context", "gama"), ("detection", "official", "radius"), ("detection", "stability", "size"),
    ("detection", "clusters", "markers"), ("detection", "reference", "rock_id"), ("detection", "top_kk"),
    ("knockout", "n_run"), ("stage1", "kd_ratioo"), ("teacher_samples", "topp"), ("models", "dtyp"),
    ("stats", "n_problem"), ("geometry", "groups", "random"), ("geometry", "early_"), ("toy", "sizes", "x"),
    ("freeze", "windows"), ("freeze", "control", "bins"), ("evaluation", "n_run"),
])
def test_stage_sections_reject_unknown_keys(toy, schema, section):
    *parents, key = section
    node = toy
    for part in parents:
        node = node[part]
    node[key] = 1
    dotted = ".".join(section)
    text = problems(toy, schema, "t.yaml")
    assert text.startswith(f"t.yaml: unknown key '{dotted}' (allowed: ") and "\n" not in text


def test_from_dict_types_values_and_merges_nested_defaults():
    """One from_dict for every stage's dataclass: an int becomes the float a field holds, a nested
    dataclass keeps its own defaults, __post_init__ errors get the section path in front."""
    from dataclasses import dataclass, field

    @dataclass
    class Inner:
        a: int = 1
        b: float = 0.5

        def __post_init__(self):
            if self.a < 0:
                raise ConfigError("a: must be >= 0")

    @dataclass
    class Outer:
        lr: float = 0.1
        name: str = "x"
        limit: int | None = None
        inner: Inner = field(default_factory=lambda: Inner(a=7))

    got = rc.from_dict(Outer, {"lr": 2, "inner": {"b": 1}, "limit": 3}, "sec")
    assert got == Outer(lr=2.0, limit=3, inner=Inner(a=7, b=1.0)) and isinstance(got.lr, float)
    assert rc.from_dict(Outer, None, "sec", name="y", lr=None) == Outer(name="y")
    with pytest.raises(ConfigError, match=r"sec.inner.a: must be >= 0"):
        rc.from_dict(Outer, {"inner": {"a": -1}}, "sec")
    with pytest.raises(ConfigError, match=r"sec.name: expected str, got 3"):
        rc.from_dict(Outer, {"name": 3}, "sec")
    with pytest.raises(ConfigError, match=r"sec: unknown key\(s\) \['lrr'\]"):
        rc.from_dict(Outer, {"lrr": 3}, "sec")


def test_unknown_top_level_section(paper, schema):
    paper["stage3"] = {}
    assert problems(paper, schema).startswith("c.yaml: unknown key 'stage3' (allowed: ")


def test_missing_required_key(paper, schema):
    del paper["models"]["teacher"]
    assert problems(paper, schema, "config.yaml") == \
        "config.yaml: missing required key 'models.teacher'"


def test_missing_value(paper, schema):
    paper["models"]["student"] = None  # `student:` with nothing after it
    assert problems(paper, schema) == "c.yaml: models.student: no value given (expected string)"


@pytest.mark.parametrize("path, value, message", [
    (("stage1", "kd_ratio"), 1.5, "stage1.kd_ratio: 1.5 is greater than the maximum of 1"),
    (("stage2", "lr"), 0, "stage2.lr: 0 is less than or equal to the minimum of 0"),
    (("stage2", "n_rollouts"), 2.5, "stage2.n_rollouts: 2.5 is not of type 'integer'"),
    (("stage2", "gradient_checkpointing"), "yes", "is not of type 'boolean'"),
    (("scale",), "huge", "scale: 'huge' is not one of ['paper', 'toy']"),
    (("teacher_samples", "backend"), "sglang", "is not one of ['hf', 'vllm']"),
    (("data", "stage1_slice"), [0, 10, 20], "data.stage1_slice: Expected at most 2 items"),
    (("data", "stage1_slice"), [-1, 10], "data.stage1_slice[0]: -1 is less than the minimum of 0"),
    (("containers", "train"), "my image", "containers.train: 'my image' does not match"),
    (("resources", "stage2", "gpu"), -1, "resources.stage2.gpu: -1 is less than the minimum of 0"),
])
def test_ranges_and_enums(paper, schema, path, value, message):
    node = paper
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert message in problems(paper, schema)


def test_slice_start_must_precede_end(paper, schema):
    paper["data"]["stage2_slice"] = [30000, 20000]
    assert "data.stage2_slice: start 30000 must be smaller than end 20000" in problems(paper, schema)


def test_overlapping_slices(paper, schema):
    paper["data"]["stage2_slice"] = [19000, 30000]
    assert "overlap" in problems(paper, schema)


def test_evaluated_benchmark_needs_data_entry(paper, schema):
    del paper["data"]["benchmarks"]["hmmt25"]
    assert "evaluation.benchmarks: 'hmmt25' has no entry in data.benchmarks" in \
        problems(paper, schema)


def test_domain_field_and_domain_go_together(paper, schema):
    paper["data"]["prompt_pool"]["domain"] = None
    assert "domain_field and domain must both be set or both be null" in problems(paper, schema)


def test_all_problems_reported_at_once(paper, schema):
    paper["stage2"]["lr"] = "abc"
    paper["stage2"]["lrr"] = 1
    del paper["seed"]
    text = problems(paper, schema)
    assert text.startswith("3 problems:")
    assert len(text.splitlines()) == 4


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\nstage2:\n  lr: 1.0\n  lr: 2.0\n")
    with pytest.raises(ConfigError, match=r"c.yaml:4: duplicate key 'lr' \(first defined on line 3\)"):
        rc.load_yaml(path)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        rc.load_config(tmp_path / "nope.yaml")


# --- models ---------------------------------------------------------------------------------------

def test_paper_models_are_hub_ids(paper):
    refs = [rc.resolve_model(paper, role, "config.yaml") for role in rc.MODEL_ROLES]
    assert [(r.name, r.kind, r.is_file_input) for r in refs] == [
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", "hub", False),
        ("Qwen/Qwen3-4B-Instruct-2507", "hub", False)]


def test_toy_models_are_built_by_toy_world(toy):
    ref = rc.resolve_model(toy, "teacher", "toy.yaml")
    assert (ref.kind, ref.is_file_input) == ("toy_world", True)
    assert Path(ref.name) == paths.world_model(toy["run_dir"], "teacher")


def test_toy_model_elsewhere_must_exist(toy, tmp_path):
    toy["models"]["student"] = str(tmp_path / "students" / "mine")
    with pytest.raises(ConfigError) as err:
        rc.resolve_model(toy, "student", "toy.yaml")
    text = str(err.value)
    assert text.startswith("toy.yaml: models.student: local model directory")
    assert "not built by rule toy_world (which writes results/toy/world/student)" in text
    (tmp_path / "students" / "mine").mkdir(parents=True)
    assert rc.resolve_model(toy, "student", "toy.yaml").kind == "local"


def test_paper_missing_local_path_is_an_error(paper):
    paper["models"]["teacher"] = "/checkpoints/nowhere/teacher"
    with pytest.raises(ConfigError, match="neither an existing directory nor a hub id"):
        rc.resolve_model(paper, "teacher", "config.yaml")


def test_paper_local_directory(paper, tmp_path):
    paper["models"]["student"] = str(tmp_path)
    assert rc.resolve_model(paper, "student", "config.yaml").kind == "local"


# --- effective config file ----------------------------------------------------------------------

def test_materialize_is_content_addressed(tmp_path, toy):
    a = rc.materialize(toy, tmp_path)
    b = rc.materialize(copy.deepcopy(toy), tmp_path)
    assert a == b and yaml.safe_load(a.read_text()) == toy
    toy["seed"] = 1
    assert rc.materialize(toy, tmp_path) != a
