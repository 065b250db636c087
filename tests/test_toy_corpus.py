"""Toy corpus: arithmetic problems, the two solution styles, the pretraining mixtures, the config."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from rock.errors import ConfigError
from rock.toy import corpus, problems
from rock.toy.config import ToyConfig

SYSTEM = ["style: so", "style: then"]


def test_steps_and_expression_of_the_prototype_family():
    assert problems.evaluate_steps("+*-", (3, 4, 2, 5)) == [(3, "+", 4, 7), (7, "*", 2, 14),
                                                            (14, "-", 5, 9)]
    assert problems.expression("+*-", (3, 4, 2, 5), latex=False) == "(3+4)*2-5"
    assert problems.expression("+*-", (3, 4, 2, 5), latex=True) == "(3 + 4) \\times 2 - 5"
    # a product after a product needs no parentheses; a sum first then product does
    assert problems.expression("-*+-+", (9, 2, 3, 1, 4, 5), latex=False) == "(9-2)*3+1-4+5"


def test_teacher_and_student_styles_exact_text():
    p = problems.Problem("+*-", (3, 4, 2, 5), "Compute $(3 + 4) \\times 2 - 5$.", False)
    assert p.answer == 9 and p.level == 2 and p.subject == "Prealgebra"
    assert problems.teacher_solution(p, "Then") == (
        "Let's compute $(3 + 4) \\times 2 - 5$.\n\n"
        "Then $3 + 4 = 7$.\n\nThen $7 \\times 2 = 14$.\n\nThen $14 - 5 = 9$.\n\n"
        "**Answer:** $\\boxed{9}$")
    assert problems.teacher_solution(p, **problems.teacher_style(1)) == (
        "Let's compute $(3 + 4) \\times 2 - 5$.\n\n"
        "Then $3 + 4 = 7$.\n\nThen $7 \\times 2 = 14$.\n\nThen $14 - 5 = 9$.\n\n"
        "### Answer: $\\boxed{9}$")
    student = problems.student_solution(p, random.Random(0), error_rate=0.0)
    lines = student.split("\n")
    assert lines[0] == "First, 3 + 4 = 7."
    assert re.fullmatch(r"(Next,|Thus) 7 \* 2 = 14\.", lines[1])
    assert re.fullmatch(r"(Next,|Thus) 14 - 5 = 9\.", lines[2])
    assert lines[3] == "The answer is \\boxed{9}."
    with pytest.raises(ValueError):
        problems.teacher_solution(p, "Thus")


def test_student_slips_are_small_and_carried_forward():
    p = problems.Problem("+*-", (3, 4, 2, 5), "", False)
    for seed in range(20):
        text = problems.student_solution(p, random.Random(seed), error_rate=1.0)
        steps = re.findall(r"(\d+) ([+*-]) (\d+) = (\d+)\.", text)
        assert len(steps) == 3
        x0 = 3
        for (x, op, y, z) in steps:
            x, y, z = int(x), int(y), int(z)
            assert x == x0                                        # carried from the previous line
            true = problems.apply_op(x, op, y)
            assert 1 <= abs(z - true) <= 2 and z >= 0             # every step slips by 1 or 2
            x0 = z
        assert text.endswith(f"\\boxed{{{x0}}}.")


def test_misconceptions_are_fixed_wrong_facts_of_the_chosen_ops():
    beliefs = problems.Misconceptions(seed=3, rate=0.4, ops="+*")
    facts = [(x, op, y) for x in range(1, 19) for op in "+*-" for y in range(1, 10)]
    wrong = {f for f in facts if beliefs.result(*f) != problems.apply_op(*f)}
    assert all(op in "+*" for _, op, _ in wrong)                       # subtraction is always right
    share = len(wrong) / sum(op in "+*" for _, op, _ in facts)
    assert 0.33 < share < 0.47                                         # ~rate of 324 facts
    for f in wrong:                                                    # off by 1 or 2, never negative
        assert 1 <= abs(beliefs.result(*f) - problems.apply_op(*f)) <= 2 and beliefs.result(*f) >= 0
    again = problems.Misconceptions(seed=3, rate=0.4, ops="+*")
    assert [again.result(*f) for f in facts] == [beliefs.result(*f) for f in facts]  # deterministic
    other = problems.Misconceptions(seed=4, rate=0.4, ops="+*")
    assert {f for f in facts if other.result(*f) != problems.apply_op(*f)} != wrong  # seed picks them
    assert problems.Misconceptions(seed=3, rate=0.0).result(7, "+", 8) == 15


def test_student_repeats_its_misconceptions_in_both_styles():
    beliefs = problems.Misconceptions(seed=0, rate=1.0, ops="+")    # every sum is wrong
    p = problems.Problem("+*-", (3, 4, 2, 5), "", False)
    (x, op, y, z), *rest = beliefs.steps(p)
    assert (x, op, y) == (3, "+", 4) and z != 7 and rest[0][0] == z and rest[0][3] == z * 2
    texts = {problems.student_solution(p, random.Random(seed), 0.0, beliefs) for seed in range(10)}
    assert len({t.split("\n")[0] for t in texts}) == 1                 # the same error every time
    assert f"First, 3 + 4 = {z}." in next(iter(texts))
    teacher_style = problems.teacher_solution(p, "So", beliefs.steps(p))
    assert f"So $3 + 4 = {z}$." in teacher_style and teacher_style.endswith(f"$\\boxed{{{z * 2 - 5}}}$")


@pytest.mark.parametrize("family", problems.FAMILIES)
def test_sampled_numbers_stay_in_range_and_non_negative(family):
    rng = random.Random(1)
    for _ in range(300):
        nums = problems.sample_numbers(family, rng, 9, 2, 5)
        assert len(nums) == len(family) + 1
        for (x, op, y, z) in problems.evaluate_steps(family, nums):
            assert z >= 0
            assert 2 <= y <= 5 if op == "*" else 1 <= y <= 9


def test_word_problems_use_numbers_in_step_order():
    rng = random.Random(3)
    for family in problems.WORD_TEMPLATES:
        for _ in range(20):
            nums = problems.sample_numbers(family, rng, 9, 2, 5)
            p = problems.phrase(family, nums, rng, word=True)
            assert p.word and p.subject == "Algebra"
            assert tuple(int(n) for n in re.findall(r"\d+", p.text)) == nums


def test_sample_problem_respects_the_holdout():
    rng = random.Random(0)
    held = {("+*", (a, b, c)) for a in range(1, 10) for b in range(1, 10) for c in range(2, 5)}
    for _ in range(200):   # only c == 5 remains for family "+*"
        p = problems.sample_problem(rng, ["+*"], [1.0], 0.5, 9, 2, 5, exclude=held)
        assert p.key not in held and p.numbers[2] == 5
    everything = held | {("+*", (a, b, 5)) for a in range(1, 10) for b in range(1, 10)}
    with pytest.raises(ConfigError):
        problems.sample_problem(rng, ["+*"], [1.0], 0.5, 9, 2, 5, exclude=everything, max_tries=50)


def _style(text: str) -> tuple[str, str]:
    """(step marker, answer-line markdown) of a teacher-style response."""
    markers = set(re.findall(r"^(So|Then) \$", text, flags=re.M))
    assert len(markers) == 1                      # one marker per response
    return markers.pop(), re.search(r"^(\*\*|###) ?Answer:", text, flags=re.M).group(1)


def test_teacher_style_follows_the_hidden_system_message():
    """Step marker and answer-line markdown are fixed by the hidden system message (So and **, or
    Then and ###), random without one; the student picks each independently."""
    cfg = ToyConfig().corpus
    docs = corpus.teacher_documents(600, random.Random(0), cfg, SYSTEM, corpus.Holdout())
    seen = Counter((d.system, _style(d.assistant)) for d in docs if d.kind == "teacher_style")
    styled = seen[("style: so", ("So", "**"))] + seen[("style: then", ("Then", "###"))]
    assert seen[("style: so", ("So", "**"))] > 50 and seen[("style: then", ("Then", "###"))] > 50
    assert sum(n for (system, _), n in seen.items() if system is not None) == styled
    assert sum(n for (system, _), n in seen.items() if system is None) > 0   # ~10% without one
    student = corpus.student_documents(2000, random.Random(1), cfg, corpus.Holdout())
    styles = Counter(_style(d.assistant) for d in student if d.kind == "teacher_style")
    assert len(styles) == 4 and min(styles.values()) > 20          # every combination: independent


def test_mixtures_match_the_config_shares():
    cfg = ToyConfig().corpus
    n = 4000
    t = Counter(d.kind for d in corpus.teacher_documents(n, random.Random(1), cfg, SYSTEM,
                                                         corpus.Holdout()))
    s_docs = corpus.student_documents(n, random.Random(2), cfg, corpus.Holdout())
    s = Counter(d.kind for d in s_docs)
    assert all(d.system is None for d in s_docs)                # the student never sees it
    assert abs(t["instruction"] / n - cfg.instruction_fraction) < 0.03
    math_t = n - t["instruction"]
    assert abs(t["student_style"] / math_t - cfg.teacher_student_style_fraction) < 0.03
    math_s = n - s["instruction"]
    assert abs(s["teacher_style"] / math_s - cfg.student_teacher_style_fraction) < 0.03


def test_family_mixture_adds_the_hard_families():
    cfg = ToyConfig().corpus
    fams, weights = corpus.family_mixture(cfg)
    assert set(fams) == set(cfg.family_weights) | set(cfg.hard_families)
    assert sum(weights) == pytest.approx(1.0)
    hard = sum(w for f, w in zip(fams, weights) if f in cfg.hard_families)
    assert hard == pytest.approx(cfg.hard_family_weight)


def test_family_mixture_ignores_the_order_of_the_config_mapping():
    """A config rewritten with sorted keys (Snakemake --config overrides) builds the same world."""
    import dataclasses

    cfg = ToyConfig().corpus
    reordered = dataclasses.replace(cfg, family_weights=dict(reversed(list(cfg.family_weights.items()))),
                                    hard_families=list(reversed(cfg.hard_families)))
    assert corpus.family_mixture(reordered) == corpus.family_mixture(cfg)
    draws = [problems.sample_problem(random.Random(1), *corpus.family_mixture(c), 0.1, 9, 2, 5).key
             for c in (cfg, reordered)]
    assert draws[0] == draws[1]


def test_config_from_dict_checks_keys_types_and_keeps_student_defaults():
    cfg = ToyConfig.from_dict({"teacher": {"steps": 70}, "student": {"lr": 1}})
    assert cfg.teacher.steps == 70 and cfg.teacher.layers == 4
    assert cfg.student.layers == 2 and cfg.student.hidden == 64 and cfg.student.lr == 1.0
    with pytest.raises(ConfigError, match="unknown key"):
        ToyConfig.from_dict({"teacher": {"stepz": 7}})
    with pytest.raises(ConfigError, match="toy.teacher.steps: expected int"):
        ToyConfig.from_dict({"teacher": {"steps": "many"}})
    with pytest.raises(ConfigError, match="toy.teacher.warmup_steps: must be in"):
        ToyConfig.from_dict({"teacher": {"steps": 7}})
    with pytest.raises(ConfigError, match="divisible"):
        ToyConfig.from_dict({"teacher": {"hidden": 100, "heads": 3}})
    with pytest.raises(ConfigError, match="unknown family"):
        ToyConfig.from_dict({"corpus": {"family_weights": {"**": 1.0}}})
