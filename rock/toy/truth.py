"""The toy world's planted ground truth, written into ``world.json`` (issue 14).

Each mechanism the paper describes is present in the toy world by construction; this module names,
from the world's own tokenizer and config, which token types carry which mechanism, so that the
report can check that the analysis recovers them (:mod:`rock.report.truth`):

``rocks``
    structural tokens whose teacher choice depends on context the student never sees: the step
    marker (So/Then) and the answer line's markdown (``**Answer:**`` / ``### Answer:``), both chosen
    by the teacher's hidden system message (:mod:`rock.toy.corpus`); the student picks each at random. Only
    the variants the student's own outputs carry can be detected (the report compares with the
    planted types seen in the analysed trajectories). Being unlearnable (the best the student can do
    is the 50/50 it already has), they persist through stage 2, and their per-occurrence gradients
    pull both ways and cancel in the type's mean (small, mutually aligned mean gradients).
``persistent_rocks``
    the same types: their persistence is planted (hidden context; claims.csv G20).
``misconception_digits``
    the digits carry the student's fixed misconceptions (:class:`rock.toy.problems.Misconceptions`)
    and random slips: correctable, so stage 2 lowers their KL (measured on the previous world,
    where they ranked among the rocks: -29% to -45%). They are not planted rocks: they are learnable
    high-KL types too (frequent ones), the knockout's planted Pillars (below) and what the random
    freeze control blocks.
``learnable_high_kl``
    the concluding markers (``toy.corpus.conclusion_markers``): in problems of three minor families
    the teacher's last step opens with a marker fixed by the family, a cue the student sees; the
    student's corpus uses the right one only some of the time (``student_conclusion_accuracy``),
    so it is unsure (large gradients) and distillation can teach it (its KL falls). Each marker
    opens one step of ~10% of the problems: rare next to the rocks.
``knockout``
    planted Strong Pillars: the digits (every toy answer is a number written in them; suppressing
    one makes every answer that needs it wrong), in the screening pool after the rocks; planted
    neutral candidates: the rocks (the other variant serves as well).
``freeze``
    the expected sign of the Sec. 4 contrast: freezing matched random windows costs more accuracy
    than freezing the rock windows (``random_window_freeze - rock_freeze < 0``): rock windows hold
    tokens the student cannot learn, random ones arithmetic it can.
"""

from __future__ import annotations

from rock.toy import problems
from rock.toy.config import ToyConfig

DIGITS = tuple(str(d) for d in range(10))


def structural_words() -> list[str]:
    """The token of every hidden-context choice: the step markers and the answer line's markdown."""
    formats = [label.split("Answer")[0].strip() for label in problems.ANSWER_LABELS]   # "**", "###"
    return list(problems.TEACHER_MARKERS) + formats


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
    structural = structural_words()
    conclusions = sorted(set(cfg.corpus.conclusion_markers.values()))
    return {
        "rocks": _group(tok, structural,
                        "step marker and answer-line markdown chosen by the teacher's hidden system "
                        "message"),
        "persistent_rocks": _group(tok, structural,
                                   "chosen by context the student never sees, so no amount of "
                                   "distillation teaches them (their KL stays)"),
        "misconception_digits": _group(tok, list(DIGITS),
                                       "the student's fixed misconceptions and slips, which the "
                                       "teacher's samples correct"),
        "learnable_high_kl": _group(tok, conclusions,
                                    "concluding markers: the teacher's follows the problem's family "
                                    "(visible), the student's is right only some of the time"),
        "knockout": {"pillars": _group(tok, list(DIGITS), "every toy answer is written in digits"),
                     "neutral": _group(tok, structural, "either variant serves")},
        "freeze": {"contrast": "random_window_freeze - rock_freeze", "expected_sign": "<0",
                   "why": "random windows fall on arithmetic the student must learn; rock windows "
                          "on markers it cannot learn"},
    }
