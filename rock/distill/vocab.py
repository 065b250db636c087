"""The vocabulary teacher and student share for logit distillation (:mod:`rock.distill.losses`)."""

from __future__ import annotations

import logging
import warnings

import torch

from rock.errors import ModelError

log = logging.getLogger(__name__)


def shared_vocab(student_tokenizer, teacher_tokenizer, student_vocab: int, teacher_vocab: int, *,
                 student_name: str = "student", teacher_name: str = "teacher") -> int:
    """Number of logit columns teacher and student share, or :class:`ModelError`.

    Both tokenizers must map the same strings to the same ids (else KD over the vocabulary is
    meaningless). The models' output sizes may differ by padding rows (Qwen3 pads its embedding
    matrix past ``len(tokenizer)``); logits are then truncated to the smaller size, with a warning,
    which is safe because ids beyond the tokenizer are never produced by it (KDFlow does the same).
    """
    sv, tv = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if sv != tv:
        only_s = sorted(set(sv) - set(tv))[:5]
        only_t = sorted(set(tv) - set(sv))[:5]
        moved = sorted(k for k in set(sv) & set(tv) if sv[k] != tv[k])[:5]
        raise ModelError(
            f"{student_name} and {teacher_name} tokenizers differ ({len(sv)} vs {len(tv)} entries; "
            f"only in student {only_s}, only in teacher {only_t}, different ids {moved}); "
            "same-vocabulary KD needs one tokenizer: pick a teacher/student pair from one family")
    n_tok = len(student_tokenizer)
    shared = min(student_vocab, teacher_vocab)
    if shared < n_tok:
        raise ModelError(f"model output size {shared} is smaller than the tokenizer ({n_tok} ids); "
                         f"check {student_name}/{teacher_name} config.vocab_size")
    if student_vocab != teacher_vocab:
        msg = (f"{student_name} has {student_vocab} output rows and {teacher_name} {teacher_vocab}; "
               f"the tokenizers agree ({n_tok} ids), so logits are truncated to the shared {shared}")
        log.warning(msg)
        warnings.warn(msg, stacklevel=2)
    return shared


def truncate_vocab(logits: torch.Tensor, vocab: int) -> torch.Tensor:
    """Keep the first ``vocab`` logit columns (a view)."""
    return logits if logits.shape[-1] == vocab else logits[..., :vocab]
