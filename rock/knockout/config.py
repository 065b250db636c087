"""Configuration of the knockout stage (config section ``knockout``) [Sec. 3.2, App. D.2-D.4].

Parsed at the CLI edge (:func:`from_config`) and passed down as a :class:`KnockoutConfig`; library code
never reads the config file. Paper values are cited; the others are marked ASSUMED in
``config.yaml`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rock.errors import ConfigError

LEVELS = ("token", "window")            # Eq. 20 and Eq. 21
WINDOW_MEMBERS = ("pool", "core")       # which "Rock Token candidates" join a window set (Eq. 21)
WINDOW_RULES = ("high_divergence", "any_occurrence")   # which occurrences of u count (rock.knockout.pool)
CORRECTIONS = ("bonferroni", "none")    # within-candidate correction (rock.knockout.stats)


@dataclass
class KnockoutConfig:
    """Knockout settings. Field defaults are the paper's values where it gives them."""

    tasks: list[str] = field(default_factory=lambda: ["math500", "ifeval"],
                             metadata={"help": "benchmarks probed [D.3]; first two form Table 2's agreement"})
    levels: list[str] = field(default_factory=lambda: list(LEVELS),
                              metadata={"help": "token (Eq. 20) and/or window (Eq. 21) knockouts"})
    window_members: str = field(default="pool", metadata={
        "help": "'pool': the window set holds the screened candidates found in W(v); "
                "'core': only detection's K rock tokens (plus v)"})
    window_rule: str = field(default="high_divergence", metadata={
        "help": "'high_divergence': u counts where it is a high-divergence occurrence itself "
                "(detection's anchors) inside v's windows; 'any_occurrence': any occurrence of u"})
    window_min_share: float = field(default=0.25, metadata={
        "help": "a candidate joins v's window set if it occurs (per window_rule) in at least this "
                "share of v's high-divergence windows; 0 = any window (the union)"})
    level_correction: str = field(default="bonferroni", metadata={
        "help": "p-values of a candidate's token- and window-level knockouts are Bonferroni-"
                "corrected over its distinct perturbations before Eq. 22 and App. D.2; 'none' = "
                "the uncorrected minimum (rock.knockout.stats)"})
    n_runs: int = field(default=4, metadata={"help": "repeated sampled runs per problem [D.3]"})
    seed: int = field(default=0, metadata={"help": "run r is decoded with seed + r; baseline same"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature [D.3]"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    max_gen_toks: int = field(default=4096, metadata={"help": "generation budget per answer"})
    limit: int | None = field(default=None, metadata={
        "help": "decode only the first N problems of each task; null = the whole benchmark"})
    n_shards: int = field(default=1, metadata={"help": "suppression sets are split over this many jobs"})
    epsilon: float = field(default=0.01, metadata={"help": "effect threshold of Eq. 22"})
    alpha: float = field(default=0.05, metadata={"help": "bootstrap test level [D.3]"})
    n_resamples: int = field(default=10_000, metadata={"help": "bootstrap resamples [D.3]"})
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of the resampling stream"})
    fdr_q: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.20],
                               metadata={"help": "Benjamini-Hochberg levels [D.2]"})

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"knockout.{name}: {why} (got {getattr(self, name)!r})")

        for name in ("n_runs", "max_gen_toks", "n_shards", "n_resamples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be an integer >= 1")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            bad("tasks", "must be a non-empty list of distinct benchmark names")
        if not self.levels or any(lv not in LEVELS for lv in self.levels) \
                or len(set(self.levels)) != len(self.levels):
            bad("levels", f"must be a non-empty subset of {list(LEVELS)}")
        if self.window_members not in WINDOW_MEMBERS:
            bad("window_members", f"must be one of {list(WINDOW_MEMBERS)}")
        if self.window_rule not in WINDOW_RULES:
            bad("window_rule", f"must be one of {list(WINDOW_RULES)}")
        if self.level_correction not in CORRECTIONS:
            bad("level_correction", f"must be one of {list(CORRECTIONS)}")
        if not 0.0 <= self.window_min_share <= 1.0:
            bad("window_min_share", "must be in [0, 1]")
        if self.temperature <= 0:
            bad("temperature", "must be > 0 (the knockout samples, App. D.3)")
        if not 0.0 < self.top_p <= 1.0:
            bad("top_p", "must be in (0, 1]")
        if not 0.0 <= self.epsilon < 1.0:
            bad("epsilon", "must be in [0, 1)")
        if not 0.0 < self.alpha < 1.0:
            bad("alpha", "must be in (0, 1)")
        if not self.fdr_q or any(not 0.0 < q < 1.0 for q in self.fdr_q):
            bad("fdr_q", "must be a non-empty list of levels in (0, 1)")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            bad("limit", "must be null or an integer >= 1")

    @property
    def seeds(self) -> list[int]:
        """Seeds of the repeated runs; every suppression set and the baseline use the same ones."""
        return [self.seed + r for r in range(self.n_runs)]


def from_dict(section: dict, *, source: str = "config") -> KnockoutConfig:
    """Build the config from the ``knockout`` section (keys and types checked by the schema)."""
    from rock.config import from_dict as build

    try:
        return build(KnockoutConfig, section, "knockout")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def from_config(config: dict, overrides: dict | None = None, *, source: str = "config") -> KnockoutConfig:
    """The ``knockout`` section of a validated config (:func:`rock.config.stage_config`) with
    ``overrides`` (CLI flags; None = keep)."""
    section = dict(config["knockout"])
    section.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(section, source=source)
