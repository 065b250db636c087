"""Data stage (rock.data): slicing, normalising and validating rows, hub loading, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rock import data, paths
from rock.cli import main as rock_main
from rock.errors import ConfigError, DataError


def conv(text: str) -> list[dict]:
    return [{"from": "human", "value": text}, {"from": "gpt", "value": "answer"}]


def pool_rows(n_math: int, *, other_every: int = 3) -> list[dict]:
    """n_math math rows, with a code row before every `other_every`-th math row."""
    rows = []
    for i in range(n_math):
        if i % other_every == 0:
            rows.append({"domain": "code", "conversations": conv(f"code task {i}")})
        rows.append({"domain": "math", "conversations": conv(f"math {i}")})
    return rows


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def numbered(rows):
    return list(enumerate(rows, start=1))


# --- prompt pool -----------------------------------------------------------------------------

def test_pool_filters_domain_and_slices_positions():
    cfg = data.PoolConfig(source=data.Source(jsonl="pool.jsonl"), stage1=(0, 3), stage2=(3, 5))
    prompts = data.pool_prompts(numbered(pool_rows(10)), cfg, file="pool.jsonl")
    # reading stops at the largest slice end, and only math rows count
    assert prompts == [f"math {i}" for i in range(5)]
    assert data.slice_rows(prompts, 3, 5) == [{"id": "prompt-3", "prompt": "math 3"},
                                              {"id": "prompt-4", "prompt": "math 4"}]


def test_pool_stops_reading_after_last_position():
    consumed = []

    def rows():
        for line, row in numbered(pool_rows(100, other_every=1000)):
            consumed.append(line)
            yield line, row

    cfg = data.PoolConfig(source=data.Source(jsonl="p"), stage1=(0, 2), stage2=(2, 4))
    data.pool_prompts(rows(), cfg, file="p")
    assert len(consumed) == 5  # 1 code row + 4 math rows, not 101


def test_pool_accepts_role_content_turns_and_plain_strings():
    rows = [{"domain": "math", "conversations": [{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "u1"}]},
            {"domain": "math", "conversations": "plain prompt"}]
    cfg = data.PoolConfig(source=data.Source(jsonl="p"), stage1=(0, 1), stage2=(1, 2))
    assert data.pool_prompts(numbered(rows), cfg, file="p") == ["u1", "plain prompt"]


def test_pool_without_domain_filter_keeps_every_row():
    cfg = data.PoolConfig(source=data.Source(jsonl="p"), stage1=(0, 1), stage2=(1, 3),
                          domain_field=None, domain=None)
    prompts = data.pool_prompts(numbered(pool_rows(2, other_every=1)), cfg, file="p")
    assert prompts == ["code task 0", "math 0", "code task 1"]


@pytest.mark.parametrize("row, field, message", [
    ({"conversations": conv("x")}, "domain", "missing"),
    ({"domain": "math"}, "conversations", "missing"),
    ({"domain": "math", "conversations": [{"from": "gpt", "value": "only a reply"}]},
     "conversations", "no turn from human or user"),
    ({"domain": "math", "conversations": [{"from": "human", "value": "   "}]},
     "conversations", "empty"),
    ({"domain": "math", "conversations": 7}, "conversations", "got int"),
])
def test_pool_malformed_row_names_file_line_field(row, field, message):
    rows = [{"domain": "math", "conversations": conv("fine")}, row]
    cfg = data.PoolConfig(source=data.Source(jsonl="p"), stage1=(0, 1), stage2=(1, 2))
    with pytest.raises(DataError) as err:
        data.pool_prompts(numbered(rows), cfg, file="pool.jsonl")
    assert str(err.value).startswith(f"pool.jsonl:2: field '{field}'")
    assert message in str(err.value)
    assert (err.value.file, err.value.line, err.value.field) == ("pool.jsonl", 2, field)


def test_pool_too_small_says_how_many():
    cfg = data.PoolConfig(source=data.Source(jsonl="p"), stage1=(0, 4), stage2=(4, 8))
    with pytest.raises(DataError, match=r"only 6 rows with domain == 'math'; the slices need 8"):
        data.pool_prompts(numbered(pool_rows(6)), cfg, file="p")


@pytest.mark.parametrize("s1, s2, message", [
    ((5, 5), (6, 7), "need 0 <= start < end"),
    ((0, 10), (5, 20), "overlap"),
])
def test_pool_config_rejects_bad_slices(s1, s2, message):
    with pytest.raises(ConfigError, match=message):
        data.PoolConfig(source=data.Source(jsonl="p"), stage1=s1, stage2=s2)


def test_source_needs_exactly_one_origin():
    with pytest.raises(ConfigError):
        data.Source()
    with pytest.raises(ConfigError):
        data.Source(hub="a/b", jsonl="x.jsonl")


# --- benchmarks ------------------------------------------------------------------------------

MATH_ROW = {"problem": "What is 1+1?", "solution": "It is $\\boxed{2}$.", "answer": "2",
            "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"}
IFEVAL_ROW = {"key": 1000, "prompt": "Write a haiku. End with 'Bye.'",
              "instruction_id_list": ["startend:end_checker", "punctuation:no_comma"],
              "kwargs": [{"end_phrase": "Bye.", "num_words": None}, {"end_phrase": None}]}


def test_math500_row_kept_in_order():
    assert data.normalise_row("math500", MATH_ROW, file="f", line=1) == MATH_ROW
    assert list(data.normalise_row("math500", MATH_ROW, file="f", line=1)) == \
        ["problem", "solution", "answer", "subject", "level", "unique_id"]


def test_ifeval_row_kept_with_hub_none_kwargs():
    assert data.normalise_row("ifeval", IFEVAL_ROW, file="f", line=1) == IFEVAL_ROW


def test_aime24_maps_capitalised_hub_fields_and_stringifies_answer():
    row = {"ID": "2024-I-1", "Problem": "Find n.", "Solution": "...", "Answer": 204}
    assert data.normalise_row("aime24", row, file="f", line=1) == \
        {"id": "2024-I-1", "problem": "Find n.", "answer": "204"}


def test_hmmt_uses_problem_idx_and_keeps_latex_answer():
    row = {"problem_idx": 7, "problem": "Compute x.", "answer": "\\frac{1}{2}",
           "problem_type": ["Algebra"]}
    assert data.normalise_row("hmmt25", row, file="f", line=3) == \
        {"id": "7", "problem": "Compute x.", "answer": "\\frac{1}{2}"}


def test_aime25_fields():
    row = {"problem": "p", "answer": "33", "id": "0"}
    assert data.normalise_row("aime25", row, file="f", line=1) == {"id": "0", "problem": "p",
                                                                   "answer": "33"}


@pytest.mark.parametrize("name, row, field, message", [
    ("math500", {**MATH_ROW, "level": "Level 3"}, "level", "positive integer"),
    ("math500", {k: v for k, v in MATH_ROW.items() if k != "answer"}, "answer", "missing"),
    ("math500", {**MATH_ROW, "problem": ""}, "problem", "empty"),
    ("ifeval", {**IFEVAL_ROW, "key": "1000"}, "key", "integer"),
    ("ifeval", {**IFEVAL_ROW, "kwargs": [{}]}, "kwargs", "list of 2 objects"),
    ("ifeval", {**IFEVAL_ROW, "instruction_id_list": ["no colon"]}, "instruction_id_list",
     "not an lm-eval instruction id"),
    ("aime24", {"ID": "a", "Problem": "p", "Answer": 1.5}, "Answer", "expected a string"),
    ("aime24", {"ID": "a", "Problem": "p"}, "Answer", "missing"),
    ("aime24", {"Problem": "p", "Answer": 1}, "ID", "missing"),
    ("aime25", {"id": True, "problem": "p", "answer": "1"}, "id", "expected a string"),
    ("hmmt25", {"problem_idx": 1, "problem": None, "answer": "1"}, "problem", "NoneType"),
])
def test_malformed_benchmark_rows(name, row, field, message):
    with pytest.raises(DataError) as err:
        data.normalise_row(name, row, file="raw.jsonl", line=12)
    text = str(err.value)
    assert text.startswith(f"raw.jsonl:12: field '{field}'"), text
    assert message in text


def test_duplicate_ids_rejected_with_both_lines():
    rows = [MATH_ROW, {**MATH_ROW, "problem": "other"}]
    with pytest.raises(DataError, match=r"f:2: field 'unique_id': duplicate .*\(first on line 1\)"):
        data.normalise_benchmark("math500", numbered(rows), file="f")


def test_empty_benchmark_rejected():
    with pytest.raises(DataError, match="no rows"):
        data.normalise_benchmark("aime25", [], file="f")


# --- jsonl reading ---------------------------------------------------------------------------

def test_read_jsonl_skips_blank_lines_and_reports_bad_json(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{broken\n')
    rows = data.read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    assert next(rows) == (3, {"a": 2})
    with pytest.raises(DataError, match=rf"{path}:4: not valid JSON"):
        next(rows)


def test_missing_toy_file_says_how_to_make_it(tmp_path):
    path = paths.world_raw(tmp_path / "results/toy", "aime24")
    with pytest.raises(DataError) as err:
        list(data.read_jsonl(path))
    assert str(path) in str(err.value) and "file not found" in str(err.value)
    assert "rock toy build" in str(err.value)


# --- hub loading (datasets.load_dataset monkeypatched with in-memory datasets) ---------------

@pytest.fixture
def fake_hub(monkeypatch):
    datasets = pytest.importorskip("datasets")
    tables = {
        ("Maxwell-Jia/AIME_2024", "train"): {"ID": ["2024-I-1", "2024-I-2"],
                                             "Problem": ["p1", "p2"], "Solution": ["s", "s"],
                                             "Answer": [204, 25]},
        ("pool/x", "train"): {"domain": ["math", "code", "math", "math"],
                              "conversations": [conv("m0"), conv("c"), conv("m1"), conv("m2")]},
    }
    calls = []

    def load_dataset(name, split=None, streaming=False, **kwargs):
        calls.append((name, split, streaming))
        return datasets.Dataset.from_dict(tables[(name, split)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_benchmark_from_hub(tmp_path, fake_hub):
    out = data.make_benchmark("aime24", data.Source(hub="Maxwell-Jia/AIME_2024", split="train"),
                              paths.benchmark(tmp_path, "aime24"))
    assert out == paths.benchmark(tmp_path, "aime24")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"id": "2024-I-1", "problem": "p1", "answer": "204"},
                    {"id": "2024-I-2", "problem": "p2", "answer": "25"}]
    assert fake_hub == [("Maxwell-Jia/AIME_2024", "train", False)]


def test_prompts_from_hub_streaming(tmp_path, fake_hub):
    cfg = data.PoolConfig(source=data.Source(hub="pool/x", split="train", streaming=True),
                          stage1=(0, 2), stage2=(2, 3))
    written = data.make_prompts(cfg, {1: tmp_path / "p1.jsonl", 2: tmp_path / "p2.jsonl"})
    read = {s: [json.loads(x) for x in p.read_text().splitlines()] for s, p in written.items()}
    assert read == {1: [{"id": "prompt-0", "prompt": "m0"}, {"id": "prompt-1", "prompt": "m1"}],
                    2: [{"id": "prompt-2", "prompt": "m2"}]}
    assert fake_hub == [("pool/x", "train", True)]


def test_hub_malformed_row_names_dataset_and_row(tmp_path, fake_hub, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None, **kw:
                        datasets.Dataset.from_dict({"id": ["a", "b"], "problem": ["p", ""],
                                                    "answer": ["1", "2"]}))
    with pytest.raises(DataError, match=r"hub:math-ai/aime25\[test\]:2: field 'problem': is empty"):
        data.make_benchmark("aime25", data.Source(hub="math-ai/aime25", split="test"),
                            paths.benchmark(tmp_path, "aime25"))
    assert not paths.benchmark(tmp_path, "aime25").exists()


# --- CLI ---------------------------------------------------------------------------------------

def toy_raw(run_dir: Path) -> None:
    write_jsonl(paths.world_raw(run_dir, "openthoughts"), pool_rows(12))
    write_jsonl(paths.world_raw(run_dir, "math500"), [MATH_ROW])
    write_jsonl(paths.world_raw(run_dir, "ifeval"), [IFEVAL_ROW])
    write_jsonl(paths.world_raw(run_dir, "aime24"), [{"ID": "1", "Problem": "p", "Answer": 3}])
    write_jsonl(paths.world_raw(run_dir, "aime25"), [{"id": "1", "problem": "p", "answer": "3"}])
    write_jsonl(paths.world_raw(run_dir, "hmmt25"), [{"problem_idx": 1, "problem": "p",
                                                      "answer": "3"}])


def test_cli_prompts_and_benchmark_from_jsonl(tmp_path):
    run_dir = tmp_path / "run"
    toy_raw(run_dir)
    assert rock_main(["data", "prompts", "--run-dir", str(run_dir), "--jsonl",
                      str(paths.world_raw(run_dir, "openthoughts")),
                      "--stage1", "0", "4", "--stage2", "4", "6"]) == 0
    stage2 = [json.loads(x) for x in paths.prompts(run_dir, 2).read_text().splitlines()]
    assert stage2 == [{"id": "prompt-4", "prompt": "math 4"}, {"id": "prompt-5", "prompt": "math 5"}]
    assert rock_main(["data", "benchmark", "aime24", "--run-dir", str(run_dir), "--jsonl",
                      str(paths.world_raw(run_dir, "aime24"))]) == 0
    assert json.loads(paths.benchmark(run_dir, "aime24").read_text()) == \
        {"id": "1", "problem": "p", "answer": "3"}
    # explicit outputs (what the Snakemake rules pass)
    assert rock_main(["data", "benchmark", "hmmt25", "--jsonl",
                      str(paths.world_raw(run_dir, "hmmt25")), "--out", str(tmp_path / "h.jsonl")]) == 0
    assert json.loads((tmp_path / "h.jsonl").read_text())["id"] == "1"
    assert rock_main(["data", "prompts", "--jsonl", str(paths.world_raw(run_dir, "openthoughts")),
                      "--stage1", "0", "1", "--stage2", "1", "2", "--out1", str(tmp_path / "a"),
                      "--out2", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b").read_text()) == {"id": "prompt-1", "prompt": "math 1"}


def test_cli_all_from_toy_config(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    repo = Path(__file__).resolve().parent.parent
    cfg = yaml.safe_load((repo / "tests/config_toy/config.yaml").read_text())
    cfg["run_dir"] = "run"
    cfg["models"]["teacher"] = "run/world/teacher"
    cfg["models"]["student"] = "run/world/student"
    cfg["data"]["stage1_slice"], cfg["data"]["stage2_slice"] = [0, 5], [5, 12]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    toy_raw(Path("run"))
    assert rock_main(["data", "all", "--config", "c.yaml"]) == 0
    assert len(paths.prompts("run", 1).read_text().splitlines()) == 5
    assert len(paths.prompts("run", 2).read_text().splitlines()) == 7
    for name in paths.BENCHMARKS:
        assert paths.benchmark("run", name).exists()


def test_cli_bad_row_exits_2_with_one_line(tmp_path, capsys):
    path = write_jsonl(tmp_path / "aime25.jsonl", [{"id": "1", "problem": "p"}])
    code = rock_main(["data", "benchmark", "aime25", "--run-dir", str(tmp_path), "--jsonl",
                      str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}:1: field 'answer': missing" in err
    assert not paths.benchmark(tmp_path, "aime25").exists()


# --- slice report: unique prompts and stage-1/stage-2 overlap ----------------------------------

def test_slice_report_counts_repeats_and_overlap(tmp_path, caplog):
    """Pool a b a c | d b d e: stage 1 has 4 rows, 3 unique (a twice); stage 2 has 4 rows, 3 unique
    (d twice); b is in both slices, once in stage 2, so the slices are not separate."""
    texts = ["a", "b", "a", "c", "d", "b", "d", "e"]
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"domain": "math", "conversations": conv(t)} for t in texts])
    cfg = data.PoolConfig(source=data.Source(jsonl=str(pool)), stage1=(0, 4), stage2=(4, 8))
    with caplog.at_level("WARNING", logger="rock.data"):
        data.make_prompts(cfg, {1: tmp_path / "d" / "s1.jsonl", 2: tmp_path / "d" / "s2.jsonl"})
    report = json.loads((tmp_path / "d" / data.PROMPTS_REPORT).read_text())
    assert report == {
        "stage1": {"positions": [0, 4], "rows": 4, "unique_prompts": 3, "repeated_rows": 1},
        "stage2": {"positions": [4, 8], "rows": 4, "unique_prompts": 3, "repeated_rows": 1},
        "overlap_unique_prompts": 1, "stage2_rows_in_stage1": 1, "separate": False}
    assert "1 unique prompts (1 stage-2 rows) also in stage 1" in caplog.text
    # the repeats are written as they are (positions are sliced, not deduplicated)
    assert len((tmp_path / "d" / "s1.jsonl").read_text().splitlines()) == 4


def test_slice_report_separate_slices():
    report = data.slice_report(["a", "b", "b", "c", "d", "d"], (0, 3), (3, 6))
    assert report["stage1"]["unique_prompts"] == 2 and report["stage2"]["unique_prompts"] == 2
    assert report["overlap_unique_prompts"] == 0 and report["stage2_rows_in_stage1"] == 0
    assert report["separate"] is True
