"""Readers of run artifacts for the claim check: where each artifact lives, and one small function
per artifact type that reads a number from it (the metric table, :mod:`rock.report.extract`, says
which metric key uses which reader):

* :func:`json_value`   a field of a stage's JSON summary (dotted path; several candidate files and
                       keys are tried, first hit wins, so a stage may nest its numbers as it likes)
* :func:`json_path`    any JSON field under the run directory (``json:<relpath>#<dotted.key>``)
* :func:`csv_table`    a function of a CSV artifact
* :func:`table1_cell`  Pearson r or p of one predictor on one benchmark (Table 1 CSV, wide or long)
* :func:`table2_cell`  one count of the Pillar census (Table 2 CSV)
* :func:`cross_task`   one cell of Table 2's cross-task agreement line
* :func:`jsonl_rows`   rows of a jsonl file
* :func:`config_value` a value of the run's config (paper hyperparameters, App. C)
* :func:`constant`     a fixed statement of this reproduction

Readers are tolerant by design: a missing file, key or column raises :class:`NotRun` with the
reason, which the check reports as "not run", never as an error of the check itself.

The artifact locations below are the report's view of what the stages write (DESIGN.md, stages
5-9). They are relative to ``run_dir`` and may be globs; the first existing candidate wins.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rock import paths

#: benchmarks of the knockout (App. D.3) and their spellings in tables
KNOCKOUT_BENCHMARKS = ("math500", "ifeval")
#: Table 1 predictors in the paper's row order [App. D.1] (normalised names, see :func:`norm`)
TABLE1_PREDICTORS = ("frequency", "rock_count", "rock_rate", "pre_opd_kl", "post_opd_kl",
                     "kl_improvement", "teacher_entropy", "pre_opd_student_entropy",
                     "post_opd_student_entropy")
#: gradient-geometry groups [Sec. 2.6]
GEOMETRY_GROUPS = ("rock", "highkl", "random")
#: sign tests of App. D.2: per benchmark, combined, and restricted to the stable core
SIGN_TESTS = ("combined", "math500", "ifeval", "core")

# ---- artifact candidates (relative to run_dir; globs allowed; first existing wins) -----------
_R = Path()  # rock.paths functions called with an empty run_dir give paths relative to run_dir


def _p(path: Path) -> str:
    return str(path)


ARTIFACTS: dict[str, tuple[str, ...]] = {
    "world": (_p(paths.world_info(_R)),),
    # detection, context-aware mode (Sec. 2.2) and the authors' selection (official)
    **{f"detect_{mode}_{name.split('.')[0]}": (_p(paths.detection_file(_R, mode, name)),)
       for mode in paths.DETECTION_MODES
       for name in ("info.json", "density.csv", "stability_summary.csv", "clusters.csv",
                    "clusters_summary.csv", "control_matching.csv")},
    "detect_comparison": (_p(paths.detection_comparison(_R)),),
    "geometry_summary": (_p(paths.geometry_dir(_R) / "summary.json"),),
    "knockout_summary": (_p(paths.knockout_result(_R, "multiple_testing.json")),
                         "knockout/summary.json"),
    "table1": (_p(paths.knockout_result(_R, "table1.csv")), "knockout/**/table1*.csv"),
    "table2": (_p(paths.knockout_result(_R, "table2.csv")), "knockout/**/table2.csv"),
    "cross_task": (_p(paths.knockout_result(_R, "table2_agreement.csv")),
                   "knockout/**/*agreement*.csv"),
    # freeze training (rock.freeze.report): the regime table and the speedup summary
    "freeze_regimes": (_p(paths.freeze_result(_R, "regimes.csv")), "freeze/**/regimes.csv"),
    "freeze_control_match": (_p(paths.freeze_result(_R, "control_match.csv")),),
}
#: figure files (PNG for the page, PDF next to them), looked up the same way
FIGURES: dict[str, tuple[str, ...]] = {
    "figure2": (_p(paths.figure2(_R, "context", "png")), "detect/**/figure2*.png"),
    "figure2_official": (_p(paths.figure2(_R, "official", "png")),),
    "figure3": (_p(paths.figure3(_R, "png")), "geometry/**/figure3*.png"),
    "figure4": (_p(paths.knockout_result(_R, "figure4.png")), "knockout/**/figure4*.png"),
    "figure5": (_p(paths.freeze_result(_R, "figure5.png")), "freeze/**/figure5*.png"),
    "figure6": (_p(paths.knockout_result(_R, "figure6.png")), "knockout/**/figure6*.png"),
}


class NotRun(Exception):
    """The artifact (or the field in it) a metric needs does not exist (yet)."""


@dataclass(frozen=True)
class Context:
    """What an extractor may look at: the run directory and the run's config (already parsed)."""

    run_dir: Path
    config: dict | None = None
    config_path: Path | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Measured:
    value: Any
    artifact: str  # the file (relative to run_dir where possible) and field it came from


@dataclass(frozen=True)
class Metric:
    key: str
    artifact: str          # human-readable: where it is read from
    read: Callable[[Context], Measured]
    help: str = ""
    golden: bool = True    # recorded into the toy golden table when it resolves
    source: tuple[str, str] | None = None  # (artifact name, json key) of plain JSON fields


# ============================================================================================
# low-level readers (tolerant: NotRun on anything missing)
# ============================================================================================

def norm(name: str) -> str:
    """Normalise a label for matching: ``"Pre-OPD student entropy"`` -> ``pre_opd_student_entropy``,
    ``"MATH-500"`` -> ``math500``, ``"High-KL"`` -> ``highkl``."""
    s = re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")
    return {"math_500": "math500", "high_kl": "highkl", "rare_high_kl": "highkl",
            "rare_highkl": "highkl", "rocks": "rock", "ctrl": "random"}.get(s, s)


def find_artifact(ctx: Context, name: str, table: dict[str, tuple[str, ...]] = ARTIFACTS) -> Path:
    """First existing file among the candidates of ``name`` under ``ctx.run_dir``; NotRun if none."""
    for pattern in table[name]:
        if any(ch in pattern for ch in "*?["):
            hits = sorted(p for p in ctx.run_dir.glob(pattern) if p.is_file())
            if hits:
                return hits[0]
        else:
            p = ctx.run_dir / pattern
            if p.is_file():
                return p
    raise NotRun(f"{name} not produced (looked for {', '.join(table[name])} under {ctx.run_dir})")


def rel(ctx: Context, p: Path) -> str:
    try:
        return str(p.relative_to(ctx.run_dir))
    except ValueError:
        return str(p)


def load_json(ctx: Context, p: Path) -> Any:
    key = ("json", str(p))
    if key not in ctx._cache:
        try:
            ctx._cache[key] = json.loads(p.read_text())
        except (OSError, ValueError) as err:
            raise NotRun(f"{rel(ctx, p)} unreadable: {err}") from None
    return ctx._cache[key]


def load_csv(ctx: Context, p: Path):
    import pandas as pd

    key = ("csv", str(p))
    if key not in ctx._cache:
        try:
            ctx._cache[key] = pd.read_csv(p)
        except (OSError, ValueError) as err:
            raise NotRun(f"{rel(ctx, p)} unreadable: {err}") from None
    return ctx._cache[key]


def dig(obj: Any, dotted: str) -> Any:
    """``dig({"a": {"b": 1}}, "a.b") == 1``; list indices are numbers; KeyError when absent.

    A key that itself contains dots (``"0.05"`` in ``bh_rejections``) is matched greedily: at each
    level the longest prefix of the remaining path that is a key wins.
    """
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        if isinstance(obj, dict):
            for j in range(len(parts), i, -1):
                k = ".".join(parts[i:j])
                if k in obj:
                    obj, i = obj[k], j
                    break
            else:
                raise KeyError(dotted)
        elif isinstance(obj, list) and parts[i].lstrip("-").isdigit():
            try:
                obj = obj[int(parts[i])]
            except IndexError:
                raise KeyError(dotted) from None
            i += 1
        else:
            raise KeyError(dotted)
    return obj


def _scalar(v: Any, where: str) -> Any:
    if isinstance(v, (dict, list)):
        raise NotRun(f"{where} is not a scalar")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        raise NotRun(f"{where} is empty (null/NaN)")
    return v


# ============================================================================================
# one small extractor per artifact type
# ============================================================================================

def json_value(artifact: str, *keys: str) -> Callable[[Context], Measured]:
    """A field of a JSON artifact; ``keys`` are alternative dotted paths, first hit wins."""
    def read(ctx: Context) -> Measured:
        p = find_artifact(ctx, artifact)
        obj = load_json(ctx, p)
        for k in keys:
            try:
                return Measured(_scalar(dig(obj, k), f"{rel(ctx, p)}#{k}"), f"{rel(ctx, p)}#{k}")
            except KeyError:
                continue
        raise NotRun(f"{rel(ctx, p)} has no field {' / '.join(keys)}")
    return read


def json_path(spec: str) -> Callable[[Context], Measured]:
    """Generic ``json:<relpath>#<dotted>`` metric (golden rows of the toy run)."""
    relpath, _, dotted = spec.partition("#")

    def read(ctx: Context) -> Measured:
        p = ctx.run_dir / relpath
        if not p.is_file():
            raise NotRun(f"{relpath} not produced under {ctx.run_dir}")
        try:
            return Measured(_scalar(dig(load_json(ctx, p), dotted), spec), spec)
        except KeyError:
            raise NotRun(f"{relpath} has no field {dotted}") from None
    return read


def csv_table(artifact: str, fn: Callable[[Any], Any], what: str) -> Callable[[Context], Measured]:
    """A value computed from a CSV artifact by ``fn(dataframe)``; ``what`` names it.

    ``fn`` may raise KeyError/IndexError/ValueError for an absent column or row: that is "not run".
    """
    def read(ctx: Context) -> Measured:
        p = find_artifact(ctx, artifact)
        df = load_csv(ctx, p)
        where = f"{rel(ctx, p)}[{what}]"
        try:
            v = fn(df)
        except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
            raise NotRun(f"{where}: not in table ({type(err).__name__}: {err})") from None
        if hasattr(v, "item"):
            v = v.item()
        return Measured(_scalar(v, where), where)
    return read


def _rows_by(df, column_candidates: Sequence[str]):
    for c in column_candidates:
        for col in df.columns:
            if norm(col) == c:
                return col
    return None


def table1_cell(predictor: str, bench: str, stat: str) -> Callable[[Context], Measured]:
    """Pearson ``stat`` (``r`` or ``p``) of ``predictor`` on ``bench`` from the Table 1 CSV.

    Accepts the wide layout of :func:`rock.knockout.stats.correlation_table` (``predictor``,
    ``column``, ``math500_r``, ``math500_p``, ...) and a long one (``predictor, benchmark, r, p``).
    """
    def read(ctx: Context) -> Measured:
        p = find_artifact(ctx, "table1")
        df = load_csv(ctx, p)
        where = f"{rel(ctx, p)}[{predictor}, {bench}, {stat}]"
        keycols = [c for c in (_rows_by(df, ["column"]), _rows_by(df, ["predictor"])) if c]
        if not keycols:
            raise NotRun(f"{rel(ctx, p)} has no 'predictor' column")
        key = ("table1-keys", str(p))
        if key not in ctx._cache:
            ctx._cache[key] = df[keycols].apply(lambda col: col.map(norm))
        hit = df[ctx._cache[key].eq(predictor).any(axis=1)]
        bcol = _rows_by(df, ["benchmark", "task"])
        if bcol is not None:  # long layout
            hit = hit[hit[bcol].map(norm) == bench]
            col = _rows_by(df, [stat, {"r": "pearson_r", "p": "p_value"}[stat]])
        else:
            col = _rows_by(df, [f"{bench}_{stat}"])
        if hit.empty or col is None:
            raise NotRun(f"{where} not in table")
        return Measured(_scalar(float(hit[col].iloc[0]), where), where)
    return read


def table2_cell(bench: str, column: str) -> Callable[[Context], Measured]:
    """One cell of the Pillar census (Table 2): ``pillar``, ``neutral``, ``stumbling``,
    ``baseline_acc``, ``n_candidates`` (column names of :func:`rock.knockout.stats.census`)."""
    aliases = {"pillar": ["pillar", "strong_pillar"], "neutral": ["neutral"],
               "stumbling": ["stumbling", "strong_stumbling"],
               "baseline_acc": ["baseline_acc", "baseline_accuracy"],
               "n_candidates": ["n_candidates", "n"]}[column]

    def read(ctx: Context) -> Measured:
        p = find_artifact(ctx, "table2")
        df = load_csv(ctx, p)
        where = f"{rel(ctx, p)}[{bench}, {column}]"
        bcol = _rows_by(df, ["benchmark", "task"])
        col = _rows_by(df, aliases)
        if bcol is None or col is None:
            raise NotRun(f"{rel(ctx, p)} lacks a benchmark or {column} column")
        hit = df[df[bcol].map(norm) == bench]
        if hit.empty:
            raise NotRun(f"{where}: no row for {bench}")
        v = hit[col].iloc[0]
        return Measured(_scalar(v.item() if hasattr(v, "item") else v, where), where)
    return read


def cross_task(label: str) -> Callable[[Context], Measured]:
    """Count of one cross-task agreement label (``N||N``, ``P||N``, ``N||P``, ``P||P``, Table 2)."""
    def read(ctx: Context) -> Measured:
        try:
            p = find_artifact(ctx, "cross_task")
        except NotRun:
            key = "cross_task." + label
            return json_value("knockout_summary", key, "table2." + key)(ctx)
        df = load_csv(ctx, p)
        where = f"{rel(ctx, p)}[{label}]"
        lcol, ccol = _rows_by(df, ["label"]), _rows_by(df, ["count", "n"])
        if lcol is None or ccol is None:
            raise NotRun(f"{rel(ctx, p)} lacks label/count columns")
        hit = df[df[lcol].astype(str).str.replace(" ", "") == label]
        if hit.empty:
            raise NotRun(f"{where}: no row")
        return Measured(int(hit[ccol].iloc[0]), where)
    return read


def jsonl_rows(path_fn: Callable[[Path], Path]) -> Callable[[Context], Measured]:
    """Number of non-empty lines of a JSONL artifact (a dataset or prompt slice)."""
    def read(ctx: Context) -> Measured:
        p = path_fn(ctx.run_dir)
        if not p.is_file():
            raise NotRun(f"{rel(ctx, p)} not produced")
        with open(p, "rb") as fh:
            n = sum(1 for line in fh if line.strip())
        return Measured(n, f"{rel(ctx, p)} (rows)")
    return read


def config_value(dotted: str) -> Callable[[Context], Measured]:
    """A value of the run's config (``--config``); lists are shown joined with ``,``."""
    def read(ctx: Context) -> Measured:
        if ctx.config is None:
            raise NotRun("no config given to the check (--config)")
        try:
            v = dig(ctx.config, dotted)
        except KeyError:
            raise NotRun(f"config has no key {dotted}") from None
        if isinstance(v, list):
            v = ",".join(str(x) for x in v)
        where = f"{ctx.config_path.name if ctx.config_path else 'config'}:{dotted}"
        return Measured(_scalar(v, where), where)
    return read


def constant(value: Any, where: str) -> Callable[[Context], Measured]:
    """A documented choice of this reproduction (e.g. the Figure 2 panel order it follows)."""
    return lambda ctx: Measured(value, where)
