"""Task definitions (rock/evaluate/tasks/*.yaml), row normalisation and math-verify off the main thread."""

from __future__ import annotations

import json
import threading
import time

import pytest

from rock.errors import ConfigError, DataError
from rock.evaluate.benchmarks import TASKS_DIR, build_tasks, local_task_yaml, task_name
from rock.evaluate.config import EvaluationConfig, from_section
from rock.evaluate.scoring import normalise_math_row
from rock.evaluate.verify import MathVerifier, check_answer
from rock.paths import BENCHMARKS

MATH_ROWS = [
    {"problem": "What is $2+3$?", "solution": "5", "answer": "5", "subject": "Algebra", "level": 1,
     "unique_id": "test/algebra/1.json"},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": "1/2", "answer": "\\frac{1}{2}", "subject": "Algebra",
     "level": 2, "unique_id": "test/algebra/2.json"},
]
AIME_ROWS = [{"id": "2024-I-1", "problem": "Find $1+1$.", "answer": "2"},
             {"id": "2024-I-2", "problem": "Find $3 \\cdot 4$.", "answer": "12"}]
IFEVAL_ROWS = [
    {"key": 11, "prompt": "Write a sentence without commas.", "instruction_id_list": ["punctuation:no_comma"],
     "kwargs": [{}]},
    {"key": 12, "prompt": "Answer in lowercase and end with 'bye'.",
     "instruction_id_list": ["change_case:english_lowercase", "startend:end_checker"],
     "kwargs": [{}, {"end_phrase": "bye"}]},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    files = {"math500": _write(d / "math500.jsonl", MATH_ROWS), "ifeval": _write(d / "ifeval.jsonl", IFEVAL_ROWS)}
    for b in ("aime24", "aime25", "hmmt25"):
        files[b] = _write(d / f"{b}.jsonl", AIME_ROWS)
    return files


def test_every_benchmark_has_versioned_yaml_in_both_formats():
    for b in BENCHMARKS:
        for fmt in ("question_answer", "chat_boxed"):
            path = TASKS_DIR / f"{task_name(b, fmt)}.yaml"
            assert path.is_file(), path
    # variants are an include of the plain task plus the delta, not a copy
    assert "include:" in (TASKS_DIR / "rock_math500_chat.yaml").read_text()


@pytest.mark.parametrize("fmt", ["question_answer", "chat_boxed"])
def test_local_tasks_render_prompts_and_normalise_rows(data, fmt):
    ts = build_tasks(list(BENCHMARKS), prompt_format=fmt, data_files=data,
                     generation_kwargs=EvaluationConfig(temperature=1.0, top_p=1.0, max_gen_toks=7).generation_kwargs())
    assert ts.apply_chat_template == (fmt == "chat_boxed")
    math = ts.tasks["math500"]
    docs = list(math.eval_docs)
    assert [d["problem_id"] for d in docs] == ["test/algebra/1.json", "test/algebra/2.json"]
    assert docs[1]["answer"] == "\\frac{1}{2}"
    text = math.doc_to_text(docs[0])
    if fmt == "question_answer":
        assert text == "Question: What is $2+3$?\nAnswer:"
    else:
        assert text.startswith("What is $2+3$?\n") and "\\boxed{}" in text
    aime = ts.tasks["aime24"]
    assert [d["problem_id"] for d in aime.eval_docs] == ["2024-I-1", "2024-I-2"]
    assert ts.tasks["ifeval"].doc_to_text(ts.tasks["ifeval"].eval_docs[0]) == IFEVAL_ROWS[0]["prompt"]
    for task in ts.tasks.values():  # config overrides reach every task, stop strings stay the YAML's
        gk = task.config.generation_kwargs
        assert (gk["temperature"], gk["top_p"], gk["max_gen_toks"], gk["do_sample"]) == (1.0, 1.0, 7, True)
    assert ts.versions["math500"] == 1.0


def test_hub_row_formats_are_normalised():
    # Maxwell-Jia/AIME_2024, MathArena/hmmt_feb_2025, math-ai/aime25 column spellings
    assert normalise_math_row({"ID": "2024-II-4", "Problem": "p", "Solution": "s", "Answer": 33}, 0) == \
        {"problem_id": "2024-II-4", "problem": "p", "answer": "33"}
    assert normalise_math_row({"problem_idx": 7, "problem": "q", "answer": "\\frac{3}{4}"}, 0)["problem_id"] == "7"
    assert normalise_math_row({"problem": "r", "answer": " 5 "}, 3) == {"problem_id": "3", "problem": "r", "answer": "5"}
    with pytest.raises(DataError, match="answer"):
        normalise_math_row({"problem": "no answer"}, 4)


def test_local_task_yaml_includes_registered_definition(tmp_path, data):
    path = local_task_yaml("aime25", "question_answer", data["aime25"], tmp_path, name="bench_aime25")
    text = path.read_text()
    assert "rock_aime25.yaml" in text and "dataset_path: json" in text and "bench_aime25" in text
    with pytest.raises(DataError, match="not found"):
        local_task_yaml("aime25", "question_answer", tmp_path / "missing.jsonl", tmp_path)


def test_config_checks():
    with pytest.raises(ConfigError, match="backend"):
        EvaluationConfig(backend="tgi")
    with pytest.raises(ConfigError, match="unknown key"):
        from_section({"n_run": 3})
    cfg = from_section({"n_runs": 3, "benchmarks": ["math500"]}, seed=10, n_runs=None, temperature=0.0)
    assert cfg.seeds == [10, 11, 12]
    assert cfg.generation_kwargs() == {"do_sample": False, "temperature": 0.0, "max_gen_toks": 16384}


@pytest.mark.parametrize("gold,response,ok", [
    ("5", "So the answer is $\\boxed{5}$.", True),
    ("5", "The answer is \\boxed{6}.", False),
    ("\\frac{1}{2}", "**Answer:** $\\boxed{0.5}$", True),
    ("\\frac{14}{3}", "$\\boxed{\\dfrac{14}{3}}$", True),
    ("204", "", False),
])
def test_check_answer(gold, response, ok):
    assert check_answer(gold, response) is ok


def _slow_or_check(gold: str, response: str) -> bool:
    """Worker function for the timeout test: 'SLOW' never finishes in time."""
    if gold == "SLOW":
        time.sleep(60)
    return check_answer(gold, response)


def test_verifier_works_from_non_main_thread_and_survives_timeouts():
    verifier = MathVerifier(timeout_s=3.0, fn=_slow_or_check)
    results = {}

    def job():
        results["right"] = verifier("12", "$\\boxed{12}$")
        results["wrong"] = verifier("12", "$\\boxed{13}$")
        t0 = time.perf_counter()
        results["slow"] = verifier("SLOW", "x")
        results["slow_s"] = time.perf_counter() - t0
        results["after"] = verifier("\\frac{1}{2}", "\\boxed{0.5}")

    try:
        th = threading.Thread(target=job)
        th.start()
        th.join(timeout=120)
        assert not th.is_alive()
    finally:
        verifier.close()
    assert results["right"] is True and results["wrong"] is False
    assert results["slow"] is False and results["slow_s"] < 10  # wall-clock limit, not the 60 s sleep
    assert results["after"] is True and verifier.n_timeouts == 1  # pool restarted after the timeout


def test_math_verify_in_a_thread_needs_the_worker():
    """Why the worker exists: math-verify's own signal timeout refuses non-main threads."""
    from math_verify import parse

    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", _try(parse, "$\\boxed{5}$")))
    th.start()
    th.join()
    assert isinstance(box["r"], ValueError) and "thread" in str(box["r"])


def _try(fn, *a):
    try:
        return fn(*a)
    except Exception as err:  # noqa: BLE001 - the point is what it raises
        return err


def test_hub_datasets_match_the_data_stage_config():
    """The task YAMLs read the same hub datasets and splits as config.yaml's data section."""
    from pathlib import Path

    import yaml
    from lm_eval.tasks import TaskManager

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    index = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).task_index
    for bench, entry in config["data"]["benchmarks"].items():
        for fmt in ("question_answer", "chat_boxed"):
            from lm_eval.tasks._yaml_loader import load_yaml

            cfg = load_yaml(index[task_name(bench, fmt)].yaml_path, resolve_func=False)
            assert (cfg["dataset_path"], cfg["test_split"]) == (entry["dataset"], entry["split"]), bench
