"""Configuration of the freeze-training stage (config section ``freeze``; paper Section 4.2, 5.2).

A *regime* is one stage-2 on-policy KD run from the stage-1 checkpoint with the same seeds as every
other regime, differing only in the per-token weights ``w(x_t, t)`` of Eq. 19:

* ``selection: none``   -- Baseline OPD, ``lambda = 1`` everywhere;
* ``selection: rock``   -- Rock-Freeze: ``lambda`` on tokens in R and on positions in W_R
  (``lambda = 0`` in the paper; 0.25 / 0.5 are the soft weights Appendix A asks for);
* ``selection: random`` -- Freq-Matched Window Freeze: ``lambda`` on random windows W_S matched to
  W_R in window length and token frequency (:mod:`rock.freeze.control`).

The regimes are data (a list in the config), not code: Snakemake makes one training rule instance
per regime name (``workflow/rules/freeze.smk``). The CLI builds :class:`FreezeConfig` from the
section with :func:`from_section`; library code receives the dataclass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rock.errors import ConfigError
from rock.freeze.masks import ANCHORS
from rock.paths import BENCHMARKS, FREEZE_STEP0

SELECTIONS = ("none", "rock", "random")
#: benchmarks of Figure 5 [5.2]: 30 problems each, 90 together
FIG5_BENCHMARKS = ("aime24", "aime25", "hmmt25")
#: regime names become file names and Snakemake wildcard values
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
NORMALIZATIONS = ("token_mean", "weight_mean")


def _bad(where: str, why: str) -> None:
    raise ConfigError(f"{where}: {why}")


@dataclass(frozen=True)
class Regime:
    """One training regime (Sec. 4.2). ``lam`` is the paper's lambda (YAML key ``lambda``)."""

    name: str
    selection: str
    lam: float

    def __post_init__(self):
        where = f"freeze.regimes[{self.name}]"
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            _bad("freeze.regimes", f"name {self.name!r} must match {NAME_RE.pattern} "
                                   "(it becomes a file name and a Snakemake wildcard)")
        if self.name == FREEZE_STEP0:
            _bad("freeze.regimes", f"the name '{FREEZE_STEP0}' is reserved for the shared step-0 "
                                   "evaluation of the stage-1 model; choose another")
        if self.selection not in SELECTIONS:
            _bad(f"{where}.selection", f"'{self.selection}' unknown; use one of {SELECTIONS}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not 0 <= self.lam <= 1:
            _bad(f"{where}.lambda", f"must be a number in [0, 1], got {self.lam!r}")
        if self.selection == "none" and self.lam != 1:
            _bad(f"{where}.lambda", "the baseline (selection: none) has lambda = 1; "
                                    "set selection: rock or random to down-weight positions")
        if self.selection != "none" and self.lam == 1:
            _bad(f"{where}.lambda", "lambda = 1 freezes nothing; use selection: none for the baseline")

    @property
    def freezes(self) -> bool:
        return self.selection != "none"


@dataclass(frozen=True)
class ControlConfig:
    """Matched random-window sampler (:func:`rock.freeze.control.sample_matched_windows`)."""

    bin_base: float = 2.0
    """frequency bins are powers of this base. ASSUMED: octave bins, fine enough to separate the
    digit/whitespace head from content words, coarse enough that every bin has candidates"""
    exclude_rock_centres: bool = True
    """ASSUMED: a control window is never centred on a rock token (else it is part Rock-Freeze);
    implied since issue 13: W_S is drawn outside R and W_R, so it holds no rock token at all"""
    n_proposals: int = 16
    """placements compared per window for the closest frequency profile (ASSUMED; measured)"""
    max_tries: int = 64
    """random placements tried per frequency bin before the next bin (ASSUMED)"""
    max_bin_distance: int = 4
    """how many bins away a fallback may go; beyond it a window stays unmatched. ASSUMED: 4 octaves
    leaves almost no window unmatched when R is the frequency head (measured in control.py), so
    W_S freezes as many tokens as W_R"""

    def __post_init__(self):
        if not self.bin_base > 1:
            _bad("freeze.control.bin_base", f"must be > 1, got {self.bin_base}")
        for k in ("n_proposals", "max_tries"):
            if getattr(self, k) < 1:
                _bad(f"freeze.control.{k}", f"must be >= 1, got {getattr(self, k)}")
        if self.max_bin_distance < 0:
            _bad("freeze.control.max_bin_distance", f"must be >= 0, got {self.max_bin_distance}")


#: freeze.eval_job: what one freeze_evaluate job scores
EVAL_JOBS = ("checkpoint", "regime")


@dataclass(frozen=True)
class FreezeConfig:
    """Settings of ``rock freeze`` (section ``freeze``)."""

    regimes: tuple[Regime, ...] = field(default_factory=tuple)
    window_radius: int | None = None
    """w of the training-time windows W(v) (Eq. 6, 18); None = detection's radius (rocks.json)"""
    window_anchor: str = "high_loss"
    """'high_loss' (Sec. 4.2, "high-divergence windows"): only rock occurrences with l_t >=
    the threshold at the current step open a window; 'all' (ASSUMED alternative): every
    occurrence of a token in R opens one (masks.py)"""
    anchor_loss_threshold: float | None = None
    """per-token reverse KL (nats) an anchor needs (window_anchor 'high_loss'); None = detection's
    max(tau_pre, tau_post) in loss units (info.json; ASSUMED, masks.py)"""
    loss_normalization: str = "token_mean"
    """token_mean: sum(w*loss)/sum(mask) (Eq. 19 read literally); weight_mean: the authors' code"""
    eval_every: int = 200
    """[Fig. 5] evaluate every N optimizer steps (200 steps = 8,000 prompts with 4 rollouts)"""
    max_steps: int = 0
    """optimizer steps per regime; 0 = one epoch of the stage-2 prompts (stage2.epochs)"""
    benchmarks: tuple[str, ...] = FIG5_BENCHMARKS
    """[5.2] Pass@1 benchmarks of Figure 5; the figure also shows their problem-weighted average"""
    eval_limit: int | None = None
    """evaluate only the first N problems of each benchmark (None = all 30; the toy run uses a few)"""
    eval_job: str = "checkpoint"
    """workflow only: one freeze_evaluate job per checkpoint, or per regime (workflow/rules/freeze.smk)"""
    keep_checkpoints: bool = False
    """workflow only: keep the evaluated checkpoints (else temp(): deleted once scored, and a changed
    evaluation setting trains the regimes again; workflow/rules/freeze.smk)"""
    control: ControlConfig = field(default_factory=ControlConfig)
    tta_fraction: float = 0.95
    """time-to-accuracy target = tta_fraction x the baseline's best average accuracy. ASSUMED:
    the paper states a speedup "without substantial loss" but no target"""

    def __post_init__(self):
        if not self.regimes:
            _bad("freeze.regimes", "give at least one regime")
        names = [r.name for r in self.regimes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            _bad("freeze.regimes", f"duplicate regime names {dup}")
        if self.window_radius is not None and (isinstance(self.window_radius, bool) or
                                               not isinstance(self.window_radius, int) or
                                               self.window_radius < 0):
            _bad("freeze.window_radius", f"must be >= 0, got {self.window_radius}")
        if self.window_anchor not in ANCHORS:
            _bad("freeze.window_anchor", f"'{self.window_anchor}' unknown; use one of {ANCHORS}")
        if self.loss_normalization not in NORMALIZATIONS:
            _bad("freeze.loss_normalization", f"use one of {NORMALIZATIONS}")
        if self.eval_every < 1:
            _bad("freeze.eval_every", f"must be >= 1, got {self.eval_every}")
        if self.max_steps < 0:
            _bad("freeze.max_steps", f"must be >= 0, got {self.max_steps}")
        if not self.benchmarks:
            _bad("freeze.benchmarks", "give at least one benchmark")
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown:
            _bad("freeze.benchmarks", f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
        if self.eval_limit is not None and (isinstance(self.eval_limit, bool) or
                                            not isinstance(self.eval_limit, int) or self.eval_limit < 1):
            _bad("freeze.eval_limit", f"must be null or an integer >= 1, got {self.eval_limit!r}")
        if self.eval_job not in EVAL_JOBS:
            _bad("freeze.eval_job", f"'{self.eval_job}' unknown; use one of {EVAL_JOBS}")
        if not 0 < self.tta_fraction <= 1:
            _bad("freeze.tta_fraction", f"must be in (0, 1], got {self.tta_fraction}")
        if sum(r.selection == "none" for r in self.regimes) != 1:
            _bad("freeze.regimes", "exactly one regime must be the baseline (selection: none, lambda: 1): "
                                   "speedups and time-to-accuracy are measured against it")

    def regime(self, name: str) -> Regime:
        for r in self.regimes:
            if r.name == name:
                return r
        raise ConfigError(f"freeze.regimes: no regime named '{name}' "
                          f"(known: {', '.join(r.name for r in self.regimes)})")

    @property
    def baseline(self) -> Regime:
        return next(r for r in self.regimes if r.selection == "none")

    @property
    def regime_names(self) -> list[str]:
        return [r.name for r in self.regimes]


def regimes_from_list(items: Any) -> tuple[Regime, ...]:
    if not isinstance(items, list):
        _bad("freeze.regimes", f"expected a list of {{name, selection, lambda}}, got {items!r}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            _bad(f"freeze.regimes[{i}]", f"expected a mapping, got {item!r}")
        unknown = sorted(set(item) - {"name", "selection", "lambda"})
        if unknown:
            _bad(f"freeze.regimes[{i}]", f"unknown key(s) {unknown}; known: name, selection, lambda")
        missing = [k for k in ("name", "selection", "lambda") if k not in item]
        if missing:
            _bad(f"freeze.regimes[{i}]", f"missing key(s) {missing}")
        out.append(Regime(name=item["name"], selection=item["selection"], lam=item["lambda"]))
    return tuple(out)


def from_section(section: dict | None) -> FreezeConfig:
    """:class:`FreezeConfig` from the ``freeze`` section of a config mapping (keys checked by the
    schema for a config file, by :func:`rock.config.from_dict` for a mapping built in code)."""
    from rock.config import from_dict

    if not isinstance(section, dict):
        _bad("freeze", f"expected a mapping, got {section!r}")
    data = dict(section)
    if "regimes" in data:
        data["regimes"] = regimes_from_list(data["regimes"])
    if "benchmarks" in data:
        data["benchmarks"] = tuple(data["benchmarks"])
    return from_dict(FreezeConfig, data, "freeze")
