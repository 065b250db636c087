"""IFEval offline: lm-eval's own scoring, no download attempt, a clear error for punkt rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rock.errors import DataError
from rock.evaluate import ifeval
from rock.evaluate.benchmarks import build_tasks

needs_no_punkt = pytest.mark.skipif(ifeval.punkt_available(), reason="nltk punkt_tab is installed here")
SAMPLE = "Hello world. This is a TEST response, with Some words.\n\n* item one\n* item two\nP.S. done"


@needs_no_punkt
def test_punkt_instructions_are_exactly_the_checkers_that_need_punkt():
    from lm_eval.tasks.ifeval import instructions_registry

    ifeval.import_ifeval()
    needs = set()
    for iid, cls in instructions_registry.INSTRUCTION_DICT.items():
        checker = cls(iid)
        kwargs = {"prompt_to_repeat": "Say hi."} if iid == "combination:repeat_prompt" else {}
        checker.build_description(**kwargs)
        try:
            checker.check_following(SAMPLE)
        except LookupError:
            needs.add(iid)
    assert needs == set(ifeval.PUNKT_INSTRUCTIONS)


@needs_no_punkt
def test_import_is_offline_and_quiet():
    code = ("import time, nltk\n"
            "calls = []\n"
            "nltk.download = lambda *a, **k: calls.append(a) or False\n"
            "t = time.perf_counter()\n"
            "from rock.evaluate.ifeval import import_ifeval\n"
            "m = import_ifeval()\n"
            "import sys; sys.stderr.write(f'{len(calls)} {time.perf_counter() - t:.1f} {hasattr(m, \"process_results\")}')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    n_calls, _secs, has_fn = proc.stderr.strip().splitlines()[-1].split()
    # our wrapper replaced nltk.download for the import: lm-eval's download was never reached
    assert n_calls == "0" and has_fn == "True"
    assert "Downloaded punkt_tab" not in proc.stdout


def test_rows_needing_punkt_are_listed():
    rows = [{"key": 1, "instruction_id_list": ["punctuation:no_comma"]},
            {"key": 2, "instruction_id_list": ["length_constraints:number_sentences", "detectable_format:title"]},
            {"key": 3, "instruction_id_list": ["change_case:capital_word_frequency"]}]
    assert ifeval.rows_needing_punkt(rows) == [("2", "length_constraints:number_sentences"),
                                               ("3", "change_case:capital_word_frequency")]


@needs_no_punkt
def test_punkt_rows_fail_with_a_clear_error(tmp_path):
    path = tmp_path / "ifeval.jsonl"
    path.write_text(json.dumps({"key": 7, "prompt": "Write 3 sentences.",
                                "instruction_id_list": ["length_constraints:number_sentences"],
                                "kwargs": [{"num_sentences": 3, "relation": "at least"}]}) + "\n")
    with pytest.raises(DataError) as err:
        build_tasks(["ifeval"], prompt_format="question_answer", data_files={"ifeval": path})
    msg = str(err.value)
    assert "ifeval.jsonl" in msg and "key 7" in msg and "punkt_tab" in msg and "nltk.downloader" in msg


def test_lm_eval_ifeval_scoring_on_toy_rows(tmp_path):
    rows = [{"key": 1, "prompt": "Write a sentence without commas.", "instruction_id_list": ["punctuation:no_comma"],
             "kwargs": [{}]},
            {"key": 2, "prompt": "Answer in lowercase and end with 'bye'.",
             "instruction_id_list": ["change_case:english_lowercase", "startend:end_checker"],
             "kwargs": [{}, {"end_phrase": "bye"}]}]
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = build_tasks(["ifeval"], prompt_format="question_answer", data_files={"ifeval": path}).tasks["ifeval"]
    d1, d2 = list(task.eval_docs)
    assert task.process_results(d1, ["no commas here"])["prompt_level_strict_acc"] is True
    assert task.process_results(d1, ["one, two"])["prompt_level_strict_acc"] is False
    res = task.process_results(d2, ["all lowercase then bye"])
    assert res["prompt_level_strict_acc"] is True and res["inst_level_strict_acc"] == [True, True]
    res = task.process_results(d2, ["Not Lowercase bye"])
    assert res["prompt_level_strict_acc"] is False and res["inst_level_strict_acc"] == [False, True]


def test_toy_world_instructions_need_no_punkt():
    """Contract with the toy world: its IFEval rows are scorable offline (rock.toy.instructions)."""
    toy = pytest.importorskip("rock.toy.instructions")
    from lm_eval.tasks.ifeval import instructions_registry

    assert set(toy.INSTRUCTION_IDS) <= set(instructions_registry.INSTRUCTION_DICT)
    assert not set(toy.INSTRUCTION_IDS) & ifeval.PUNKT_INSTRUCTIONS


def test_language_checks_are_deterministic_across_processes():
    """The toy teacher's all-caps response that flipped between two runs: scored in two fresh
    processes, the english_capital check agrees (langdetect is seeded by import_ifeval)."""
    import subprocess
    import sys

    code = ("from rock.evaluate.ifeval import import_ifeval; import_ifeval();"
            "from lm_eval.tasks.ifeval import instructions as i;"
            "c = i.CapitalLettersEnglishChecker('x'); c.build_description();"
            "text = 'TE\":\": \"CHILDREN OFTEN DRAW QUIGHT, AND ALL OF THES ARE LOVELY AND THEY MAKE ME HAPPY.';"
            "print([c.check_following(text) for _ in range(5)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(outs) == 1, outs
    from langdetect import DetectorFactory

    from rock.evaluate.ifeval import import_ifeval

    import_ifeval()
    assert DetectorFactory.seed == 0
