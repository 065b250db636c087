"""Toy datasets in the real formats: OpenThoughts3 prompt pool, MATH-500, IFEval, AIME24/25, HMMT25.

The paper draws its distillation prompts from OpenThoughts3 math (Sec. 5.1, [21]) and evaluates on
MATH-500, IFEval, AIME24, AIME25 and HMMT25-Feb (Sec. 5.2). The toy writes rows with the same fields
as the hub datasets (config ``data.benchmarks``) so that ``rock data`` reads both the same way:

- ``openthoughts``: ``{"difficulty", "source", "domain", "conversations": [{"from": "human", ...},
  {"from": "gpt", ...}]}``; mostly ``domain: math``, plus a few ``science``/``code`` rows as in
  OpenThoughts3, so the domain filter has something to drop.
- ``math500``: ``{problem, solution, answer, subject, level, unique_id}`` (HuggingFaceH4/MATH-500).
- ``ifeval``: ``{key, prompt, instruction_id_list, kwargs}`` (google/IFEval, null-filled kwargs).
- ``aime24``/``aime25``/``hmmt25``: ``{id, problem, answer}``, answer an integer written as a string.

Benchmark problems are drawn first and held out: pretraining never sees their arithmetic instance
(in any phrasing) or their exact IFEval prompt.
"""

from __future__ import annotations

import random

from rock.toy import corpus, instructions, problems
from rock.toy.config import CorpusConfig, SizesConfig

#: names of the competition-style benchmarks (hard families only)
COMPETITIONS = ("aime24", "aime25", "hmmt25")
#: ``source`` of every generated OpenThoughts row
SOURCE = "rock-toy"


def _unique_problems(n: int, rng: random.Random, fams: list[str], weights: list[float],
                     word_fraction: float, cfg: CorpusConfig, taken: set) -> list[problems.Problem]:
    out = []
    while len(out) < n:
        p = problems.sample_problem(rng, fams, weights, word_fraction, cfg.operand_max,
                                    cfg.multiplier_min, cfg.multiplier_max, exclude=taken)
        taken.add(p.key)
        out.append(p)
    return out


def sample_benchmarks(rng: random.Random, cfg: CorpusConfig, sizes: SizesConfig
                      ) -> tuple[dict[str, list], corpus.Holdout]:
    """Draw every benchmark's problems (distinct instances across all benchmarks) and the IFEval
    prompts; return them and the :class:`~rock.toy.corpus.Holdout` pretraining must avoid."""
    taken: set = set()
    fams, weights = corpus.family_mixture(cfg)
    out: dict[str, list] = {"math500": _unique_problems(
        sizes.math500, rng, fams, weights, cfg.word_problem_fraction, cfg, taken)}
    hard = list(cfg.hard_families)
    for name in COMPETITIONS:
        out[name] = _unique_problems(getattr(sizes, name), rng, hard, [1.0] * len(hard), 0.0,
                                     cfg, taken)
    prompts: list[instructions.InstructionPrompt] = []
    seen: set[str] = set()
    while len(prompts) < sizes.ifeval:
        p = instructions.sample_prompt(rng)
        if p.text not in seen:
            seen.add(p.text)
            prompts.append(p)
    out["ifeval"] = prompts
    return out, corpus.Holdout(frozenset(taken), frozenset(seen))


def math500_rows(items: list[problems.Problem]) -> list[dict]:
    """HuggingFaceH4/MATH-500 rows; the reference solution is in teacher style."""
    return [{"problem": p.text, "solution": problems.teacher_solution(p, problems.TEACHER_MARKERS[0]),
             "answer": str(p.answer), "subject": p.subject, "level": p.level,
             "unique_id": f"test/{p.subject.lower()}/{i}.json"} for i, p in enumerate(items)]


def competition_rows(name: str, items: list[problems.Problem]) -> list[dict]:
    return [{"id": f"{name}-{i}", "problem": p.text, "answer": str(p.answer)}
            for i, p in enumerate(items)]


def ifeval_rows(prompts: list[instructions.InstructionPrompt]) -> list[dict]:
    """google/IFEval rows (keys start at 1000 as in the original)."""
    return [{"key": 1000 + i, "prompt": p.text,
             "instruction_id_list": [ins.id for ins in p.instructions],
             "kwargs": [ins.row_kwargs() for ins in p.instructions]} for i, p in enumerate(prompts)]


def _other_domain_row(rng: random.Random) -> dict:
    if rng.random() < 0.5:
        prompt = instructions.sample_prompt(rng, max_instructions=1)
        human, gpt, domain = prompt.task, instructions.respond(prompt, rng, 1.0), "science"
    else:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        human = f"Write a Python function that returns the sum of {a} and {b}."
        gpt, domain = f"```python\ndef total():\n    return {a} + {b}\n```", "code"
    return {"difficulty": 1, "source": SOURCE, "domain": domain,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}


def openthoughts_rows(rng: random.Random, cfg: CorpusConfig, sizes: SizesConfig,
                      holdout: corpus.Holdout) -> list[dict]:
    """``sizes.openthoughts`` math rows (pretraining distribution, benchmark instances excluded)
    with ``sizes.openthoughts_other_domains`` non-math rows at random positions."""
    rows = []
    for _ in range(sizes.openthoughts):
        p = corpus.sample_problem(rng, cfg, holdout)
        rows.append({"difficulty": p.level, "source": SOURCE, "domain": "math",
                     "conversations": [
                         {"from": "human", "value": p.text},
                         {"from": "gpt", "value": problems.teacher_solution(
                             p, rng.choice(problems.TEACHER_MARKERS))}]})
    for _ in range(sizes.openthoughts_other_domains):
        rows.insert(rng.randint(0, len(rows)), _other_domain_row(rng))
    return rows
