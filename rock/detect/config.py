"""The ``detection`` config section, parsed at the CLI edge into dataclasses [Sec. 2.2-2.5, App. B, E].

Layout (see config.yaml for every value and why)::

    detection:
      loss: reverse_kl              # per-occurrence loss (Eq. 15) or log_ratio (Eq. 2)
      downstream_mode: context      # whose rocks feed geometry, knockout and freeze
      top_k: 100                    # K (Sec. 2.4)
      tau_r: null                   # Eq. 14 threshold instead of top_k
      k_screen: 200                 # knockout screening pool (App. D.3)
      n_controls: 100
      seed: 0
      context: {...}                # Sec. 2.2: tau_*, radius, representation, similarity, gamma, eta,
                                    #   min_ccr (the detection cut, rock.detect.core)
      official: {...}               # the authors' selection
      stability: {sizes, k_grid, n_repeats}
      clusters: {discourse_markers}
      reference: {rock_ids, control_ids}   # the authors' ids, for the comparison (paper scale)
"""

from __future__ import annotations

from dataclasses import dataclass

from rock.detect.clusters import DEFAULT_DISCOURSE_MARKERS
from rock.detect.context import ContextSpec
from rock.detect.core import MODES, DetectionConfig
from rock.errors import ConfigError

_CONTEXT_SPEC_KEYS = {"representation", "similarity", "radius", "gamma", "include_center",
                      "max_per_type", "block_elements", "pack_rows", "max_patterns"}
_CONTEXT_ONLY_KEYS = {"min_ccr"}      # the detection cut (rock.detect.core): no CCR in the official mode
_MODE_KEYS = {"min_freq", "drop_top_frequent", "tau_mode", "tau_pre", "tau_post", "eta", "controls"}


@dataclass(frozen=True)
class StabilityConfig:
    sizes: tuple[int, ...] = (50, 100, 200, 300, 400)     # App. E
    k_grid: tuple[int, ...] = (10, 25, 50, 75, 100, 125, 150, 200, 250, 300)
    n_repeats: int = 1

    def __post_init__(self):
        if not self.sizes or any(not isinstance(n, int) or n < 1 for n in self.sizes):
            raise ConfigError(f"detection.stability.sizes must be integers >= 1 (got {self.sizes})")
        if not self.k_grid or any(not isinstance(k, int) or k < 1 for k in self.k_grid):
            raise ConfigError(f"detection.stability.k_grid must be integers >= 1 (got {self.k_grid})")
        if not isinstance(self.n_repeats, int) or self.n_repeats < 1:
            raise ConfigError(f"detection.stability.n_repeats must be >= 1 (got {self.n_repeats})")


@dataclass(frozen=True)
class DetectionSettings:
    """Everything ``rock detect`` needs, per mode."""

    modes: dict[str, DetectionConfig]
    context: ContextSpec
    stability: StabilityConfig
    downstream_mode: str = "context"
    hidden_checkpoint: str = "post"
    discourse_markers: tuple[str, ...] = DEFAULT_DISCOURSE_MARKERS
    reference_rock_ids: str | None = None
    reference_control_ids: str | None = None

    @staticmethod
    def from_dict(section: dict | None) -> "DetectionSettings":
        """Build from the ``detection`` section, which the schema has checked (keys and types); a
        key left out takes the dataclass default."""
        sec = dict(section or {})
        ctx = dict(sec.get("context") or {})
        off = dict(sec.get("official") or {})
        common = {k: sec[k] for k in ("loss", "top_k", "tau_r", "k_screen", "n_controls", "seed") if k in sec}
        spec = ContextSpec(**{k: v for k, v in ctx.items() if k in _CONTEXT_SPEC_KEYS},
                           **{k: sec[k] for k in ("seed",) if k in sec})
        context_cfg = DetectionConfig(mode="context", **common,
                                      **{k: v for k, v in ctx.items() if k in _MODE_KEYS | _CONTEXT_ONLY_KEYS})
        official_cfg = DetectionConfig.official(**{**{k: v for k, v in common.items()
                                                      if k not in ("tau_r", "loss")},
                                                   **{k: v for k, v in off.items() if k in _MODE_KEYS}})
        st = dict(sec.get("stability") or {})
        stability = StabilityConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in st.items()})
        clusters = dict(sec.get("clusters") or {})
        ref = dict(sec.get("reference") or {})
        optional = {"downstream_mode": sec.get("downstream_mode"),
                    "hidden_checkpoint": sec.get("hidden_checkpoint"),
                    "discourse_markers": tuple(clusters["discourse_markers"])
                    if "discourse_markers" in clusters else None}
        settings = DetectionSettings(
            modes={"context": context_cfg, "official": official_cfg}, context=spec, stability=stability,
            reference_rock_ids=ref.get("rock_ids"), reference_control_ids=ref.get("control_ids"),
            **{k: v for k, v in optional.items() if v is not None})
        if settings.downstream_mode not in MODES:
            raise ConfigError(f"detection.downstream_mode '{settings.downstream_mode}' unknown; "
                              f"use one of {MODES}")
        return settings
