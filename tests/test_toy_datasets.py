"""Toy datasets: real field layouts, held-out benchmarks, and toy IFEval scored by lm-eval's checkers."""

from __future__ import annotations

import random
import re

import pytest

from rock.toy import benchmarks, corpus, instructions
from rock.toy.config import SizesConfig, ToyConfig

CFG = ToyConfig().corpus
SIZES = SizesConfig(openthoughts=200, openthoughts_other_domains=20, math500=100, ifeval=150,
                    aime24=30, aime25=30, hmmt25=30)


@pytest.fixture(scope="module")
def drawn():
    return benchmarks.sample_benchmarks(random.Random(0), CFG, SIZES)


@pytest.fixture(scope="module")
def ifeval_utils():
    from rock.evaluate.ifeval import import_ifeval   # lm-eval's module, imported offline

    return import_ifeval()


def test_math500_rows(drawn):
    bench, _ = drawn
    rows = benchmarks.math500_rows(bench["math500"])
    assert len(rows) == 100
    for row in rows:
        assert set(row) == {"problem", "solution", "answer", "subject", "level", "unique_id"}
        assert isinstance(row["answer"], str) and int(row["answer"]) >= 0
        assert isinstance(row["level"], int) and 1 <= row["level"] <= 5
        assert row["subject"] in ("Prealgebra", "Algebra")
        assert re.fullmatch(r"test/(prealgebra|algebra)/\d+\.json", row["unique_id"])
        assert row["solution"].endswith(f"$\\boxed{{{row['answer']}}}$")
    assert len({r["unique_id"] for r in rows}) == 100
    assert {r["level"] for r in rows} >= {1, 2, 3}


def test_competition_rows_are_hard_and_distinct(drawn):
    bench, holdout = drawn
    keys = []
    for name in benchmarks.COMPETITIONS:
        rows = benchmarks.competition_rows(name, bench[name])
        assert len(rows) == 30
        for row in rows:
            assert set(row) == {"id", "problem", "answer"}
            assert row["id"].startswith(name) and row["answer"].isdigit()
        keys += [p.key for p in bench[name]]
        assert all(p.family in CFG.hard_families and len(p.family) >= 4 for p in bench[name])
    keys += [p.key for p in bench["math500"]]
    assert len(keys) == len(set(keys)) == len(holdout.keys)     # no instance shared


def test_pretraining_never_sees_a_benchmark_instance(drawn):
    bench, holdout = drawn
    rng = random.Random(5)
    drawn_keys = {corpus.sample_problem(rng, CFG, holdout).key for _ in range(5000)}
    assert not drawn_keys & holdout.keys
    docs = corpus.student_documents(3000, random.Random(6), CFG, holdout)
    assert not {d.user for d in docs} & holdout.prompts


def test_openthoughts_rows(drawn):
    _, holdout = drawn
    rows = benchmarks.openthoughts_rows(random.Random(1), CFG, SIZES, holdout)
    assert len(rows) == 220
    domains = [r["domain"] for r in rows]
    assert domains.count("math") == 200 and set(domains) <= {"math", "science", "code"}
    for row in rows:
        assert set(row) == {"difficulty", "source", "domain", "conversations"}
        conv = row["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"]
        assert all(isinstance(t["value"], str) and t["value"] for t in conv)
        if row["domain"] == "math":
            assert "\\boxed{" in conv[1]["value"]


def test_ifeval_rows_have_the_google_layout(drawn):
    bench, _ = drawn
    rows = benchmarks.ifeval_rows(bench["ifeval"])
    assert [r["key"] for r in rows] == list(range(1000, 1150))
    for row in rows:
        assert set(row) == {"key", "prompt", "instruction_id_list", "kwargs"}
        assert 1 <= len(row["instruction_id_list"]) == len(row["kwargs"]) <= 2
        for kw in row["kwargs"]:
            assert tuple(kw) == instructions.KWARGS_KEYS          # same keys, same order, null-filled
    used = {i for r in rows for i in r["instruction_id_list"]}
    assert used == set(instructions.INSTRUCTION_IDS)               # 150 rows cover every id


def test_toy_instruction_ids_need_no_punkt():
    from rock.evaluate.ifeval import PUNKT_INSTRUCTIONS

    assert not set(instructions.INSTRUCTION_IDS) & PUNKT_INSTRUCTIONS


def test_descriptions_are_lm_evals_own(ifeval_utils, drawn):
    from lm_eval.tasks.ifeval import instructions_registry

    bench, _ = drawn
    for prompt in bench["ifeval"]:
        for ins in prompt.instructions:
            checker = instructions_registry.INSTRUCTION_DICT[ins.id](ins.id)
            kwargs = {k: v for k, v in ins.row_kwargs().items() if v}
            assert checker.build_description(**kwargs) == ins.description()
            assert ins.description() in prompt.text


def test_every_row_is_scored_by_lm_eval(ifeval_utils, drawn):
    """lm-eval's process_results runs on each toy row; compliant responses pass, others fail."""
    import langdetect

    langdetect.DetectorFactory.seed = 0        # lm-eval's case checkers call langdetect
    bench, _ = drawn
    rows = benchmarks.ifeval_rows(bench["ifeval"])
    rng = random.Random(0)
    passed = 0
    for row, prompt in zip(rows, bench["ifeval"]):
        for response in ("", "x", instructions.respond(prompt, rng, compliance=0.0)):
            out = ifeval_utils.process_results(row, [response])
            assert set(out) == {"prompt_level_strict_acc", "inst_level_strict_acc",
                                "prompt_level_loose_acc", "inst_level_loose_acc"}
            assert len(out["inst_level_strict_acc"]) == len(row["instruction_id_list"])
        assert ifeval_utils.process_results(row, [""])["prompt_level_strict_acc"] is False
        good = ifeval_utils.process_results(row, [instructions.respond(prompt, rng, 1.0)])
        passed += good["prompt_level_strict_acc"]
    # the teacher's responses follow nearly all instructions (rare misses: langdetect on short
    # capitalised text, "less than N words" below the shortest sentence)
    assert passed / len(rows) >= 0.95


def test_non_compliant_responses_fail_checkable_instructions(ifeval_utils):
    """compliance=0 ignores every instruction: lm-eval must see that for these ids."""
    rng = random.Random(2)
    for iid in ("startend:quotation", "detectable_format:title", "detectable_content:postscript",
                "detectable_format:json_format", "keywords:existence", "startend:end_checker"):
        ins = instructions.sample_instruction(rng, iid)
        prompt = instructions.InstructionPrompt("cats", "Describe cats.", (ins,))
        row = benchmarks.ifeval_rows([prompt])[0]
        bad = instructions.respond(prompt, rng, compliance=0.0)
        good = instructions.respond(prompt, rng, compliance=1.0)
        assert ifeval_utils.process_results(row, [bad])["prompt_level_strict_acc"] is False, iid
        assert ifeval_utils.process_results(row, [good])["prompt_level_strict_acc"] is True, iid
