"""The report's "Experimental design" table: how this run applied the paper's definitions.

One row per design choice that issue 13 fixed, read from the stage artifacts (never recomputed):
the detection cut (Sec. 2.2: how many types qualify, the CCR floor), the knockout window sets
(Eq. 21: size distribution) and multiple testing (App. D.2: corrected and uncorrected minimum
p-value, Bonferroni rejections), the freeze windows and their control (Eqs. 18-19: frozen share per
regime, control overlap with W_R, unmatched control windows), the persistence groups (Sec. 2.6:
selection data and the early/late checkpoints) and the data slices (App. C: stage-1/stage-2
overlap). A missing artifact gives "not run".
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rock import paths
from rock.report.readers import Context

COLUMNS = ["section", "design", "this run"]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _detection(ctx: Context) -> list[tuple[str, str, str]]:
    info = _json(paths.detection_file(ctx.run_dir, "context", "info.json"))
    return [("Sec. 2.2", "detection cut: CCR(v) >= min_ccr before top-K",
             f"{info.get('n_qualifying')} types qualify (min_ccr {info.get('min_ccr')}); "
             f"{info.get('n_rocks')} rock tokens selected")]


def _knockout(ctx: Context) -> list[tuple[str, str, str]]:
    mt = _json(ctx.run_dir / "knockout" / "results" / "multiple_testing.json")
    ws = mt.get("window_sets") or {}
    rows = [("Eq. 21", f"window sets W(v): rule {ws.get('rule')}, share >= {ws.get('min_share')}",
             ws.get("text", "not run"))]
    for task, t in sorted((mt.get("per_task") or {}).items()):
        rows.append(("App. D.2", f"{task}: candidate p = min(1, L x min(p_token, p_window)) "
                                 f"({mt.get('level_correction')})",
                     f"m {t.get('m')}, min p {t.get('min_p')} (uncorrected {t.get('min_p_uncorrected')}), "
                     f"Bonferroni rejections {t.get('bonferroni_rejections')} at "
                     f"{t.get('bonferroni_threshold')}"))
    return rows


def _freeze(ctx: Context) -> list[tuple[str, str, str]]:
    reg = pd.read_csv(ctx.run_dir / "freeze" / "results" / "regimes.csv")
    rows = []
    for r in reg.itertuples():
        text = f"frozen share {r.frozen_fraction:.3f}"
        if r.selection == "random":
            text += (f"; overlap with W_R {int(r.control_overlap_tokens)} tokens; unmatched "
                     f"{int(r.unmatched_windows)} windows ({int(r.unmatched_tokens)} tokens)")
        rows.append(("Eqs. 18-19", f"freeze regime {r.regime} (selection {r.selection})", text))
    return rows


def _persistence(ctx: Context) -> list[tuple[str, str, str]]:
    s = _json(paths.geometry_file(ctx.run_dir, "summary.json"))
    ckpts = ((ctx.config or {}).get("stats") or {}).get("checkpoints") or {}
    sel = s.get("persistence_selection") or {}
    early, late = s.get("early"), s.get("late")
    return [("Sec. 2.6", "persistence groups selected on data independent of early/late",
             f"selection {sel.get('selection')} ({', '.join(sel.get('selection_checkpoints', []))}); "
             f"early {early} = {ckpts.get(early, '?')}, late {late} = {ckpts.get(late, '?')}; "
             f"groups {s.get('persistence_groups')}")]


def _data(ctx: Context) -> list[tuple[str, str, str]]:
    rep = _json(ctx.run_dir / "data" / "prompts_report.json")
    return [("App. C", "stage-1 / stage-2 prompts are separate",
             f"unique {rep['stage1']['unique_prompts']} of {rep['stage1']['rows']} / "
             f"{rep['stage2']['unique_prompts']} of {rep['stage2']['rows']}; overlap "
             f"{rep['overlap_unique_prompts']} prompts (separate: {rep['separate']})")]


def design_frame(ctx: Context) -> pd.DataFrame:
    """The design table (:data:`COLUMNS`); a part whose artifact is missing reads "not run"."""
    rows = []
    for name, part in (("detection", _detection), ("knockout", _knockout), ("freeze", _freeze),
                       ("persistence", _persistence), ("data", _data)):
        try:
            rows += part(ctx)
        except (OSError, KeyError, ValueError, AttributeError) as err:
            rows.append(("", name, f"not run ({type(err).__name__}: {err})"))
    return pd.DataFrame(rows, columns=COLUMNS)
