"""The hf backend on a tiny real Qwen3: suppression, seeds, one model load, tables, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rock.errors import ConfigError
from rock.evaluate.benchmarks import build_tasks
from rock.evaluate.config import EvaluationConfig
from rock.evaluate.models import RockHFLM, make_lm
from rock.evaluate.runner import Evaluator, summarise
from rock.evaluate.tiny import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]

ROWS = [{"id": f"p{i}", "problem": f"What is $({a}+{b})*{c}$?", "answer": str((a + b) * c)}
        for i, (a, b, c) in enumerate([(1, 2, 3), (4, 5, 2), (2, 2, 5), (7, 1, 3), (3, 6, 4), (9, 9, 2)])]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    model = build_tiny_model(root / "tiny", seed=0)
    (root / "data").mkdir()
    for b in ("math500", "aime24"):
        (root / "data" / f"{b}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return root, model


def _cfg(**kw):
    base = dict(backend="hf", dataset_source="local", n_runs=1, temperature=0.0, max_gen_toks=12,
                batch_size=3, device="cpu", dtype="float32")
    return EvaluationConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def lm(world):
    return make_lm(_cfg(), world[1], record_tokens=True)


def _evaluator(world, lm, **kw):
    cfg = _cfg(**kw)
    ts = build_tasks(["math500"], prompt_format=cfg.prompt_format,
                     data_files={"math500": world[0] / "data" / "math500.jsonl"},
                     generation_kwargs=cfg.generation_kwargs())
    return Evaluator(lm, ts, cfg, model_name="tiny")


def _sampled(lm) -> Counter:
    eos = lm.eot_token_id
    return Counter(t for row in lm.generated_token_ids for t in row if t != eos)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_suppressed_ids_never_appear_and_outputs_change(world, lm, temperature):
    ev = _evaluator(world, lm, temperature=temperature, top_p=1.0)
    base = ev.evaluate_once((), seed=0)["math500"]
    counts = _sampled(lm)
    assert sum(counts.values()) >= 30  # the model really generated something to suppress
    suppress = [t for t, _ in counts.most_common(6)]
    knocked = ev.evaluate_once(suppress, seed=0)["math500"]
    after = _sampled(lm)
    assert sum(after.values()) >= 30
    assert not set(suppress) & set(after), "a suppressed id was generated"
    changed = [b["response"] != k["response"] for b, k in zip(base, knocked)]
    assert sum(changed) >= len(ROWS) - 1
    # switching back restores the unsuppressed policy exactly (greedy) / in distribution (sampled)
    again = ev.evaluate_once((), seed=0)["math500"]
    assert [r["response"] for r in again] == [r["response"] for r in base]


def test_suppress_tokens_is_a_hard_mask(world, lm):
    """transformers' SuppressTokensLogitsProcessor, the mechanism HFLM receives, sets -inf."""
    from transformers.generation.logits_process import SuppressTokensLogitsProcessor

    scores = torch.randn(2, 10)
    out = SuppressTokensLogitsProcessor([3, 7])(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.isneginf(out[:, [3, 7]]).all() and torch.equal(out[:, [0, 1, 2, 4]], scores[:, [0, 1, 2, 4]])


def test_seeds_reach_the_sampler(world, lm):
    ev = _evaluator(world, lm, temperature=1.0, top_p=1.0)
    a = [r["response"] for r in ev.evaluate_once((), seed=0)["math500"]]
    b = [r["response"] for r in ev.evaluate_once((), seed=0)["math500"]]
    c = [r["response"] for r in ev.evaluate_once((), seed=1)["math500"]]
    assert a == b  # same seed, same samples
    assert sum(x != y for x, y in zip(a, c)) >= len(ROWS) - 1  # another seed, other samples


def test_bad_ids_are_rejected(lm):
    with pytest.raises(ConfigError, match="not an int"):
        lm.configure(suppress_token_ids=[10**7])
    with pytest.raises(ConfigError, match="not an int"):
        lm.configure(suppress_token_ids=["12"])
    lm.configure(suppress_token_ids=[__import__("numpy").int64(5)])  # numpy ints from tables are fine
    assert lm.suppress_token_ids == (5,)
    lm.configure()


def test_table_and_pass_at_1(world, lm):
    ev = _evaluator(world, lm, temperature=1.0, top_p=1.0, n_runs=3, seed=4, save_responses=True)
    table = ev.run({"none": [], "k": [lm.tokenizer.convert_tokens_to_ids("5")]})
    assert list(table.columns) == ["model", "task", "problem_id", "run", "seed", "suppression_set", "correct",
                                   "response"]
    assert len(table) == 2 * 3 * len(ROWS)
    assert set(table["seed"]) == {4, 5, 6} and set(table["correct"]) <= {0, 1}
    assert (table.groupby(["suppression_set", "run"]).size() == len(ROWS)).all()
    summary = summarise(table)
    for sid in ("none", "k"):
        g = table[table.suppression_set == sid]
        per_run = [g[g.run == r].correct.mean() for r in range(3)]
        s = summary["math500"][sid]
        assert s["pass_at_1_per_run"] == pytest.approx(per_run)
        assert s["pass_at_1"] == pytest.approx(sum(per_run) / 3)
        assert s["seeds"] == [4, 5, 6] and s["n_problems"] == len(ROWS)


def test_summarise_by_hand():
    t = pd.DataFrame({"task": "aime24", "suppression_set": "none", "problem_id": ["a", "b"] * 2,
                      "run": [0, 0, 1, 1], "seed": [0, 0, 1, 1], "correct": [1, 0, 1, 1]})
    s = summarise(t)["aime24"]["none"]
    assert s["pass_at_1_per_run"] == [0.5, 1.0] and s["pass_at_1"] == 0.75
    assert s["std"] == pytest.approx(0.125 ** 0.5)  # sample std of (0.5, 1.0): sqrt(2 * 0.25**2 / 1)


def test_cli_loads_model_and_tasks_once(world, tmp_path, monkeypatch):
    """Three suppression sets x two runs: one HFLM, one TaskManager, six lm-eval evaluate() calls."""
    import lm_eval.evaluator
    import lm_eval.tasks

    from rock.cli import main

    counts = Counter()

    def counting(name, fn):
        def wrapper(*a, **k):
            counts[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(RockHFLM, "__init__", counting("model", RockHFLM.__init__))
    monkeypatch.setattr(lm_eval.tasks.TaskManager, "__init__", counting("taskmanager", lm_eval.tasks.TaskManager.__init__))
    monkeypatch.setattr(lm_eval.evaluator, "evaluate", counting("evaluate", lm_eval.evaluator.evaluate))
    root, model = world
    cfg = yaml.safe_load((ROOT / "tests" / "config_toy" / "config.yaml").read_text())
    cfg["run_dir"] = str(root)
    cfg["evaluation"].update({"backend": "hf", "dataset_source": "local", "n_runs": 2, "temperature": 1.0,
                              "top_p": 1.0, "max_gen_toks": 8, "batch_size": 6, "prompt_format": "question_answer"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "sets.json").write_text(json.dumps({"none": [], "a": [5], "b": [5, 6]}))
    rc = main(["evaluate", "--config", str(tmp_path / "c.yaml"), "--model", str(model), "--model-name", "tiny",
               "--benchmark", "aime24", "--table", str(tmp_path / "out" / "t.parquet"),
               "--summary", str(tmp_path / "out" / "s.json"), "--suppress-sets", str(tmp_path / "sets.json")])
    assert rc == 0
    assert counts == {"model": 1, "taskmanager": 1, "evaluate": 6}
    table = pd.read_parquet(tmp_path / "out" / "t.parquet")
    assert len(table) == 3 * 2 * len(ROWS) and set(table.task) == {"aime24"}
    summary = json.loads((tmp_path / "out" / "s.json").read_text())
    prov = summary["provenance"]
    assert prov["lm_eval_version"] == "0.4.13" and prov["tasks"]["aime24"]["version"] == 1.0
    assert prov["seeds"] == [0, 1] and prov["suppression_sets"]["b"] == [5, 6]
    assert set(summary["pass_at_1"]["aime24"]) == {"none", "a", "b"}


def test_cli_one_model_load_writes_one_file_pair_per_benchmark(world, tmp_path, monkeypatch):
    """{bench} in --table/--summary: two benchmarks, one model load, each file holds its own rows."""
    from rock.cli import main

    loads = Counter()
    init = RockHFLM.__init__

    def counting(*a, **k):
        loads["model"] += 1
        return init(*a, **k)

    monkeypatch.setattr(RockHFLM, "__init__", counting)
    root, model = world
    cfg = yaml.safe_load((ROOT / "tests" / "config_toy" / "config.yaml").read_text())
    cfg["run_dir"] = str(root)
    cfg["evaluation"].update({"n_runs": 2, "max_gen_toks": 8, "batch_size": 6, "prompt_format": "question_answer"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["evaluate", "--config", str(tmp_path / "c.yaml"), "--model", str(model), "--model-name", "tiny",
               "--benchmark", "aime24", "--benchmark", "math500",
               "--table", str(tmp_path / "{bench}" / "t.parquet"), "--summary", str(tmp_path / "{bench}" / "s.json")])
    assert rc == 0 and loads["model"] == 1
    for bench in ("aime24", "math500"):
        table = pd.read_parquet(tmp_path / bench / "t.parquet")
        assert set(table.task) == {bench} and len(table) == 2 * len(ROWS)
        summary = json.loads((tmp_path / bench / "s.json").read_text())
        assert list(summary["pass_at_1"]) == [bench]
        assert summary["pass_at_1"][bench]["none"]["pass_at_1"] == pytest.approx(table.correct.mean())
    assert not (tmp_path / "{bench}").exists()


def test_split_outputs_needs_the_placeholder_in_both_paths():
    from rock.evaluate import split_outputs

    table = pd.DataFrame({"task": ["a", "b"], "correct": [1, 0]})
    summary = {"pass_at_1": {"a": {}, "b": {}}, "provenance": {"p": 1}}
    assert split_outputs("t", "s", table, summary) == [("t", "s", table, summary)]
    parts = split_outputs("{bench}/t", "{bench}/s", table, summary)
    assert [(t, s, list(p.task), ps["pass_at_1"]) for t, s, p, ps in parts] == [
        ("a/t", "a/s", ["a"], {"a": {}}), ("b/t", "b/s", ["b"], {"b": {}})]
    with pytest.raises(ConfigError, match="both contain"):
        split_outputs("{bench}/t", "s", table, summary)


def test_chat_boxed_renders_the_chat_template(world, lm):
    ev = _evaluator(world, lm, prompt_format="chat_boxed", max_gen_toks=4)
    rows = ev.evaluate_once((), seed=0)["math500"]
    assert len(rows) == len(ROWS)
    prompt = ev.taskset.tasks["math500"].instances[0].args[0]
    assert prompt.startswith("<|im_start|>user\nWhat is $(")
    assert prompt.endswith("within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")


def test_generation_config_top_k_does_not_leak_into_sampling(world, tmp_path):
    """A model whose generation_config.json sets top_k = 1 (sampling = greedy if it leaked in):
    plain ``generate`` reads it, the hf backend pins top_k = 0 and top_p = 1.0 instead."""
    import shutil

    from transformers import GenerationConfig

    model = tmp_path / "topk1"
    shutil.copytree(world[1], model)
    gc = GenerationConfig.from_pretrained(model)
    gc.update(do_sample=True, top_k=1, top_p=0.5, temperature=1.0)
    gc.save_pretrained(model)
    lm = make_lm(_cfg(), model, record_tokens=True)
    ids = torch.tensor([lm.tokenizer("Question: What is $(1+2)*3$?\nAnswer:")["input_ids"]])
    greedy = lm.model.generate(ids, do_sample=False, max_new_tokens=12)
    for seed in range(3):  # the leak this test guards against: top_k 1 makes sampling greedy
        torch.manual_seed(seed)
        assert torch.equal(lm.model.generate(ids, do_sample=True, max_new_tokens=12), greedy)
    seen = []
    generate = lm.model.generate
    lm.model.generate = lambda *a, **k: seen.append(k) or generate(*a, **k)
    try:
        base = [r["response"] for r in _evaluator(world, lm).evaluate_once((), seed=0)["math500"]]
        sampled = [r["response"] for r in _evaluator(world, lm, temperature=1.0).evaluate_once((), seed=0)["math500"]]
    finally:
        lm.model.generate = generate
    assert "top_k" not in seen[0] and (seen[-1]["top_k"], seen[-1]["top_p"]) == (0, 1.0)
    assert sum(a != b for a, b in zip(base, sampled)) >= len(ROWS) - 1


def test_evaluation_top_p_and_top_k_defaults_are_the_authors():
    """reference/README.md: the authors' lm-eval call sets only temperature 0.6 (top_p 1.0, no top-k)."""
    kw = EvaluationConfig(temperature=0.6).generation_kwargs()
    assert kw == {"do_sample": True, "temperature": 0.6, "max_gen_toks": 16384, "top_p": 1.0}
    assert EvaluationConfig(temperature=0.6, top_k=20).generation_kwargs()["top_k"] == 20
    with pytest.raises(ConfigError, match="top_k"):
        EvaluationConfig(top_k=-1)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())["evaluation"]
    assert (cfg["temperature"], cfg["top_p"], cfg["top_k"]) == (0.6, 1.0, 0)
