"""The claim check: every expected row against what a run produced [DESIGN.md, stage 10].

For each row of the expected tables (:mod:`rock.report.expected`) the metric is extracted from the
run directory (:mod:`rock.report.extract`) and judged under the row's band
(:mod:`rock.report.bands`). Each row gets exactly one status:

``agrees``     the measured value is within the band (with which alternative, for the paper's
               contradictory values)
``disagrees``  it is not; both numbers are in the row. Disagreements are listed one by one, never
               averaged into a score.
``not run``    the artifact or field does not exist (the stage has not run, or failed), or the
               row is a paper-scale hyperparameter and the run is the toy. The reason is given.
``recorded``   ``info`` rows (the paper's inconsistencies, qualitative statements): both values
               are shown, nothing is judged.

On a toy run every claim also gets its toy kind (``toy``: direction, magnitude or n/a, issue 14)
and, for a direction claim, ``toy_status``: the measured value judged with the claim's ``toy_band``
(the direction the toy plants, e.g. "rock gradients below the high-KL tokens'"), not with the
paper's magnitude band.

Exit policy: a golden row that disagrees is a toy regression (:func:`regressions`) and a direction
claim that disagrees on the toy is a failed direction (:func:`direction_failures`); both fail the
``check`` rule. Other claims never fail it (at paper scale the check reports and exits 0).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from rock.report import bands
from rock.report.expected import ExpectedRow
from rock.report.extract import Context, NotRun, resolve

log = logging.getLogger(__name__)

AGREES, DISAGREES, NOT_RUN, RECORDED = "agrees", "disagrees", "not run", "recorded"
STATUSES = (AGREES, DISAGREES, NOT_RUN, RECORDED)
CHECK_COLUMNS = ("id", "kind", "section_or_figure", "metric", "expected", "measured", "band",
                 "status", "detail", "artifact", "note", "toy", "toy_band", "toy_status", "toy_reason")


def check_row(row: ExpectedRow, ctx: Context, run_scale: str) -> dict:
    """Judge one expected row; never raises for a missing or unreadable artifact."""
    out = {"id": row.id, "kind": row.kind, "section_or_figure": row.section, "metric": row.metric,
           "expected": row.expected, "measured": "", "band": str(row.band), "status": NOT_RUN,
           "detail": "", "artifact": row.artifact, "note": row.note, "toy": row.toy,
           "toy_band": str(row.toy_band or ""), "toy_status": "", "toy_reason": row.toy_reason}
    judge_toy = row.toy == "direction" and run_scale == "toy"
    if judge_toy:
        out["toy_status"] = NOT_RUN
    if row.scale == "paper" and run_scale != "paper":
        out["detail"] = f"paper-scale value; this run is {run_scale} scale"
        return out
    try:
        m = resolve(row.metric).read(ctx)
    except NotRun as why:
        out["detail"] = str(why)
        return out
    out["measured"] = bands.fmt_value(bands.to_value(m.value))
    out["artifact"] = m.artifact
    v = bands.judge(m.value, row.expected, row.band)
    out["status"] = RECORDED if v.agrees is None else (AGREES if v.agrees else DISAGREES)
    out["detail"] = v.detail
    if judge_toy:
        t = bands.judge(m.value, row.expected, row.toy_band)
        out["toy_status"] = AGREES if t.agrees else DISAGREES
        out["detail"] += f"; toy direction ({row.toy_band}): {t.detail}"
    return out


def run_check(rows: list[ExpectedRow], ctx: Context, run_scale: str) -> pd.DataFrame:
    """The check table, one row per expected row, in input order (columns :data:`CHECK_COLUMNS`)."""
    table = pd.DataFrame([check_row(r, ctx, run_scale) for r in rows], columns=list(CHECK_COLUMNS))
    counts = Counter(zip(table["kind"], table["status"]))
    for kind in ("claim", "golden"):
        n = {s: counts.get((kind, s), 0) for s in STATUSES}
        if sum(n.values()):
            log.info("%s rows: %s", kind, ", ".join(f"{v} {k}" for k, v in n.items()))
    return table


def regressions(table: pd.DataFrame) -> pd.DataFrame:
    """Golden rows that disagree: the toy regressions that fail the run."""
    return table[(table["kind"] == "golden") & (table["status"] == DISAGREES)]


def direction_failures(table: pd.DataFrame) -> pd.DataFrame:
    """Direction claims that disagree on the toy (issue 14): they fail the run like regressions."""
    if "toy_status" not in table:
        return table.iloc[0:0]
    return table[(table["kind"] == "claim") & (table["toy"] == "direction")
                 & (table["toy_status"] == DISAGREES)]


def toy_directions(table: pd.DataFrame) -> pd.DataFrame:
    """The report's opening table "What the toy reproduces": every direction claim, the paper's
    value, the toy's band and value, agree/disagree."""
    d = table[(table["kind"] == "claim") & (table["toy"] == "direction")]
    return pd.DataFrame({"id": d["id"], "claim": d["section_or_figure"], "metric": d["metric"],
                         "paper": d["expected"], "toy band": d["toy_band"], "toy": d["measured"],
                         "status": d["toy_status"], "what the toy plants": d["toy_reason"]})


def summary(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{kind: {status: count}}`` with every status present (zeros included)."""
    out: dict[str, dict[str, int]] = {}
    for kind, g in table.groupby("kind", sort=False):
        c = g["status"].value_counts()
        out[str(kind)] = {s: int(c.get(s, 0)) for s in STATUSES}
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """The check as markdown: a summary line per kind, then one pipe table per kind."""
    lines = ["# Claim check", ""]
    for kind, counts in summary(table).items():
        lines.append(f"- **{kind}** rows: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for kind, g in table.groupby("kind", sort=False):
        lines += ["", f"## {'Paper claims' if kind == 'claim' else 'Toy golden numbers'}", ""]
        cols = ["id", "section_or_figure", "metric", "expected", "measured", "band", "status", "detail"]
        if kind != "claim":
            cols.remove("section_or_figure")
        lines.append(markdown_table(g, cols))
    return "\n".join(lines) + "\n"


def markdown_table(df: pd.DataFrame, cols: list[str] | None = None) -> str:
    """A pipe table; ``|`` and newlines inside cells are escaped."""
    cols = cols or list(df.columns)

    def cell(v) -> str:
        s = "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(cell(r[c]) for c in cols) + " |")
    return "\n".join(out)


def write_check(table: pd.DataFrame, out_csv: str | Path) -> tuple[Path, Path]:
    """Write ``claims_check.csv`` and ``claims_check.md`` next to it, atomically."""
    from rock.atomic import atomic_path, write_text

    out_csv = Path(out_csv)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    md = out_csv.with_suffix(".md")
    write_text(md, to_markdown(table))
    return out_csv, md
