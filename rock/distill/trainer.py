"""The optimisation step shared by stage 1 (off-policy) and stage 2 (on-policy) KD [5.1, C].

One call of :meth:`Trainer.step` takes the sequences of one optimizer step (the global batch, or
this rank's share of it), runs the frozen teacher and the student on them in micro-batches, and
accumulates the gradient of the chunked vanilla-KD loss (:mod:`rock.distill.losses`) over the
response tokens only; then it clips, steps AdamW and the learning-rate schedule.

A :class:`TrainSequence` is ``student_ids = student prompt + response`` and ``teacher_ids =
teacher prompt + the same response`` (the teacher prompt may carry the toy's hidden system message,
so the two prompts differ in length). Both sides are LEFT padded, so the response tokens of every
sequence end at the last column on both sides and the logits of the last ``R + 1`` positions line
up row by row (``logits_to_keep``; row i predicts target i, losses module docstring).

Token weights (Eq. 19) are pluggable: ``weighter(input_ids, response_mask, token_loss)`` gets the
student-side ``[B, L]`` ids and response mask of the step's sequences (and, if its attribute
``needs_loss`` is true, the per-token reverse KL ``[B, L]`` of a scoring pass) and returns
token-aligned ``[B, L]`` weights (``weights[b, t]`` multiplies the loss of generating token ``t``),
optionally with a dict of counts for the step log (e.g. ``rock.freeze.masks.rock_freeze_weights``).

Precision: CPU runs are fp32. On GPU the student keeps fp32 master weights and runs under bf16
autocast (or FSDP2 mixed precision), the teacher is loaded in bf16 (Appendix C: bf16).

GPU speed (issue 17, ``benchmarks/bench_train_step.py``): no host sync inside the micro-batch loop
(sums stay on the device; inputs are copied without blocking); on one GPU the lm_heads are folded
into the loss (:mod:`rock.distill.fused`: no ``[positions x vocab]`` logits, teacher or student);
no logits for prompt positions; fused AdamW; with ``compile_layers`` each decoder block runs
``torch.compile``'d inside the trainer's passes. The forward helpers (and :class:`TrainSequence`)
live in :mod:`rock.distill.forward`, device and model loading in :mod:`rock.distill.runtime`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from rock.distill.config import TrainConfig
from rock.distill.forward import (TrainSequence, blocks_compiled, compile_blocks, keep_hidden,  # noqa: F401
                                  keep_logits, left_pad, plain_lm_head, response_logits,
                                  response_mask_right, response_targets)
from rock.distill.losses import distill_loss, token_statistics
from rock.distill.runtime import Runtime, load_causal_lm, make_runtime  # noqa: F401  (re-exported)
from rock.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    """What one optimizer step did (a row of the per-step log)."""

    loss: float = 0.0
    mean_kd: float = 0.0
    mean_ce: float = 0.0
    n_sequences: int = 0
    n_response_tokens: int = 0
    n_frozen_tokens: int = 0
    weight_sum: float = 0.0
    grad_norm: float = 0.0
    lr: float = 0.0
    extra: dict = field(default_factory=dict)
    token_rows: dict | None = None


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup over ``ceil(warmup_ratio * total_steps)`` steps, then ``cfg.lr_scheduler``."""
    from transformers import get_scheduler

    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    if cfg.lr_scheduler == "cosine_with_min_lr":
        return get_scheduler("cosine_with_min_lr", optimizer, num_warmup_steps=warmup,
                             num_training_steps=total_steps,
                             scheduler_specific_kwargs={"min_lr": cfg.min_lr})
    if cfg.lr_scheduler == "linear":
        return get_scheduler("linear", optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=warmup)


Weighter = Callable[..., "torch.Tensor | tuple[torch.Tensor, dict]"]


class Trainer:
    """Optimizer, schedule and the KD update of one global batch (module docstring)."""

    def __init__(self, student, teacher, cfg: TrainConfig, runtime: Runtime, *, total_steps: int,
                 vocab: int, pad_id: int, weighter: Weighter | None = None,
                 fused_lm_head: bool | None = None):
        self.student, self.teacher, self.cfg, self.runtime = student, teacher, cfg, runtime
        # lm_heads folded into the loss (rock.distill.fused): on by default on one GPU; the CPU
        # path keeps the model's logits (exact, tested); FSDP2 shards the lm_head with the root
        if fused_lm_head is None:
            fused_lm_head = runtime.device.type == "cuda" and not runtime.distributed
        self.fused_lm_head = bool(fused_lm_head) and plain_lm_head(student) is not None and \
            (teacher is None or plain_lm_head(teacher) is not None)
        self.vocab, self.pad_id, self.weighter = vocab, pad_id, weighter
        self.spec = cfg.loss_spec
        self._compiled = []
        if cfg.compile_layers and runtime.device.type == "cuda":
            self._compiled = [pair for m in (student, teacher) if m is not None
                              for pair in compile_blocks(m)]
            log.info("torch.compile on %d decoder blocks of student and teacher", len(self._compiled))
        params = [p for p in student.parameters() if p.requires_grad]
        # one fused kernel for the whole update on a single GPU (same maths as the default)
        fused = True if runtime.device.type == "cuda" and not runtime.distributed else None
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                           weight_decay=cfg.weight_decay, eps=1e-8, fused=fused)
        self.scheduler = make_scheduler(self.optimizer, cfg, max(1, total_steps))

    # --- token weights -----------------------------------------------------------------------
    def _weights(self, seqs: Sequence[TrainSequence]):
        """Per-sequence response weights (aligned with response tokens) and the weighter's counts."""
        if self.weighter is None:
            return None, {}
        ids, _, _ = left_pad([s.student_ids for s in seqs], self.pad_id, self.runtime.device)
        resp = response_mask_right([s.n_response for s in seqs], ids.shape[1], ids.device)
        token_loss = None
        if getattr(self.weighter, "needs_loss", False):
            token_loss = self.score(seqs)["reverse_kl_tokens"]
        out = self.weighter(ids, resp.bool(), token_loss)
        w, counts = (out if isinstance(out, tuple) else (out, {}))
        if hasattr(counts, "as_dict"):
            counts = counts.as_dict()
        if tuple(w.shape) != tuple(ids.shape):
            raise ConfigError(f"token weights have shape {tuple(w.shape)}, expected {tuple(ids.shape)} "
                              "(token-aligned, like input_ids)")
        per_seq = [w[i, ids.shape[1] - s.n_response:].float() for i, s in enumerate(seqs)]
        return per_seq, dict(counts)

    def _micro_batches(self, seqs: Sequence[TrainSequence]) -> list[list[int]]:
        """Indices of ``seqs`` in micro-batches of similar lengths (less padding); the loss is
        normalised by the global denominator, so the grouping does not change it."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].student_ids))
        mb = self.cfg.micro_batch
        return [order[i:i + mb] for i in range(0, len(seqs), mb)]

    @torch.no_grad()
    def score(self, seqs: Sequence[TrainSequence]) -> dict:
        """No-grad per-token statistics of ``seqs`` (reverse KL etc.), token-aligned ``[B, L]``.

        One forward of each model per micro-batch (length-sorted, as in :meth:`step`).
        """
        width = max(len(s.student_ids) for s in seqs)
        out = torch.zeros((len(seqs), width), dtype=torch.float32, device=self.runtime.device)
        with blocks_compiled(self._compiled):
            self._score_into(out, seqs)
        return {"reverse_kl_tokens": out}

    def _score_into(self, out: torch.Tensor, seqs: Sequence[TrainSequence]) -> None:
        width = out.shape[1]
        for idx in self._micro_batches(seqs):
            batch = [seqs[i] for i in idx]
            keep = max(s.n_response for s in batch) + 1
            ls = keep_logits(self.student, [s.student_ids for s in batch], keep, self.pad_id,
                             self.vocab, self.runtime)
            lt = keep_logits(self.teacher, [s.teacher_ids for s in batch], keep, self.pad_id,
                             self.vocab, self.runtime)
            targets, _ = response_targets(batch, keep, self.pad_id, ls.device)
            st = token_statistics(ls, lt, targets, temperature=self.spec.temperature,
                                  chunk_size=self.spec.chunk_size)["reverse_kl"]
            for j, (i, s) in enumerate(zip(idx, batch)):
                out[i, width - s.n_response:] = st[j, keep - 1 - s.n_response:keep - 1]

    # --- one optimizer step ------------------------------------------------------------------
    def step(self, seqs: Sequence[TrainSequence], *, keep_token_rows: bool = False) -> StepResult:
        """KD update on ``seqs`` (this rank's share of the global batch).

        The per-micro-batch sums stay on the device; the host reads them once, after the
        optimizer step (no host sync inside the micro-batch loop on a GPU).
        """
        cfg, rt = self.cfg, self.runtime
        self.student.train()
        weights, counts = self._weights(seqs) if seqs else (None, {})
        n_tok = sum(s.n_response for s in seqs)
        if weights is not None:
            w_all = torch.cat(weights) if weights else torch.zeros(0)
            w_sum, n_frozen = torch.stack([w_all.sum(), (w_all != 1).sum()]).double().tolist()
        else:
            w_sum, n_frozen = float(n_tok), 0
        g_tok, g_w = rt.all_sum([n_tok, w_sum])
        denominator = g_w if cfg.loss_normalization == "weight_mean" else g_tok
        with blocks_compiled(self._compiled):
            sums, records = self.accumulate(seqs, weights, denominator, keep_token_rows)
        grad_norm = self._clip()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, kd_sum, ce_sum = sums.tolist()
        g_loss, g_kd, g_ce, g_seq, g_frozen = rt.all_sum([loss_sum, kd_sum, ce_sum, len(seqs), n_frozen])
        return StepResult(loss=g_loss, mean_kd=g_kd / g_tok if g_tok else float("nan"),
                          mean_ce=g_ce / g_tok if g_tok and self.spec.uses_ce else float("nan"),
                          n_sequences=int(g_seq),
                          n_response_tokens=int(g_tok), n_frozen_tokens=int(g_frozen), weight_sum=g_w,
                          grad_norm=grad_norm, lr=lr, extra=counts, token_rows=records)

    def accumulate(self, seqs: Sequence[TrainSequence], weights, denominator: float,
                   keep_token_rows: bool = False):
        """Forward and backward of every micro-batch: gradients accumulate in the student.

        Returns ``(sums, records)``: the device tensor ``[loss, sum kd, sum ce]`` (float64) over
        this rank's response tokens, and the per-token rows (or None) of ``keep_token_rows``.
        """
        rt = self.runtime
        micro = self._micro_batches(seqs)
        n_micro = rt.all_max(len(micro))
        sums = torch.zeros(3, dtype=torch.float64, device=rt.device)
        kept = []
        for m in range(n_micro):
            idx = micro[m] if m < len(micro) else []
            if idx:
                batch = [seqs[i] for i in idx]
                w_b = [weights[i] for i in idx] if weights is not None else None
            else:  # FSDP needs the same collectives on every rank: a zero-weight dummy
                batch = [TrainSequence("dummy", [self.pad_id] * 2, [self.pad_id] * 2, 1)]
                w_b = [torch.zeros(1, device=rt.device)]
            loss, per, mask, wmat = self._micro_loss(batch, w_b, denominator, dummy=not idx)
            # each rank's loss is already normalised by the global denominator; FSDP averages
            # gradients over ranks, so multiply by the world size to get their sum
            (loss * rt.world).backward()
            sums += torch.stack([loss.detach().double(), (per["kd"] * mask).sum().double(),
                                 (per["ce"] * mask).sum().double()])
            if keep_token_rows and idx:
                kept.append((batch, per["kd"], per["ce"], wmat))
            del loss, per
        return sums, (_token_rows(kept) if keep_token_rows else None)

    def _micro_loss(self, batch: Sequence[TrainSequence], w_b, denominator: float, *, dummy: bool):
        """Loss of one micro-batch over :func:`keep_logits` rows (the last row is masked)."""
        rt = self.runtime
        keep = max(s.n_response for s in batch) + 1
        if self.fused_lm_head:
            return self._fused_micro_loss(batch, w_b, denominator, keep, dummy=dummy)
        t_logits = None
        if self.spec.uses_teacher:
            with torch.no_grad():
                t_logits = keep_logits(self.teacher, [s.teacher_ids for s in batch], keep,
                                       self.pad_id, self.vocab, rt)
        s_logits = keep_logits(self.student, [s.student_ids for s in batch], keep, self.pad_id,
                               self.vocab, rt)
        targets, mask, wmat = self._targets_and_weights(batch, w_b, keep, dummy)
        loss, per = distill_loss(s_logits, t_logits, targets, mask, self.spec, weights=wmat,
                                 normalization=self.cfg.loss_normalization, denominator=denominator)
        return loss, per, mask, wmat

    def _targets_and_weights(self, batch, w_b, keep: int, dummy: bool):
        targets, mask = response_targets(batch, keep, self.pad_id, self.runtime.device)
        if w_b is None:
            wmat = mask
        else:
            wmat = torch.zeros((len(batch), keep), dtype=torch.float32, device=self.runtime.device)
            for j, s in enumerate(batch):
                wmat[j, keep - 1 - s.n_response:keep - 1] = w_b[j].to(self.runtime.device)
        return targets, (torch.zeros_like(mask) if dummy else mask), wmat

    def _fused_micro_loss(self, batch, w_b, denominator: float, keep: int, *, dummy: bool):
        """:meth:`_micro_loss` from hidden states, the lm_heads folded into the loss."""
        from rock.distill.fused import fused_distill_loss

        rt, v = self.runtime, self.vocab
        h_t = w_t = None
        if self.spec.uses_teacher:
            with torch.no_grad():
                h_t = keep_hidden(self.teacher, [s.teacher_ids for s in batch], keep, self.pad_id, rt)
            w_t = plain_lm_head(self.teacher)[:v]
        h_s = keep_hidden(self.student, [s.student_ids for s in batch], keep, self.pad_id, rt)
        targets, mask, wmat = self._targets_and_weights(batch, w_b, keep, dummy)
        loss, per = fused_distill_loss(h_s, plain_lm_head(self.student)[:v], h_t, w_t, targets, mask,
                                       self.spec, weights=wmat, normalization=self.cfg.loss_normalization,
                                       denominator=denominator, dtype=rt.dtype)
        return loss, per, mask, wmat

    def _clip(self) -> float:
        params = [p for p in self.student.parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        if self.runtime.distributed:
            from rock.distill import fsdp

            return fsdp.clip_grad_norm(params, max_norm)
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def _token_rows(kept) -> dict:
    """Per-token rows ``{key, index, token_id, kd, ce, weight}`` of the kept micro-batches; the
    device tensors are read in one transfer."""
    records = {"key": [], "index": [], "token_id": [], "kd": [], "ce": [], "weight": []}
    if not kept:
        return records
    host = torch.cat([torch.stack([kd, ce, w]).reshape(3, -1) for _, kd, ce, w in kept], 1).cpu()
    col = 0
    for batch, kd, _, _ in kept:
        width = kd.shape[1]
        block = host[:, col:col + kd.numel()].reshape(3, len(batch), width)
        col += kd.numel()
        for j, s in enumerate(batch):
            sl = slice(width - 1 - s.n_response, width - 1)
            records["key"] += [s.key] * s.n_response
            records["index"] += list(range(s.n_response))
            records["token_id"] += s.response
            records["kd"] += block[0, j, sl].tolist()
            records["ce"] += block[1, j, sl].tolist()
            records["weight"] += block[2, j, sl].tolist()
    return records
