"""Freeze masks: the per-position weights w(x_t, t) of the window-aware reweighted OPD loss [4.2].

Paper, Eq. 18-19::

    W_R = union_{v in R} W(v)
    L_weighted = E_{x ~ pi_theta} sum_t w(x_t, t) * l_t,   w(x_t, t) = lambda  if x_t in R or t in W_R
                                                                      1       otherwise

Alignment (the one thing that is easy to get wrong)
---------------------------------------------------
``l_t`` is the loss of *generating* token ``x_t``: it is computed from the student/teacher
distributions at the position that predicts ``x_t``, i.e. from the logits at index ``t - 1`` of a
causal LM. Every function here returns weights **aligned with token positions** (``weights[b, t]``
multiplies ``l_t``, the loss of the distribution that produced ``input_ids[b, t]``). Use
:func:`to_logit_positions` to get the ``[B, L-1]`` tensor aligned with ``logits[:, :-1]``.
The authors' ``token_freeze_kd`` selected the mask from the *input* token at each predicting
position, which freezes the token after a rock token (reference/README.md); a unit test pins that
this module never does that.

Windows at training time
------------------------
Sec. 4.2: "let W(v) denote the local high-divergence window associated with each candidate token
v in R"; "Rock-Freeze ... sets lambda = 0 for all tokens in R and their associated
high-divergence windows W_R". Detection (Sec. 2.2, Eq. 5-11) opens W(v) only around the
*persistent high-loss* occurrences of v (``l_pre >= tau_pre`` and ``l_post >= tau_post``), never
around every occurrence of v (rock.detect.core.rock_windows). At training time the rollouts are
new, so ``W_R`` is recomputed on each rollout batch: a window of radius ``w`` (Eq. 6) around every
*anchor*, clipped to the response (a window never reaches into the prompt or the padding).

``anchor="high_loss"`` (default of ``freeze.window_anchor``): an occurrence of a token in R is an
anchor only where its current token-level loss ``l_t`` (the per-token reverse KL of the step's
rollouts) is at least a threshold; by default (``freeze.anchor_loss_threshold: null``) the
threshold is detection's, ``max(tau_pre, tau_post)`` in loss units (info.json), i.e. the occurrence
would count as high-loss under both checkpoints' cuts of Eq. 5 (ASSUMED: a fresh rollout is scored
by one model only, the current student, so "persistent" cannot be observed across checkpoints;
the context filter of Eq. 10-11 is already folded into R by detection). The rock tokens themselves
are still weighted lambda wherever they occur (Eq. 19 reads "x_t in R *or* t in W_R").
``anchor="all"`` (ASSUMED alternative, the behaviour before issue 13): every occurrence of a token
in R opens a window. It needs no loss, but on the toy it froze 69% of the response tokens
(paper: rocks are "approximately 18%" of the output tokens, Sec. 4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: anchor rules for W_R (see module docstring)
ANCHORS = ("all", "high_loss")


@dataclass(frozen=True)
class MaskStats:
    """Counts for one rollout batch, logged per training step (Sec. 4.2; issue 7, item 2).

    ``frozen_tokens``: response positions weighted lambda (Rock-Freeze: ``x_t in R or t in W_R``);
    ``rock_tokens``: frozen positions with ``x_t in R`` (Rock-Freeze: every rock occurrence);
    ``window_only_tokens``: frozen positions that are not rock tokens themselves;
    ``frozen_windows``: maximal contiguous frozen runs (overlapping windows merge into one); ``response_tokens``: all response positions;
    ``weight_sum``: sum of the weights over the response ("tokens trained on").
    """

    response_tokens: int
    frozen_tokens: int
    rock_tokens: int
    window_only_tokens: int
    frozen_windows: int
    weight_sum: float

    @property
    def frozen_fraction(self) -> float:
        return self.frozen_tokens / self.response_tokens if self.response_tokens else 0.0

    def as_dict(self, prefix: str = "freeze_") -> dict[str, float]:
        row = {f"{prefix}{k}": v for k, v in self.__dict__.items()}
        row[f"{prefix}frozen_fraction"] = self.frozen_fraction
        return row


def rock_membership(input_ids: torch.Tensor, rock_ids: torch.Tensor | list[int]) -> torch.Tensor:
    """``[B, L]`` bool: ``input_ids[b, t] in R``."""
    rock = torch.as_tensor(list(rock_ids) if not torch.is_tensor(rock_ids) else rock_ids,
                           dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, rock)


def dilate(anchors: torch.Tensor, radius: int) -> torch.Tensor:
    """``[B, L]`` bool: positions within ``radius`` of an anchor (``|t - s| <= radius``), Eq. 6.

    ``radius = 0`` returns the anchors themselves.
    """
    if radius < 0:
        raise ValueError(f"window radius must be >= 0, got {radius}")
    if radius == 0 or anchors.numel() == 0:
        return anchors.clone()
    x = anchors.to(torch.float32).unsqueeze(1)  # [B, 1, L]
    out = torch.nn.functional.max_pool1d(x, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return out.squeeze(1) > 0


def rock_window_masks(input_ids: torch.Tensor, response_mask: torch.Tensor,
                      rock_ids: torch.Tensor | list[int], radius: int, *,
                      anchor: str = "all", token_loss: torch.Tensor | None = None,
                      loss_threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rock positions and the window union ``W_R`` of a rollout batch (Eq. 6, 18).

    Args:
        input_ids: ``[B, L]`` token ids (prompt + response + padding).
        response_mask: ``[B, L]`` bool/int, true on response tokens (the positions that carry a loss).
        rock_ids: the Rock set R (token ids).
        radius: window radius ``w`` (``0`` = token-level freeze).
        anchor: ``"all"`` or ``"high_loss"`` (module docstring).
        token_loss: ``[B, L]`` per-position loss ``l_t`` aligned with token positions; required
            for ``anchor="high_loss"``.
        loss_threshold: anchors need ``token_loss >= loss_threshold`` (``anchor="high_loss"``).

    Returns:
        ``(is_rock, in_window)``, both ``[B, L]`` bool and zero outside the response.
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    resp = response_mask.bool()
    is_rock = rock_membership(input_ids, rock_ids) & resp
    anchors = is_rock
    if anchor == "high_loss":
        if token_loss is None or loss_threshold is None:
            raise ValueError("anchor='high_loss' needs token_loss and loss_threshold")
        anchors = anchors & (token_loss.detach() >= loss_threshold)
    in_window = dilate(anchors, radius) & resp
    return is_rock, in_window


def weights_from_frozen(frozen: torch.Tensor, response_mask: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 19: ``lambda`` on frozen response positions, 1 on the other response positions, 0 off
    the response (those positions carry no loss). ``[B, L]`` float32, token-aligned."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    resp = response_mask.bool()
    w = torch.ones(frozen.shape, dtype=torch.float32, device=frozen.device)
    w = torch.where(frozen & resp, torch.full_like(w, lam), w)
    return w * resp.to(w.dtype)


def count_runs(mask: torch.Tensor) -> int:
    """Number of maximal runs of ``True`` along the last axis (summed over the batch)."""
    m = mask.bool()
    if m.numel() == 0:
        return 0
    starts = m.clone()
    starts[..., 1:] = m[..., 1:] & ~m[..., :-1]
    return int(starts.sum())


def mask_stats(frozen: torch.Tensor, is_rock: torch.Tensor, response_mask: torch.Tensor,
               weights: torch.Tensor) -> MaskStats:
    resp = response_mask.bool()
    frozen = frozen & resp
    return MaskStats(
        response_tokens=int(resp.sum()),
        frozen_tokens=int(frozen.sum()),
        rock_tokens=int((is_rock & frozen).sum()),
        window_only_tokens=int((frozen & ~is_rock).sum()),
        frozen_windows=count_runs(frozen),
        weight_sum=float(weights[resp].sum()),
    )


def rock_freeze_weights(input_ids: torch.Tensor, response_mask: torch.Tensor,
                        rock_ids: torch.Tensor | list[int], radius: int, lam: float, *,
                        anchor: str = "all", token_loss: torch.Tensor | None = None,
                        loss_threshold: float | None = None) -> tuple[torch.Tensor, MaskStats]:
    """Weights ``w(x_t, t)`` of Eq. 19 for a rollout batch, token-aligned, with their counts.

    ``weights[b, t] = lambda`` if ``input_ids[b, t] in R`` or ``t in W_R`` (windows of radius
    ``radius`` around anchor occurrences, clipped to the response); ``1`` on the other response
    positions; ``0`` off the response. See :func:`rock_window_masks` for the arguments.
    """
    is_rock, in_window = rock_window_masks(input_ids, response_mask, rock_ids, radius, anchor=anchor,
                                           token_loss=token_loss, loss_threshold=loss_threshold)
    frozen = is_rock | in_window
    weights = weights_from_frozen(frozen, response_mask, lam)
    return weights, mask_stats(frozen, is_rock, response_mask, weights)


def to_logit_positions(weights: torch.Tensor) -> torch.Tensor:
    """Token-aligned ``[B, L]`` weights -> ``[B, L-1]`` aligned with ``logits[:, :-1]``.

    ``logits[:, p]`` predicts ``input_ids[:, p + 1]``, so its weight is ``weights[:, p + 1]``.
    """
    return weights[:, 1:]
