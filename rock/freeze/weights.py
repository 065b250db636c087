"""The per-token weight hook that turns a stage-2 run into a freeze regime [4.2, Eq. 19].

:class:`FreezeWeights` is called by the stage-2 trainer (:mod:`rock.distill.trainer`) once per
optimizer step with that step's sequences, after the rollouts and before the loss. It returns
token-aligned weights (``weights[b, t]`` multiplies the loss of the distribution that produced
``input_ids[b, t]``; see :mod:`rock.freeze.masks`) and a flat dict of counts for the per-step log.

* baseline (``selection: none``): weight 1 on every response token (the trainer's plain loss).
  The counts still say how many rock tokens it generates, so the rock share of the output
  tokens is measured in every regime (Sec. 4.3 says 18%, the take-away 30%); with
  ``window_anchor: high_loss`` the baseline asks for no per-token loss (no extra scoring pass,
  plain OPD wall-clock) and so logs no windows.
* ``rock``: ``lambda`` on ``x_t in R`` and ``t in W_R`` (masks.py).
* ``random``: ``lambda`` on windows W_S drawn by :func:`rock.freeze.control.sample_matched_windows`
  to match the W_R of the *same* rollouts in window length and token frequency. The sampler's own
  generator is seeded by ``(seed, step, rank)``; the hook never touches torch's, numpy's or
  Python's global RNG, so every regime sees the same rollout randomness from the trainer.

Columns added to the log (prefix ``freeze_``): ``response_tokens, frozen_tokens, rock_tokens,
window_only_tokens, frozen_windows, weight_sum, frozen_fraction`` for the applied weights, and
``rock_occurrences`` / ``rock_window_tokens`` / ``rock_windows`` for what Rock-Freeze would freeze
on these rollouts, and ``hook_seconds`` (the hook's own time, part of the step's wall-clock); the
random regime adds ``target_windows, matched_windows, fallback_windows, unmatched_windows,
unmatched_tokens`` and ``control_rock_window_overlap`` (frozen control positions that lie in R or
W_R: 0, since W_S is drawn outside W_R; a window that found no room is logged with its counts).
Every step also logs one INFO line with the frozen share (the rule's log shows it per step).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from rock.freeze.config import ControlConfig, Regime
from rock.freeze.control import MatchAccumulator, sample_matched_windows
from rock.freeze.masks import (count_runs, mask_stats, rock_membership, rock_window_masks,
                               weights_from_frozen)

log = logging.getLogger(__name__)


@dataclass
class FreezeWeights:
    """Weight hook of one regime. ``token_freq[v]`` is Freq(v) from detection (0 if unseen).

    The random control of step ``s`` on rank ``r`` is drawn with ``np.random.default_rng([seed, s,
    r])``; the hook counts steps itself (``step``), so a resumed run sets ``step`` to the resumed
    optimizer step.
    """

    regime: Regime
    rock_ids: list[int]
    radius: int
    token_freq: np.ndarray
    anchor: str = "all"
    loss_threshold: float | None = None
    control: ControlConfig = field(default_factory=ControlConfig)
    seed: int = 0
    rank: int = 0
    """data-parallel rank: each rank draws its own control windows for its own rollouts"""
    step: int = 0
    """optimizer step of the next call (counted by the hook; set it when a run resumes)"""
    on_step: Callable[[int, dict, MatchAccumulator | None], None] | None = None
    """called once per step with (step, the step's counts, the step's W_R/W_S histograms or None
    outside the random regime), e.g. to persist them (rock.freeze.train.StepRecorder)"""
    match: MatchAccumulator = field(init=False)

    def __post_init__(self):
        self.rock_ids = sorted({int(v) for v in self.rock_ids})
        self._rock_tensor = torch.tensor(self.rock_ids, dtype=torch.long)
        self.token_freq = np.asarray(self.token_freq, dtype=np.int64)
        self.match = MatchAccumulator(bin_base=self.control.bin_base)
        if self.regime.freezes and not self.rock_ids:
            log.warning("regime %s: the Rock set is empty, nothing will be frozen", self.regime.name)

    @property
    def needs_loss(self) -> bool:
        """Whether the trainer must pass the per-token loss (``anchor='high_loss'`` in a regime
        that freezes); the name is the attribute :class:`rock.distill.trainer.Trainer` looks for.
        The loss costs the trainer a no-grad scoring pass per step, so the baseline (which
        freezes nothing) does not ask for it: its wall-clock stays plain OPD's, and it logs the
        rock-token count only (no loss, no high-divergence windows)."""
        return self.anchor == "high_loss" and self.regime.freezes

    def __call__(self, input_ids: torch.Tensor, response_mask: torch.Tensor,
                 token_loss: torch.Tensor | None = None, *,
                 step: int | None = None) -> tuple[torch.Tensor, dict]:
        """Weights ``[B, L]`` (token-aligned, float32) and the log counts of one optimizer step.

        The call signature is the trainer's ``weighter(input_ids, response_mask, token_loss)``
        (:mod:`rock.distill.trainer`), called once per optimizer step with that step's sequences.

        Args:
            input_ids: ``[B, L]`` prompt + response (+ padding) ids of the step's sequences.
            response_mask: ``[B, L]``, true on the response tokens (the loss positions).
            token_loss: ``[B, L]`` token-aligned per-token loss, only for ``anchor='high_loss'``.
            step: optimizer step (seeds the random control); default: the hook's own counter.
        """
        t0 = time.perf_counter()
        if step is None:
            step = self.step
        self.step = int(step) + 1
        ids = input_ids.detach().cpu()
        resp = response_mask.detach().cpu().bool()
        loss = token_loss.detach().cpu() if token_loss is not None else None
        if self.needs_loss and loss is None:
            raise ValueError("freeze.window_anchor 'high_loss' needs the per-token loss from the "
                             "trainer (token_loss); use window_anchor 'all' otherwise")
        is_rock, rock_frozen, extra = self._rock_sets(ids, resp, loss)
        sel, lam = self.regime.selection, float(self.regime.lam)
        step_acc = None
        if sel == "none":
            frozen = torch.zeros_like(resp)
        elif sel == "rock":
            frozen = rock_frozen
        else:
            frozen, step_acc = self._control_windows(ids, resp, rock_frozen, step, extra)
        weights = weights_from_frozen(frozen, resp, lam)
        stats = mask_stats(frozen, is_rock, resp, weights).as_dict()
        stats.update(extra)
        stats["freeze_hook_seconds"] = time.perf_counter() - t0
        log.info("regime %s step %d: frozen %d of %d response tokens (%.1f%%); %d rock tokens, "
                 "%s tokens in R or W_R", self.regime.name, step, stats["freeze_frozen_tokens"],
                 stats["freeze_response_tokens"], 100 * stats["freeze_frozen_fraction"],
                 extra["freeze_rock_occurrences"], extra.get("freeze_rock_window_tokens", "n/a"))
        if self.on_step is not None:
            self.on_step(int(step), stats, step_acc if sel == "random" else None)
        return weights.to(input_ids.device), stats

    def _rock_sets(self, ids: torch.Tensor, resp: torch.Tensor, loss: torch.Tensor | None):
        """``(is_rock, rock_frozen, counts)``: rock occurrences and the Rock-Freeze set (R or W_R)."""
        if self.anchor == "high_loss" and loss is None:  # the baseline: rock tokens only
            rock_frozen = is_rock = rock_membership(ids, self._rock_tensor) & resp
            return is_rock, rock_frozen, {"freeze_rock_occurrences": int(is_rock.sum())}
        is_rock, in_window = rock_window_masks(ids, resp, self._rock_tensor, self.radius,
                                               anchor=self.anchor, token_loss=loss,
                                               loss_threshold=self.loss_threshold)
        rock_frozen = is_rock | in_window
        return is_rock, rock_frozen, {"freeze_rock_occurrences": int(is_rock.sum()),
                                      "freeze_rock_window_tokens": int(rock_frozen.sum()),
                                      "freeze_rock_windows": count_runs(rock_frozen)}

    def _control_windows(self, ids: torch.Tensor, resp: torch.Tensor, rock_frozen: torch.Tensor,
                         step: int, extra: dict):
        """``(frozen, step accumulator)`` of the random control W_S (:func:`sample_matched_windows`,
        seeded by ``(seed, step, rank)``); adds its counts to ``extra`` and merges the accumulator."""
        rng = np.random.default_rng([int(self.seed), int(step), int(self.rank)])
        sample = sample_matched_windows(
            ids.numpy(), resp.numpy(), rock_frozen.numpy(), self.rock_ids, self.token_freq, rng,
            bin_base=self.control.bin_base, exclude_rock_centres=self.control.exclude_rock_centres,
            max_tries=self.control.max_tries, max_bin_distance=self.control.max_bin_distance,
            n_proposals=self.control.n_proposals)
        step_acc = MatchAccumulator(bin_base=self.control.bin_base)
        step_acc.update(ids.numpy(), rock_frozen.numpy(), sample.mask, self.token_freq)
        self.match.merge(step_acc)
        frozen = torch.from_numpy(sample.mask)
        extra.update({"freeze_control_rock_window_overlap": int((frozen & rock_frozen).sum()),
                      "freeze_target_windows": sample.n_target_spans,
                      "freeze_matched_windows": sample.n_matched,
                      "freeze_fallback_windows": sample.n_fallback,
                      "freeze_unmatched_windows": sample.n_unmatched,
                      "freeze_unmatched_tokens": sample.unmatched_tokens})
        if sample.n_unmatched:
            log.warning("regime %s step %d: %d of %d W_R windows (%d of %d tokens) found no "
                        "matched place outside W_R; W_S freezes %d tokens", self.regime.name,
                        step, sample.n_unmatched, sample.n_target_spans,
                        sample.unmatched_tokens, sample.target_tokens, sample.control_tokens)
        return frozen, step_acc
