"""The report's opening section on a toy run: "What the toy reproduces" (issue 14).

Two tables: every direction claim (the paper's value, the toy's band, the toy's value, agrees or
disagrees; :func:`rock.report.check.toy_directions`) and the planted ground truth recovered end to
end (:mod:`rock.report.truth`). Both fail ``report_check`` when a row disagrees; the report shows
them first so that a reader sees at once whether the analysis finds the effects the toy plants.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rock.report.check import markdown_table, toy_directions

INTRO = ("The toy world plants each mechanism the paper describes (world.json, ground_truth). "
         "Direction claims must hold on the toy (judged with the toy band); magnitudes are paper-scale "
         "and only shown below; claims the toy cannot test are n/a, with the reason, in the claim "
         "check table (column toy_reason). A disagreement in either table fails the claim check on the "
         "numerical platform the golden numbers were recorded on (another platform trains another world).")


def read_truth(check_csv: str | Path) -> pd.DataFrame | None:
    """``ground_truth.csv`` next to the claim check, if the check wrote one."""
    p = Path(check_csv).with_name("ground_truth.csv")
    return pd.read_csv(p, dtype=str, keep_default_na=False) if p.is_file() else None


def has_section(check: pd.DataFrame, truth: pd.DataFrame | None) -> bool:
    return (truth is not None and len(truth) > 0) or bool(
        "toy_status" in check and (check["toy_status"].fillna("") != "").any())


def section_html(check: pd.DataFrame, truth: pd.DataFrame | None, html_table, esc) -> str:
    if not has_section(check, truth):
        return ""
    d = toy_directions(check)
    n_ok = int((d["status"] == "agrees").sum())
    out = [f"<h2 id='toy'>What the toy reproduces</h2><p class='small'>{esc(INTRO)}</p>",
           f"<p><b>Direction claims</b>: {n_ok} of {len(d)} agree.</p>",
           html_table(d, "toy-directions", status_col="status")]
    if truth is not None and len(truth):
        n = int((truth["status"] == "recovered").sum())
        out += [f"<p><b>Planted ground truth</b>: {n} of {len(truth)} recovered.</p>",
                html_table(truth, "ground-truth", status_col="status")]
    return "".join(out)


def section_markdown(check: pd.DataFrame, truth: pd.DataFrame | None) -> list[str]:
    if not has_section(check, truth):
        return []
    d = toy_directions(check)
    lines = ["## What the toy reproduces", "", INTRO, "",
             f"Direction claims: {int((d['status'] == 'agrees').sum())} of {len(d)} agree.", "",
             markdown_table(d), ""]
    if truth is not None and len(truth):
        lines += [f"Planted ground truth: {int((truth['status'] == 'recovered').sum())} of "
                  f"{len(truth)} recovered.", "", markdown_table(truth), ""]
    return lines
