"""The vanilla-KD token loss with both lm_heads folded in: full logits never exist.

Same loss as :func:`rock.distill.losses.token_losses` ([5.1, C]; Section 2.1 Eq. 1 for reverse KL),
computed from the final hidden states of student and teacher instead of their logits. Per chunk of
positions, the student's and teacher's logits are made by one matmul each, the KD/CE values and
``d loss / d student logits`` are computed exactly as in the logits path
(:func:`rock.distill.losses._chunk_into`), and the chunk's logits are dropped. Only the gradient
``G`` w.r.t. the student logits (``[positions x vocab]`` in the compute dtype, the buffer the
logits path returns as well) is kept; backward turns it into the gradients of the hidden states
and of the lm_head weight with two matmuls, as the lm_head's own backward would
(``G @ W`` and ``G^T @ h``). Liger-Kernel's fused linear losses are the reference design; they
also drop ``G`` by accumulating the weight gradient chunk by chunk.

Memory against the logits path: the student's and the teacher's ``[positions x vocab]`` logits
(two ``G``-sized buffers) and the lm_head's saved bf16 weight copy are gone. Used by
:class:`rock.distill.trainer.Trainer` on a single GPU (``fused_lm_head``); the CPU path keeps the
logits path, which the tests pin exactly.
"""

from __future__ import annotations

import torch

from rock.distill.losses import LossSpec, _chunk_into, chunk_rows, normalise, row_weights


class _FusedLinearTokenLoss(torch.autograd.Function):
    """Per-row loss from hidden states ``h [N, H]`` and lm_head weights ``w [V, H]``.

    ``w`` may be an fp32 master weight; matmuls run in ``dtype`` (bf16 on GPU under autocast,
    fp32 on CPU). Outputs as :class:`rock.distill.losses._ChunkedTokenLoss`: per-row loss
    (differentiable w.r.t. ``h`` and ``w``), KD and CE per row.
    """

    @staticmethod
    def forward(ctx, h, w, ht, wt, targets, active, kd_ratio, divergence, temperature, rows, dtype):
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        n, vocab = h.shape[0], w.shape[0]
        kd = torch.zeros(n, dtype=torch.float32, device=h.device)
        ce = torch.zeros(n, dtype=torch.float32, device=h.device)
        hc, wc = h.detach().to(dtype), w.detach().to(dtype)
        htc = None if ht is None else ht.detach().to(dtype)
        wtc = None if wt is None else wt.detach().to(dtype)
        grad = torch.empty((n, vocab), dtype=dtype, device=h.device) if need_grad else None
        use_kd, use_ce = kd_ratio > 0 and ht is not None, kd_ratio < 1
        with torch.no_grad():
            for a in range(0, n, rows):
                b = min(n, a + rows)
                s = hc[a:b] @ wc.T
                t = None if htc is None else htc[a:b] @ wtc.T
                _chunk_into(s, t, targets[a:b], active[a:b], kd[a:b], ce[a:b],
                            grad[a:b] if need_grad else None, kd_ratio if use_kd else 0.0, use_ce,
                            divergence, temperature)
                del s, t
            act = active.to(torch.float32)
            kd.mul_(act)
            ce.mul_(act)
            per_row = kd * kd_ratio + ce * (1.0 - kd_ratio)
        ctx.grad_buffer = grad
        ctx.save_for_backward(h, w)
        ctx.dtype = dtype
        ctx.mark_non_differentiable(kd, ce)
        return per_row, kd, ce

    @staticmethod
    def backward(ctx, grad_rows, _gkd, _gce):
        if not hasattr(ctx, "grad_buffer"):
            raise RuntimeError("fused distillation loss: backward called twice; "
                               "recompute the loss instead of retain_graph=True")
        g = ctx.grad_buffer
        del ctx.grad_buffer
        h, w = ctx.saved_tensors
        if g is None or grad_rows is None:
            return (None,) * 11
        g.mul_(grad_rows.to(g.dtype)[:, None])
        grad_h = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_h = (g @ w.to(ctx.dtype)).to(h.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = g.T @ h.to(ctx.dtype)
            del g                              # free G before the weight gradient's fp32 copy
            grad_w = grad_w.to(w.dtype)
        return grad_h, grad_w, None, None, None, None, None, None, None, None, None


def fused_token_losses(hidden: torch.Tensor, weight: torch.Tensor, teacher_hidden: torch.Tensor | None,
                       teacher_weight: torch.Tensor | None, targets: torch.Tensor, spec: LossSpec, *,
                       active: torch.Tensor | None = None, dtype: torch.dtype | None = None):
    """:func:`rock.distill.losses.token_losses` from hidden states (lm_heads folded in).

    Args:
        hidden: ``[..., H]`` student final hidden states (after the final norm); row i predicts
            ``targets[..., i]``. Gradient flows to it and to ``weight``.
        weight: ``[V, H]`` student lm_head weight (its first V rows: the shared vocabulary).
        teacher_hidden, teacher_weight: the teacher's ``[..., Ht]`` and ``[V, Ht]`` (constants),
            or None when ``spec.kd_ratio == 0``.
        dtype: matmul dtype (default: ``hidden``'s).
    Returns ``(loss, kd, ce)`` per row, fp32, shaped like ``targets``.
    """
    shape = targets.shape
    h = hidden.reshape(-1, hidden.shape[-1])
    ht = None if teacher_hidden is None else teacher_hidden.reshape(-1, teacher_hidden.shape[-1])
    act = (torch.ones(h.shape[0], dtype=torch.bool, device=h.device) if active is None
           else active.reshape(-1).to(device=h.device, dtype=torch.bool))
    rows = chunk_rows(weight.shape[0], spec.chunk_size, h.device)
    per_row, kd, ce = _FusedLinearTokenLoss.apply(
        h, weight, ht, teacher_weight, targets.reshape(-1).to(h.device), act, float(spec.kd_ratio),
        spec.divergence, float(spec.temperature), rows, dtype or hidden.dtype)
    return per_row.reshape(shape), kd.reshape(shape), ce.reshape(shape)


def fused_distill_loss(hidden, weight, teacher_hidden, teacher_weight, targets, mask, spec: LossSpec, *,
                       weights=None, normalization: str = "token_mean", denominator=None, dtype=None):
    """:func:`rock.distill.losses.distill_loss` from hidden states and lm_head weights."""
    w, denom = row_weights(mask, weights, normalization, denominator)
    per_row, kd, ce = fused_token_losses(hidden, weight, teacher_hidden, teacher_weight, targets, spec,
                                         active=w != 0, dtype=dtype)
    return normalise(per_row, kd, ce, w, denom, spec)
