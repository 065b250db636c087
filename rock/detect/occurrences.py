"""Token occurrences of the detection corpus as flat arrays (:class:`Occurrences`), read from the
token-statistics tables of ``rock stats score`` (:mod:`rock.detect.core` re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

import numpy as np
import pandas as pd

from rock import paths
from rock.errors import DataError

#: per-occurrence loss column of the token table: reverse_kl (Eq. 15) or log_ratio (Eq. 2)
LOSSES = {"reverse_kl": "reverse_kl", "log_ratio": "log_ratio"}
OCCURRENCE_COLUMNS = ("trajectory", "position", "token_id")


@dataclass
class Occurrences:
    """Flat occurrence arrays sorted by (trajectory, position); ``loss_pre`` may be None."""

    trajectory: np.ndarray
    position: np.ndarray
    token_id: np.ndarray
    loss_post: np.ndarray
    loss_pre: np.ndarray | None = None
    hidden: np.ndarray | None = None   # [n, d] aligned rows (optional)

    def __len__(self):
        return len(self.token_id)

    @staticmethod
    def from_tables(post: pd.DataFrame, pre: pd.DataFrame | None = None, *, loss: str = "reverse_kl",
                    hidden: np.ndarray | None = None, post_name: str = "post", pre_name: str = "pre"
                    ) -> "Occurrences":
        """Arrays from token-statistics tables; ``pre`` must cover exactly the same occurrences."""
        col = LOSSES[loss]
        for df, name in ((post, post_name), (pre, pre_name)):
            if df is None:
                continue
            missing = [c for c in (*OCCURRENCE_COLUMNS, col) if c not in df.columns]
            if missing:
                raise DataError(f"missing columns {missing}", file=name, field=missing[0],
                                fix="use the token table written by rock stats score")
        order = np.lexsort((post["position"].to_numpy(), post["trajectory"].to_numpy()))
        if not (order == np.arange(len(order))).all():
            if hidden is not None:
                raise DataError("the token table is not sorted by (trajectory, position) but hidden "
                                "states are aligned with its rows", file=post_name, field="position",
                                fix="re-run rock stats score")
            post = post.iloc[order].reset_index(drop=True)
        occ = Occurrences(post["trajectory"].to_numpy(np.int64), post["position"].to_numpy(np.int64),
                          post["token_id"].to_numpy(np.int64), post[col].to_numpy(np.float64),
                          hidden=hidden)
        if pre is not None:
            pre = pre.sort_values(["trajectory", "position"], kind="stable").reset_index(drop=True)
            same = len(pre) == len(post) and all(
                np.array_equal(pre[c].to_numpy(np.int64), post[c].to_numpy(np.int64)) for c in OCCURRENCE_COLUMNS)
            if not same:
                raise DataError(f"{pre_name} and {post_name} token tables cover different occurrences "
                                f"({len(pre)} vs {len(post)} rows)", file=pre_name, field="token_id",
                                fix="score the same trajectories file with both checkpoints")
            occ.loss_pre = pre[col].to_numpy(np.float64)
        if not np.isfinite(occ.loss_post).all():
            raise DataError("non-finite loss values", file=post_name, field=col,
                            fix="check the scoring run (fp overflow?)")
        return occ

    def subset(self, trajectories: np.ndarray) -> "Occurrences":
        keep = np.isin(self.trajectory, trajectories)
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return Occurrences(self.trajectory[keep], self.position[keep], self.token_id[keep],
                           self.loss_post[keep], pick(self.loss_pre), pick(self.hidden))


# ---- reading the token tables of a run (the stage edge; rock detect and rock geometry) ----------

def _read_table(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{what} not found", file=str(path), fix="run rock stats score first")
    return pd.read_parquet(path)


def load_occurrences(run_dir, settings, mode: str, tables: dict | None = None):
    """Occurrences for one mode: post table, pre table (context), hidden states (if used).

    ``tables`` names the files (``post``, ``pre``, ``hidden``; the rule's inputs); a missing or
    None entry is the :mod:`rock.paths` artifact under ``run_dir``."""
    tables = tables or {}
    cfg = settings.modes[mode]
    post_path = Path(tables.get("post") or paths.token_stats(run_dir, "post"))
    post = _read_table(post_path, "post-OPD token table")
    pre = None
    pre_path = Path(tables.get("pre") or paths.token_stats(run_dir, "pre"))
    if mode == "context":
        pre = _read_table(pre_path, "pre-OPD token table")
    hidden = None
    if mode == "context" and settings.context.representation == "hidden":
        hp = Path(tables.get("hidden") or paths.hidden_states(run_dir, settings.hidden_checkpoint))
        if not hp.is_file():
            raise DataError("hidden states not found", file=str(hp),
                            fix="set stats.save_hidden: true and re-run rock stats score --checkpoint post")
        hidden = np.load(hp, mmap_mode="r")
    return Occurrences.from_tables(post, pre, loss=cfg.loss, hidden=hidden, post_name=str(post_path),
                                   pre_name=str(pre_path))
