"""Pretraining corpora of the toy teacher and student: chats mixing the two styles.

Mixed pretraining is essential (DESIGN.md, "The toy world"): with pure styles the student's
starting reverse KL to the teacher was 7.75 nats/token and on-policy KD collapsed; with the
student seeing ~20% teacher-style solutions and the teacher ~10% student-style ones it was ~0.20.

The teacher's step marker and answer-line markdown (So and ``**Answer:**``, or Then and ``### Answer:``)
follow a hidden system message (``models.teacher_system_prompts``, toy value ``["style: so", "style: then"]``,
system prompt i selects :func:`rock.toy.problems.teacher_style` i). The student never sees a system
message; its teacher-style documents pick each of the two at random, so they are unpredictable
for it and predictable for the teacher: structural Rock Tokens in miniature.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rock.toy import instructions, problems
from rock.toy.config import CorpusConfig


@dataclass(frozen=True)
class Document:
    """One chat: optional system message, user message, assistant response."""

    system: str | None
    user: str
    assistant: str
    kind: str
    """'teacher_style', 'student_style' or 'instruction' (for statistics and tests)"""

    def prompt_messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system is not None else []
        return msgs + [{"role": "user", "content": self.user}]


@dataclass(frozen=True)
class Holdout:
    """What pretraining must never contain: benchmark problem instances and prompts."""

    keys: frozenset = frozenset()
    prompts: frozenset = frozenset()


def style_for_system(system: str | None, system_prompts: list[str], rng: random.Random,
                     style_rng: random.Random) -> dict[str, str]:
    """The teacher's marker and label: fixed by the system prompt's index, random without one."""
    if system is None:
        return problems.random_style(rng, style_rng)
    return problems.teacher_style(system_prompts.index(system))


def family_mixture(cfg: CorpusConfig) -> tuple[list[str], list[float]]:
    """Families and weights: ``family_weights`` scaled to 1 - hard_family_weight, the rest spread
    over ``hard_families``. Families come in sorted order: the same weights give the same draws
    whatever order the config file (or a rewritten copy of it) lists them in."""
    total = sum(cfg.family_weights.values())
    fams = sorted(cfg.family_weights)
    weights = [cfg.family_weights[f] / total * (1.0 - cfg.hard_family_weight) for f in fams]
    for fam in sorted(cfg.hard_families):
        share = cfg.hard_family_weight / len(cfg.hard_families)
        if fam in fams:
            weights[fams.index(fam)] += share
        else:
            fams.append(fam)
            weights.append(share)
    return fams, weights


def sample_problem(rng: random.Random, cfg: CorpusConfig, holdout: Holdout) -> problems.Problem:
    fams, weights = family_mixture(cfg)
    return problems.sample_problem(rng, fams, weights, cfg.word_problem_fraction, cfg.operand_max,
                                   cfg.multiplier_min, cfg.multiplier_max, exclude=holdout.keys)


def _instruction_prompt(rng: random.Random, holdout: Holdout) -> instructions.InstructionPrompt:
    while True:
        prompt = instructions.sample_prompt(rng)
        if prompt.text not in holdout.prompts:
            return prompt


def teacher_documents(n: int, rng: random.Random, cfg: CorpusConfig, system_prompts: list[str],
                      holdout: Holdout) -> list[Document]:
    """The teacher's corpus: teacher style (hidden system message picks So/Then), a share in
    error-free student style, and instruction chats it always follows."""
    docs, style_rng = [], problems.style_stream(rng)
    for _ in range(n):
        system = rng.choice(system_prompts) \
            if system_prompts and rng.random() < cfg.teacher_system_fraction else None
        if rng.random() < cfg.instruction_fraction:
            prompt = _instruction_prompt(rng, holdout)
            docs.append(Document(system, prompt.text, instructions.respond(prompt, rng, 1.0),
                                 "instruction"))
            continue
        problem = sample_problem(rng, cfg, holdout)
        user = problem.text + rng.choice(cfg.prompt_suffixes)
        if rng.random() < cfg.teacher_student_style_fraction:
            docs.append(Document(system, user, problems.student_solution(problem, rng, 0.0),
                                 "student_style"))
        else:
            style = style_for_system(system, system_prompts, rng, style_rng)
            conclusion = problems.conclusion_for(problem, cfg.conclusion_markers)
            docs.append(Document(system, user, problems.teacher_solution(problem, conclusion=conclusion,
                                                                         **style),
                                 "teacher_style"))
    return docs


def student_documents(n: int, rng: random.Random, cfg: CorpusConfig,
                      holdout: Holdout, beliefs: problems.Misconceptions | None = None) -> list[Document]:
    """The student's corpus: its own style with its misconceptions (``beliefs``) and random slips,
    a share in teacher style (random marker, no system message, the same misconceptions), and
    instruction chats it follows only in part."""
    docs, style_rng = [], problems.style_stream(rng)
    for _ in range(n):
        if rng.random() < cfg.instruction_fraction:
            prompt = _instruction_prompt(rng, holdout)
            docs.append(Document(None, prompt.text, instructions.respond(
                prompt, rng, cfg.student_instruction_compliance), "instruction"))
            continue
        problem = sample_problem(rng, cfg, holdout)
        user = problem.text + rng.choice(cfg.prompt_suffixes)
        if rng.random() < cfg.student_teacher_style_fraction:
            style = problems.random_style(rng, style_rng)
            steps = beliefs.steps(problem) if beliefs else None
            # the student has half learnt which concluding marker goes with which family: the
            # teacher's w.p. student_conclusion_accuracy, another one otherwise (it leans the right
            # way but is unsure: large gradients that distillation can use, no confident mistake)
            right = problems.conclusion_for(problem, cfg.conclusion_markers)
            conclusion = None
            if right:
                others = sorted(set(cfg.conclusion_markers.values()) - {right})
                conclusion = right if not others or rng.random() < cfg.student_conclusion_accuracy \
                    else rng.choice(others)
            docs.append(Document(None, user, problems.teacher_solution(problem, steps=steps,
                                                                       conclusion=conclusion, **style),
                                 "teacher_style"))
        else:
            docs.append(Document(None, user, problems.student_solution(
                problem, rng, cfg.student_error_rate, beliefs), "student_style"))
    return docs
