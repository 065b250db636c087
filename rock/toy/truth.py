"""The toy world's planted ground truth, written into ``world.json`` (issue 14).

Each mechanism the paper describes is present in the toy world by construction; this module names,
from the world's own tokenizer and config, which token types carry which mechanism, so that the
report can check that the analysis recovers them (:mod:`rock.report.truth`):

``rocks``
    structural tokens whose teacher choice depends on context the student never sees: the step
    markers So/Then, chosen by the teacher's hidden system message (:mod:`rock.toy.corpus`), and the
    digits of the student's fixed misconceptions (:class:`rock.toy.problems.Misconceptions`: it is
    confident in the wrong result, so its logit gradient is small however large the KL). The paper
    finds both kinds (discourse markers and all ten digits, App. B).
``persistent_rocks``
    the rocks whose persistence is planted: the step markers (hidden context). The digits are rocks
    too, but the misconceptions behind part of their KL are correctable, and stage 2 corrects some
    of them (measured on the toy: digit KL falls 29-45% between the persistence checkpoints, so
    claims.csv G20 is n/a on the toy).
``learnable_high_kl``
    the concluding markers (``toy.corpus.conclusion_markers``): in problems of three minor families
    the teacher's last step opens with a marker fixed by the family, a cue the student sees; the
    student's corpus uses the right one only some of the time (``student_conclusion_accuracy``),
    so it is unsure (large gradients) and distillation can teach it (its KL falls). Each marker
    opens one step of ~10% of the problems: rare next to the rocks.
``knockout``
    planted Strong Pillars: the digits (every toy answer is a number written in them; suppressing
    one makes every answer that needs it wrong); planted neutral candidates: the step markers (the
    other marker serves as well).
``freeze``
    the expected sign of the Sec. 4 contrast: freezing matched random windows costs more accuracy
    than freezing the rock windows (``random_window_freeze - rock_freeze < 0``).
"""

from __future__ import annotations

from rock.toy import problems
from rock.toy.config import ToyConfig

DIGITS = tuple(str(d) for d in range(10))


def _single_token(tok, word: str) -> int | None:
    """The id of ``word`` as it starts a line (no leading space), or None if it is not one token."""
    ids = tok.encode(word, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def _group(tok, words, why: str) -> dict:
    ids = {w: _single_token(tok, w) for w in words}
    return {"tokens": [w for w in words if ids[w] is not None],
            "ids": [ids[w] for w in words if ids[w] is not None],
            "not_single_tokens": [w for w in words if ids[w] is None], "why": why}


def ground_truth(tok, cfg: ToyConfig) -> dict:
    """The planted mechanisms of a world built with ``cfg`` and tokenizer ``tok`` (module docstring)."""
    markers = list(problems.TEACHER_MARKERS)
    conclusions = sorted(set(cfg.corpus.conclusion_markers.values()))
    return {
        "rocks": _group(tok, markers + list(DIGITS),
                        "step markers chosen by the teacher's hidden system message, and digits of "
                        "the student's fixed misconceptions"),
        "persistent_rocks": _group(tok, markers,
                                   "the step markers: chosen by context the student never sees, so "
                                   "no amount of distillation teaches them (their KL stays)"),
        "learnable_high_kl": _group(tok, conclusions,
                                    "concluding markers: the teacher's follows the problem's family "
                                    "(visible), the student's is right only some of the time"),
        "knockout": {"pillars": _group(tok, list(DIGITS), "every toy answer is written in digits"),
                     "neutral": _group(tok, markers, "either step marker serves")},
        "freeze": {"contrast": "random_window_freeze - rock_freeze", "expected_sign": "<0",
                   "why": "random windows fall on arithmetic the student must learn; rock windows "
                          "on markers it cannot learn"},
    }
