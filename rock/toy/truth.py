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
``learnable_high_kl``
    the concluding markers of word problems (``toy.corpus.conclusion_markers``): the teacher picks
    one from the problem's family, a cue the student sees; the student's corpus picks at random,
    so it is unsure (large gradients) and distillation can teach it (its KL falls).
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
        "learnable_high_kl": _group(tok, conclusions,
                                    "concluding markers of word problems: the teacher's follows the "
                                    "family (visible), the student's is random"),
        "knockout": {"pillars": _group(tok, list(DIGITS), "every toy answer is written in digits"),
                     "neutral": _group(tok, markers, "either step marker serves")},
        "freeze": {"contrast": "random_window_freeze - rock_freeze", "expected_sign": "<0",
                   "why": "random windows fall on arithmetic the student must learn; rock windows "
                          "on markers it cannot learn"},
    }
