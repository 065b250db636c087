"""Distillation losses over the full vocabulary, computed in chunks of positions.

Paper: per-token reverse KL of on-policy distillation (Section 2.1, Eq. 1), the sampled log-ratio
``l_t = log p_s(x_t) - log p_t(x_t)`` (Eq. 2), vanilla KD ``(1 - kd_ratio) * CE + kd_ratio * KD``
with forward KL in stage 1 and reverse KL in stage 2 (Section 5.1, Appendix C), and per-token
weights ``w(x_t, t)`` (Section 4.2, Eq. 19).

Alignment (the one rule every caller must follow). Row ``i`` of a logits matrix here is the
distribution that PREDICTS target token ``targets[i]``; for a causal LM run on ``ids`` that is
``logits[:, :-1]`` against ``ids[:, 1:]`` (:func:`shift_for_targets`). A weight ``w(x_t, t)`` for
token ``x_t`` therefore multiplies the loss of the row that predicts ``x_t`` (the logits at position
``t - 1``), never the row after it. (The authors' ``token_freeze_kd`` selects the mask on the
*input* token of each predicting position, which zeroes the token after a rock token; see
``shared/reference/README.md``.)

Normalisation (``normalization``), over all loss positions of one optimizer step (the global batch):
  * ``token_mean``: ``sum_t w_t * loss_t / sum_t mask_t``. With all weights 1 this is KDFlow's
    global-batch token mean; a frozen token (``w = 0``) still counts in the denominator, so freezing
    removes its gradient and leaves every other token's gradient unchanged (Eq. 19 read literally).
    Default.
  * ``weight_mean``: ``sum_t w_t * loss_t / sum_t w_t * mask_t``: the authors' freeze code. The
    remaining tokens are renormalised, so freezing also scales up every other token's gradient.

Memory. Nothing of shape ``[positions x vocab]`` in fp32 is ever materialised beyond one chunk of
``chunk_size`` positions (default: :data:`CHUNK_ELEMENTS` // vocab on CPU, :data:`CUDA_CHUNK_ELEMENTS`
// vocab on a GPU, where tiny chunks are launch-bound). The loss is a custom autograd
function that computes the gradient with respect to the student logits chunk by chunk during the
forward pass (as Liger-Kernel's fused losses do) and keeps it in the logits' own dtype; backward
only scales it. Peak extra memory is therefore one gradient-sized buffer in the logits dtype plus
one fp32 chunk, against about five fp32 ``[positions x vocab]`` tensors for the naive autograd
computation (``benchmarks/bench_kl.py`` measures it). Teacher logits are constants (no gradient).

KD temperature ``T`` divides both logits before the softmax; as in KDFlow, the loss is not
multiplied by ``T**2``. Cross-entropy always uses the untempered student logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rock.distill.vocab import shared_vocab, truncate_vocab  # noqa: F401  (re-exported)
from rock.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

#: KD divergences: forward KL(teacher || student) [C, stage 1], reverse KL(student || teacher) [2.1 Eq. 1]
DIVERGENCES = ("forward_kl", "reverse_kl")
#: loss normalisations (module docstring)
NORMALIZATIONS = ("token_mean", "weight_mean")
#: default fp32 elements per chunk (4M elements = 16 MiB per temporary); chunk_size = this // vocab.
#: ASSUMED: the paper gives no number; at V = 151,936 this is 27 positions per chunk and ~100 MiB
#: of fp32 temporaries, small next to the [positions x vocab] gradient in the logits' dtype that the
#: loss must return anyway (benchmarks/bench_kl.py), while a toy vocabulary (~1k) needs one chunk
#: per 4k positions. (Temporaries just under glibc's 32 MiB mmap ceiling stay in the heap after
#: they are freed, which is one more reason for keeping them well below it on CPU.)
CHUNK_ELEMENTS = 2**22
#: default fp32 elements per chunk on a GPU (16M elements = 64 MiB per temporary; 110 positions at
#: V = 151,936). ASSUMED from benchmarks/bench_kl.py --device cuda (issue 17, one H200): at 27
#: positions per chunk a GPU is launch-bound (1.6x the naive time); at 110, without a host sync per
#: chunk, 1.03x the naive time at 0.116x its peak (the returned [positions x vocab] gradient plus
#: three such temporaries, 4,096 positions); 512 positions cost 0.20x. The CPU default is unchanged.
CUDA_CHUNK_ELEMENTS = 2**24


#: default ``kd_ratio`` (here, in rock.distill.config.TrainConfig and so stage 2): the divergence
#: alone, no CE term [5.1, C]; stage 1 sets 0.5 (vanilla KD)
KD_RATIO = 1.0


@dataclass(frozen=True)
class LossSpec:
    """What to compute per token: ``(1 - kd_ratio) * CE + kd_ratio * divergence`` [5.1, C]."""

    divergence: str = "reverse_kl"
    kd_ratio: float = KD_RATIO
    temperature: float = 1.0
    chunk_size: int | None = None  # positions per chunk; None -> chunk_rows(vocab, device=...)

    def __post_init__(self):
        if self.divergence not in DIVERGENCES:
            raise ConfigError(f"loss '{self.divergence}' unknown; use one of {DIVERGENCES}")
        if not 0.0 <= self.kd_ratio <= 1.0:
            raise ConfigError(f"kd_ratio {self.kd_ratio} outside [0, 1]")
        if not self.temperature > 0:
            raise ConfigError(f"kd_temperature {self.temperature} must be > 0")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"chunk_size {self.chunk_size} must be >= 1")

    @property
    def uses_teacher(self) -> bool:
        """The loss has a KD term, so the teacher's logits are needed (``kd_ratio > 0``)."""
        return self.kd_ratio > 0

    @property
    def uses_ce(self) -> bool:
        """The loss has a CE term on the sampled tokens (``kd_ratio < 1``)."""
        return self.kd_ratio < 1


def chunk_rows(vocab: int, chunk_size: int | None = None, device=None) -> int:
    """Positions per chunk for a vocabulary of ``vocab`` entries on ``device`` (None = CPU).

    An explicit ``chunk_size`` wins; else :data:`CHUNK_ELEMENTS` // vocab on CPU and
    :data:`CUDA_CHUNK_ELEMENTS` // vocab on a GPU (larger chunks: small ones are launch-bound).
    """
    if chunk_size:
        return int(chunk_size)
    elements = CUDA_CHUNK_ELEMENTS if device is not None and torch.device(device).type == "cuda" \
        else CHUNK_ELEMENTS
    return max(1, elements // max(1, vocab))


def shift_for_targets(logits: torch.Tensor, input_ids: torch.Tensor):
    """Causal-LM alignment: ``(logits[:, :-1], input_ids[:, 1:])`` so row i predicts target i."""
    return logits[:, :-1], input_ids[:, 1:]


# --------------------------------------------------------------------------------------------
# per-chunk math (fp32); each returns values per row and, if asked, d value / d student logits
# --------------------------------------------------------------------------------------------

def _divergence_chunk(s: torch.Tensor, t: torch.Tensor, divergence: str, temperature: float,
                      with_grad: bool):
    """KD term per row of one chunk. ``s``, ``t``: [n, V] logits (any float dtype).

    reverse KL: ``sum_v p_s (log p_s - log p_t)``; d/dz_s = p_s (A - KL) / T with A = log p_s - log p_t.
    forward KL: ``sum_v p_t (log p_t - log p_s)``; d/dz_s = (p_s - p_t) / T.
    """
    # at most four fp32 [n, V] chunk buffers (plus _rowdot's product) live at once
    ls = _log_softmax(s, temperature)
    lt = _log_softmax(t, temperature)
    if divergence == "reverse_kl":
        ps = ls.exp()
        diff = ls.sub_(lt)                     # A = log p_s - log p_t (reuses ls's storage)
        del lt
        value = _rowdot(ps, diff)
        if not with_grad:
            return value, None
        grad = diff.sub_(value[:, None]).mul_(ps)
    else:
        pt = lt.exp()
        diff = lt.sub_(ls)                     # log p_t - log p_s (reuses lt's storage)
        value = _rowdot(pt, diff)
        if not with_grad:
            return value, None
        del diff
        grad = ls.exp_().sub_(pt)              # p_s - p_t (reuses ls's storage)
    if temperature != 1.0:
        grad.div_(temperature)
    return value, grad


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(-1)`` for ``[n, V]`` fp32 chunks.

    One chunk-sized temporary, on purpose: a ``bmm`` dot product avoids it but, at V = 151,936,
    is off by ~2e-4 nats from a float64 reference where the pairwise sum is off by ~4e-7.
    """
    return (a * b).sum(-1)


def _log_softmax(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 ``log_softmax(x / T)`` of one chunk without an extra scaled copy when ``T == 1``."""
    if temperature == 1.0:
        return torch.log_softmax(x, dim=-1, dtype=torch.float32)
    return torch.log_softmax(x.to(torch.float32, copy=True).div_(temperature), dim=-1)


def _ce_chunk(s: torch.Tensor, targets: torch.Tensor, with_grad: bool):
    """Cross-entropy ``-log p_s(target)`` per row; d/dz_s = p_s - onehot(target)."""
    ls = _log_softmax(s, 1.0)
    value = -ls.gather(-1, targets[:, None]).squeeze(-1)
    if not with_grad:
        return value, None
    grad = ls.exp_()
    grad.scatter_add_(-1, targets[:, None], torch.full_like(value[:, None], -1.0))
    return value, grad


def _chunk_into(s, t, targets, active, kd_out, ce_out, grad_out, kd_ratio, use_ce, divergence,
                temperature):
    """One chunk of :class:`_ChunkedTokenLoss`: KD and CE values into ``kd_out``/``ce_out`` and, if
    ``grad_out`` is given, ``active * d loss / d s`` into it (in its dtype). ``kd_ratio`` 0 = no KD.
    """
    with_grad = grad_out is not None
    g = None
    if kd_ratio > 0:
        kd_out[:], g_kd = _divergence_chunk(s, t, divergence, temperature, with_grad)
        g = g_kd
    if use_ce:
        ce_out[:], g_ce = _ce_chunk(s, targets, with_grad)
        if with_grad:
            if g is not None:
                g.mul_(kd_ratio)
            g_ce.mul_(1.0 - kd_ratio)
            g = g_ce if g is None else g.add_(g_ce)
            kd_ratio = 1.0                     # both terms already scaled
    if with_grad:
        # (g * kd_ratio) * active in one pass, written in grad_out's dtype: kd_ratio * active is
        # exactly kd_ratio or 0, so this equals the two multiplications and the copy it replaces
        factor = active.to(torch.float32)
        if kd_ratio != 1.0:
            factor = factor * kd_ratio
        torch.mul(g, factor[:, None], out=grad_out)


class _ChunkedTokenLoss(torch.autograd.Function):
    """Per-row ``(1 - r) * CE_i + r * KD_i`` with d/d student logits built chunk by chunk in forward.

    Inputs: student ``[N, V]``, teacher ``[N, V]`` or None, targets ``[N]``, active ``[N]`` bool
    (rows that are not active get 0 and no work). Outputs: the per-row loss ``[N]`` fp32
    (differentiable), and KD and CE ``[N]`` (not differentiable). The gradient buffer has the student
    logits' dtype and shape; backward scales its rows by the incoming per-row gradient.
    """

    @staticmethod
    def forward(ctx, student, teacher, targets, active, kd_ratio, divergence, temperature, rows):
        need_grad = ctx.needs_input_grad[0]
        n = student.shape[0]
        kd = torch.zeros(n, dtype=torch.float32, device=student.device)
        ce = torch.zeros(n, dtype=torch.float32, device=student.device)
        grad = torch.empty_like(student) if need_grad else None
        use_kd, use_ce = kd_ratio > 0 and teacher is not None, kd_ratio < 1
        # on CPU an all-inactive chunk is skipped; on a GPU that test is a host sync per chunk, so
        # every chunk is computed and inactive rows are zeroed by the row factor (same values)
        skip_inactive = student.device.type == "cpu"
        with torch.no_grad():
            for a in range(0, n, rows):
                b = min(n, a + rows)
                if skip_inactive and not bool(active[a:b].any()):
                    if need_grad:
                        grad[a:b].zero_()
                    continue
                _chunk_into(student[a:b], None if teacher is None else teacher[a:b], targets[a:b],
                            active[a:b], kd[a:b], ce[a:b], grad[a:b] if need_grad else None,
                            kd_ratio if use_kd else 0.0, use_ce, divergence, temperature)
            act = active.to(torch.float32)
            kd.mul_(act)
            ce.mul_(act)
            per_row = kd * kd_ratio + ce * (1.0 - kd_ratio)
        # kept as an attribute, not with save_for_backward: backward hands the buffer over (scaled in
        # place) and drops this reference, so autograd can keep it as the gradient without a copy
        ctx.grad_buffer = grad
        ctx.mark_non_differentiable(kd, ce)
        return per_row, kd, ce

    @staticmethod
    def backward(ctx, grad_rows, _gkd, _gce):
        if not hasattr(ctx, "grad_buffer"):
            raise RuntimeError("chunked distillation loss: backward called twice; "
                               "recompute the loss instead of retain_graph=True")
        grad = ctx.grad_buffer
        del ctx.grad_buffer
        if grad is None or grad_rows is None:
            return (None,) * 8
        grad.mul_(grad_rows.to(grad.dtype)[:, None])
        return grad, None, None, None, None, None, None, None


def token_losses(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor, spec: LossSpec, *, active: torch.Tensor | None = None):
    """Per-token vanilla-KD loss ``(1 - kd_ratio) * CE + kd_ratio * divergence`` [5.1, C].

    Row i of the logits predicts ``targets[..., i]``. Returns ``(loss, kd, ce)``, fp32, shaped like
    ``targets``; ``loss`` is differentiable w.r.t. ``student_logits``; rows where ``active`` is false
    are 0 and cost nothing. Teacher logits are constants.
    """
    vocab = student_logits.shape[-1]
    shape = targets.shape
    s = student_logits.reshape(-1, vocab)
    t = None
    if spec.kd_ratio > 0:
        if teacher_logits is None:
            raise ConfigError("kd_ratio > 0 needs teacher logits")
        if teacher_logits.shape != student_logits.shape:
            raise ModelError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                             f"{tuple(student_logits.shape)} differ; align both to the shared "
                             "vocabulary first (rock.distill.vocab.shared_vocab)")
        t = teacher_logits.reshape(-1, vocab).detach()
    act = (torch.ones(s.shape[0], dtype=torch.bool, device=s.device) if active is None
           else active.reshape(-1).to(device=s.device, dtype=torch.bool))
    per_row, kd, ce = _ChunkedTokenLoss.apply(
        s, t, targets.reshape(-1).to(s.device), act, float(spec.kd_ratio), spec.divergence,
        float(spec.temperature), chunk_rows(vocab, spec.chunk_size, s.device))
    return per_row.reshape(shape), kd.reshape(shape), ce.reshape(shape)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor, mask: torch.Tensor, spec: LossSpec, *,
                 weights: torch.Tensor | None = None, normalization: str = "token_mean",
                 denominator: float | torch.Tensor | None = None):
    """Weighted vanilla-KD loss over the masked rows, normalised (module docstring).

    Args:
        student_logits: ``[..., V]``; row i predicts ``targets[..., i]`` (gradient flows here).
        teacher_logits: ``[..., V]`` or None when ``spec.kd_ratio == 0``; treated as constants.
        targets: ``[...]`` token ids (used by CE).
        mask: ``[...]`` 1 where the row is a loss position (response token), else 0.
        weights: ``[...]`` per-token weight ``w(x_t, t)`` of Eq. 19 aligned with ``targets`` (the
            weight of token ``targets[i]`` applies to row i, the row that predicts it); None = 1.
        normalization: ``token_mean`` or ``weight_mean``.
        denominator: the normaliser over the whole global batch when this call sees only one
            micro-batch; None computes it from this call's ``mask``/``weights``.

    Returns:
        ``(loss, per_token)``: the scalar loss (differentiable w.r.t. ``student_logits``) and a dict
        of per-row fp32 tensors shaped like ``targets``: ``kd`` and ``ce`` (0 where not computed),
        and ``loss = (1 - kd_ratio) * ce + kd_ratio * kd`` (unweighted).
    """
    w, denom = row_weights(mask, weights, normalization, denominator)
    per_row, kd, ce = token_losses(student_logits, teacher_logits, targets, spec, active=w != 0)
    return normalise(per_row, kd, ce, w, denom, spec)


def row_weights(mask, weights, normalization: str, denominator=None):
    """``(w, denom)``: per-row weights ``weights * mask`` (fp32) and the normaliser (module docstring)."""
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"loss_normalization '{normalization}' unknown; use one of {NORMALIZATIONS}")
    m = mask.to(torch.float32)
    w = m if weights is None else weights.to(torch.float32) * m
    if denominator is None:
        denominator = float(w.sum() if normalization == "weight_mean" else m.sum())
    denom = float(denominator)
    if denom <= 0:  # nothing to learn from (all masked or all frozen): loss 0, gradient 0, no NaN
        denom = 1.0
    return w, denom


def normalise(per_row, kd, ce, w, denom: float, spec: LossSpec):
    """The scalar loss ``sum(w * per_row) / denom`` and the per-token dict of :func:`distill_loss`."""
    total = (per_row.double() * w.to(per_row.device).double()).sum() / denom
    return total.to(torch.float32), {"kd": kd, "ce": ce,
                                     "loss": spec.kd_ratio * kd + (1.0 - spec.kd_ratio) * ce}


@torch.no_grad()
def token_statistics(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     targets: torch.Tensor, *, temperature: float = 1.0,
                     chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """Per-position statistics on sampled tokens [2.1 Eq. 1-2; 2.3] (no gradient).

    Row i of the logits predicts ``targets[i]``. Returns fp32 tensors shaped like ``targets``:
      * ``reverse_kl``: ``KL(p_s || p_t)`` over the full vocabulary (Eq. 1 summand),
      * ``log_ratio``: ``l_t = log p_s(x_t) - log p_t(x_t)`` (Eq. 2),
      * ``student_entropy``, ``teacher_entropy``: ``-sum_v p log p``,
      * ``student_logprob``, ``teacher_logprob``: ``log p(x_t)``.
    """
    if teacher_logits.shape != student_logits.shape:
        raise ModelError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} differ; align both to the shared vocabulary")
    vocab = student_logits.shape[-1]
    shape = targets.shape
    s = student_logits.reshape(-1, vocab)
    t = teacher_logits.reshape(-1, vocab)
    y = targets.reshape(-1).to(s.device)
    n = s.shape[0]
    names = ("reverse_kl", "log_ratio", "student_entropy", "teacher_entropy",
             "student_logprob", "teacher_logprob")
    out = {k: torch.empty(n, dtype=torch.float32, device=s.device) for k in names}
    rows = chunk_rows(vocab, chunk_size, s.device)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        # at most ls, ps, lt, pt and _rowdot's product as fp32 [n, V] chunk buffers
        ls = _log_softmax(s[a:b], temperature)
        ps = ls.exp()
        out["student_entropy"][a:b] = -_rowdot(ps, ls)
        lt = _log_softmax(t[a:b], temperature)
        pt = lt.exp()
        out["teacher_entropy"][a:b] = -_rowdot(pt, lt)
        del pt
        lps = ls.gather(-1, y[a:b, None]).squeeze(-1)
        lpt = lt.gather(-1, y[a:b, None]).squeeze(-1)
        out["student_logprob"][a:b], out["teacher_logprob"][a:b] = lps, lpt
        out["log_ratio"][a:b] = lps - lpt
        out["reverse_kl"][a:b] = _rowdot(ps, lt.neg_().add_(ls))   # sum p_s (log p_s - log p_t)
    return {k: v.reshape(shape) for k, v in out.items()}


def naive_loss_reference(student_logits, teacher_logits, targets, mask, spec: LossSpec, *,
                         weights=None, normalization="token_mean"):
    """Unchunked float64 autograd reference of :func:`distill_loss` (tests and benchmarks only)."""
    s = student_logits.double()
    ls = F.log_softmax(s / spec.temperature, -1)
    lt = F.log_softmax(teacher_logits.double() / spec.temperature, -1) if teacher_logits is not None else None
    if spec.divergence == "reverse_kl":
        kd = (ls.exp() * (ls - lt)).sum(-1) if lt is not None else torch.zeros_like(ls[..., 0])
    else:
        kd = (lt.exp() * (lt - ls)).sum(-1)
    ce = -F.log_softmax(s, -1).gather(-1, targets[..., None]).squeeze(-1)
    per = spec.kd_ratio * kd + (1 - spec.kd_ratio) * ce
    m = mask.double()
    w = m if weights is None else weights.double() * m
    denom = w.sum() if normalization == "weight_mean" else m.sum()
    return (w * per).sum() / denom
