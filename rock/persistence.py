"""Which tokens the persistence comparison follows, and on which data they are chosen [Sec. 2.6,
Fig. 3c-d; issue 13, point 4].

Paper, Sec. 2.6: "To confirm that this directional alignment translates into resistance to further
learning, we compare per-token KL between an early and late checkpoint. Rare high-KL tokens
experience a substantial reduction in KL (median 2.02 -> 0.85 ...). In contrast, Rock Tokens remain
essentially unchanged (median 0.21 -> 0.19) ... Random control tokens show a symmetric, noisy
distribution with no net change." Fig. 3c: "Points below the diagonal indicate KL reduction during
*further* training".

Regression to the mean. A group chosen because its per-type KL is high *on the data and model it is
then measured on* keeps part of that selection noise in the measurement: choosing high-KL types on
the post-OPD model and reading KL_late from that same model (the last kept stage-2 checkpoint is
byte-identical to it) pushes KL_late up for high-KL tokens and, since R also needs
``l_post >= tau_post`` (Eq. 5), for rocks. The groups must therefore be chosen on data that the
early/late comparison does not reuse, and "late" must be other weights than any selection model.

``geometry.persistence_selection``:

* ``pre`` (default; the paper's text: groups are defined, then followed through "further
  training"): ``high_kl`` and ``random`` are ranked on the *pre-OPD* model's KL (stats checkpoint
  ``pre``), the rock group is detection's R (Sec. 2.2, which reads pre and post), and early/late are
  two stage-2 checkpoints whose weights differ from both pre and post (config: early = first kept
  checkpoint, late = the second-to-last, ``stage2_penultimate``). All trajectories are used.
* ``holdout`` (ASSUMED alternative, the strictest): the detection trajectories are split in two
  halves with ``holdout_seed``; every group is chosen on half A (rocks by detection re-run on half A
  with the same settings, high_kl/random on the pre model's KL over half A) and early/late KL are
  measured on half B only, so the trajectory sampling noise of the selection is independent of the
  measurement too. Costs half the measured occurrences.

:func:`check_late_is_other_weights` refuses a run whose late checkpoint has the same weights as a
selection model (pre or post): then Delta KL would measure selection, not training.
"""

from __future__ import annotations

import filecmp
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rock.errors import ConfigError

log = logging.getLogger(__name__)

SELECTIONS = ("pre", "holdout")
#: stats checkpoints a persistence group is selected on (pre: high_kl/random; post: R, Eq. 5)
SELECTION_CHECKPOINTS = ("pre", "post")
#: files whose bytes are the weights of a checkpoint directory
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def split_trajectories(trajectory_ids, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Halves ``(A, B)`` of the distinct trajectory ids: a seeded permutation, A = first
    ``ceil(n / 2)``. Deterministic for a seed; A and B are disjoint and cover every id."""
    ids = np.unique(np.asarray(trajectory_ids))
    perm = np.random.default_rng(seed).permutation(len(ids))
    cut = (len(ids) + 1) // 2
    return np.sort(ids[perm[:cut]]), np.sort(ids[perm[cut:]])


def restrict(table: pd.DataFrame, trajectories) -> pd.DataFrame:
    """Rows of a token table whose ``trajectory`` is in ``trajectories``."""
    return table[table["trajectory"].isin(np.asarray(trajectories))]


def weight_files(path) -> list[Path]:
    p = Path(path)
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES) if p.is_dir() else []


def same_weights(a, b) -> bool:
    """Whether two checkpoints hold the same weights: the same directory, or the same set of weight
    files (relative names) with byte-identical contents (compared to the first differing byte, so
    different checkpoints are told apart quickly). Hub ids (no directory) compare by name."""
    pa, pb = Path(a), Path(b)
    if not (pa.is_dir() and pb.is_dir()):
        return str(a) == str(b)
    if pa.resolve() == pb.resolve():
        return True
    fa, fb = weight_files(pa), weight_files(pb)
    if not fa or [f.relative_to(pa) for f in fa] != [f.relative_to(pb) for f in fb]:
        return False
    return all(filecmp.cmp(x, y, shallow=False) for x, y in zip(fa, fb))


def check_late_is_other_weights(late: tuple[str, str], selection: dict[str, str]) -> None:
    """``late = (name, model path)``; ``selection = {name: model path}`` of the selection models.
    Raises :class:`ConfigError` if late has the weights of any of them (module docstring)."""
    name, path = late
    for sel, sel_path in selection.items():
        if same_weights(path, sel_path):
            raise ConfigError(
                f"geometry.late: checkpoint '{name}' ({path}) has the same weights as the selection "
                f"model '{sel}' ({sel_path}); persistence would measure selection, not training. "
                "Set stats.checkpoints.late to a stage-2 checkpoint other than the final model "
                "(e.g. stage2_penultimate) and keep stage2.n_checkpoints >= 3")


def describe(selection: str, seed: int, halves: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """What summary.json records about the selection."""
    out = {"selection": selection, "selection_checkpoints": list(SELECTION_CHECKPOINTS)}
    if halves is not None:
        out.update({"holdout_seed": seed, "n_selection_trajectories": int(len(halves[0])),
                    "n_measured_trajectories": int(len(halves[1]))})
    return out
