"""Model forward passes of the KD step (:mod:`rock.distill.trainer`): left padding, the kept
logit rows or final hidden states of the response positions, and compiled decoder blocks.

Both sides of a :class:`TrainSequence` are LEFT padded, so the response
tokens of every sequence end at the last column and the last ``keep`` rows line up; row i of the
kept rows predicts target i (:mod:`rock.distill.losses`, "Alignment").
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from rock.distill.losses import truncate_vocab

if TYPE_CHECKING:
    from rock.distill.runtime import Runtime


@dataclass
class TrainSequence:
    """One training example: both model views of one (prompt, response) pair."""

    key: str
    student_ids: list[int]
    teacher_ids: list[int]
    n_response: int

    def __post_init__(self):
        if not 1 <= self.n_response < min(len(self.student_ids), len(self.teacher_ids)) + 1:
            raise ValueError(f"{self.key}: bad n_response {self.n_response}")
        if self.student_ids[-self.n_response:] != self.teacher_ids[-self.n_response:]:
            raise ValueError(f"{self.key}: student and teacher responses differ")

    @property
    def response(self) -> list[int]:
        return self.student_ids[-self.n_response:]


def compile_blocks(model) -> list:
    """``(block, compiled call)`` for each decoder block (``model._no_split_modules``).

    What ``nn.Module.compile`` builds, kept aside: :class:`Trainer` switches the compiled calls on
    only inside its own forward/backward passes, so generation with the same models (HF
    rollouts, KV cache, one-token shapes) runs the plain modules. Blocks of one class share
    their compiled code (parameters are graph inputs); Dynamo's cache is raised so that
    train/no-grad modes and a few sequence lengths of two models fit.
    """
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    return [(m, torch.compile(m._call_impl)) for m in model.modules() if type(m).__name__ in blocks]


@contextmanager
def blocks_compiled(pairs: list):
    """Within the block, the blocks of :func:`compile_blocks` run their compiled calls."""
    for m, fn in pairs:
        m._compiled_call_impl = fn
    try:
        yield
    finally:
        for m, _ in pairs:
            m._compiled_call_impl = None


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """``(ids, attention_mask, position_ids)`` ``[B, L]``, left padded; positions count real tokens.

    Built on the CPU and moved in one non-blocking copy (a blocking host-to-GPU copy waits for
    every kernel queued before it: a host sync per micro-batch).
    """
    width = max(len(r) for r in rows)
    both = torch.zeros((2, len(rows), width), dtype=torch.long)
    both[0].fill_(pad_id)
    for i, r in enumerate(rows):
        if r:
            both[0, i, width - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
            both[1, i, width - len(r):] = 1
    ids, attn = to_device(both, device)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    return ids, attn, pos


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` on ``device`` without a host sync (pageable host memory is staged at once)."""
    return t.to(device, non_blocking=torch.device(device).type == "cuda")


def response_mask_right(lengths: Sequence[int], width: int, device) -> torch.Tensor:
    """``[B, width]`` float mask that is 1 on the last ``lengths[b]`` columns."""
    cols = torch.arange(width)[None, :]
    n = torch.as_tensor(list(lengths))[:, None]
    return to_device((cols >= width - n).to(torch.float32), device)


def keep_logits(model, rows: Sequence[Sequence[int]], keep: int, pad_id: int, vocab: int,
                runtime: Runtime) -> torch.Tensor:
    """Logits ``[B, keep, vocab]`` of the last ``keep`` positions (contiguous, no copy).

    With left padding, row j predicts column ``L - keep + 1 + j`` of the ids: rows ``0..keep-2``
    predict the last ``keep - 1`` tokens of every sequence and the last row predicts past the end
    (callers mask it). Only these rows go through the lm_head (``logits_to_keep``), so no logits
    are computed for prompt positions.
    """
    ids, attn, pos = left_pad(rows, pad_id, runtime.device)
    with runtime.autocast():
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=keep,
                    use_cache=False)
    return truncate_vocab(out.logits, vocab)


def keep_hidden(model, rows: Sequence[Sequence[int]], keep: int, pad_id: int,
                runtime: Runtime) -> torch.Tensor:
    """Final hidden states ``[B, keep, H]`` (the lm_head's input) of the rows of :func:`keep_logits`."""
    ids, attn, pos = left_pad(rows, pad_id, runtime.device)
    with runtime.autocast():
        out = model.base_model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False)
    return out.last_hidden_state[:, -keep:]


def plain_lm_head(model):
    """The lm_head weight when logits are exactly ``hidden @ W.T`` (no bias, scale or softcap),
    else None (then the loss needs the model's own logits)."""
    head = model.get_output_embeddings()
    cfg = model.config
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or \
            getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None
    return head.weight


def response_logits(model, rows: Sequence[Sequence[int]], keep: int, pad_id: int, vocab: int,
                    runtime: Runtime) -> torch.Tensor:
    """Logits ``[B, keep - 1, vocab]`` of the last ``keep - 1`` predicting positions.

    With left padding, row j of the result predicts column ``L - keep + 1 + j`` of the ids, i.e. the
    last ``keep - 1`` tokens of every sequence (the response when ``keep = R_max + 1``).
    """
    return keep_logits(model, rows, keep, pad_id, vocab, runtime)[:, :-1]


def response_targets(batch: Sequence[TrainSequence], width: int, pad_id: int, device):
    """``(targets, mask)`` ``[B, width]`` for :func:`keep_logits` rows (``width = keep``): the
    response of length n fills columns ``width - 1 - n .. width - 2``; the last column is masked."""
    targets = torch.full((len(batch), width), pad_id, dtype=torch.long)
    for j, s in enumerate(batch):
        targets[j, width - 1 - s.n_response:width - 1] = torch.as_tensor(s.response, dtype=torch.long)
    mask = response_mask_right([s.n_response + 1 for s in batch], width, "cpu")
    mask[:, -1] = 0.0
    return to_device(targets, device), to_device(mask, device)
