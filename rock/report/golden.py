"""Golden numbers of the toy run (``results/expected/toy/golden.csv``).

``rock report golden --from results/toy --out results/expected/toy/golden.csv`` records what a
toy run produced, so that a later run that moves a number outside its band fails the check:

1. every registered metric (:data:`rock.report.extract.REGISTRY`, results only, not config) that
   resolves on the run;
2. every numeric leaf of the JSON summaries under the run (:data:`GOLDEN_SOURCES`: the toy world's
   ``world.json``, stage summaries, evaluation summaries), as generic ``json:<relpath>#<key>``
   metrics, except volatile fields (timings, paths, versions, dates: :data:`VOLATILE`) and echoed
   inputs (config, provenance: :data:`NON_RESULT`).

Existing rows are kept as they are (their value, band and note may have been tuned by hand);
new metrics are appended. ``--update`` re-records the values of existing rows too (after an
intended change; see :func:`merge`). The directory's README.md is rewritten with the provenance of the recording.
The default band of a new row is :func:`default_band`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from rock import paths
from rock.report import bands
from rock.report.expected import GOLDEN_COLUMNS, load_table, write_golden
from rock.report.extract import REGISTRY, Context, NotRun

log = logging.getLogger(__name__)

#: JSON files whose numeric leaves become golden rows (globs relative to run_dir)
GOLDEN_SOURCES = (str(paths.world_info(Path())), "*/summary.json", "*/*/summary.json",
                  "eval/*/*/summary.json", "freeze/regimes/*/summary.json")
#: leaf keys that differ between two identical runs or machines: never golden
VOLATILE = re.compile(r"(^|[._])(time|times|timing|timings|seconds|secs|wall|wall_clock|duration|"
                      r"elapsed|date|started|finished|host|hostname|path|dir|version|versions|"
                      r"commit|git|hash|sha256|pid|threads|device|tokens_per_s|throughput|"
                      r"resumed_from_step)"
                      r"($|[._])|_s$|_sec$|_seconds$|per_s$")
#: subtrees that echo inputs (config, provenance, arguments) rather than results: never golden
NON_RESULT = re.compile(r"^(provenance|config|configs|settings|args|arguments|environment|env)(\.|$)"
                        r"|\.(provenance|config|configs|settings)\.")
#: accuracies, pass rates: a toy regression is a move of more than this (absolute); the toy
#: evaluates ~100 problems, so one problem is 0.01 and sampling noise about 0.04 (DESIGN.md)
ACC_TOL = 0.05
#: other floats: relative tolerance, with an absolute floor for values near zero
REL_TOL, ABS_FLOOR = 0.10, 1e-3
_ACC = re.compile(r"(acc|accuracy|pass|pass_at_1|pass@1|score|exact_match|strict|loose)", re.I)
_P_VALUE = re.compile(r"(^|[._])(p|p_value|pvalue|sign_p|core_sign_p|min_p)$|_p$|wilcoxon_p|mannwhitney_p")


def default_band(key: str, value: Any) -> str:
    """The band a newly recorded golden value gets.

    * integers (sizes, counts, steps, seeds) and booleans: ``eq``
    * p-values: the side of 0.05 they fall on (``p_below:0.05`` / ``p_above:0.05``); their exact
      value is not stable under small changes but the significance verdict should be
    * accuracies: ``abs_tol:0.05`` (:data:`ACC_TOL`)
    * other numbers: ``abs_tol:max(0.1 * |value|, 1e-3)`` (:data:`REL_TOL`, :data:`ABS_FLOOR`)
    """
    v = bands.to_value(value)
    if not isinstance(v, float):
        return "eq"
    last = key.split("#")[-1]
    if _P_VALUE.search(last) and 0.0 <= v <= 1.0:
        return "p_below:0.05" if v < 0.05 else "p_above:0.05"
    if isinstance(value, (bool, int)) and not isinstance(v, str):
        return "eq"
    if _ACC.search(last) and 0.0 <= v <= 1.0:
        return f"abs_tol:{ACC_TOL}"
    return f"abs_tol:{bands.fmt_value(max(REL_TOL * abs(v), ABS_FLOOR))}"


def numeric_leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys and values of the numeric/boolean leaves of a JSON object (lists skipped)."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out += numeric_leaves(v, key)
    elif isinstance(obj, bool) or (isinstance(obj, (int, float)) and math.isfinite(obj)):
        out.append((prefix, obj))
    return out


def collect(ctx: Context) -> list[dict]:
    """Current values of the run: registered metrics first, then generic JSON leaves."""
    rows: list[dict] = []
    covered: set[tuple[str, str]] = set()
    for m in REGISTRY.values():
        if not m.golden:
            continue
        try:
            got = m.read(ctx)
        except NotRun:
            continue
        rows.append({"metric": m.key, "value": got.value, "artifact": got.artifact,
                     "note": m.help})
        if "#" in got.artifact:
            covered.add(tuple(got.artifact.split("#", 1)))
    seen_files: set[Path] = set()
    for pattern in GOLDEN_SOURCES:
        for f in sorted(ctx.run_dir.glob(pattern)):
            if f in seen_files or not f.is_file():
                continue
            seen_files.add(f)
            relpath = str(f.relative_to(ctx.run_dir))
            try:
                obj = json.loads(f.read_text())
            except (OSError, ValueError) as err:
                log.warning("%s: unreadable, skipped (%s)", f, err)
                continue
            for key, value in numeric_leaves(obj):
                if VOLATILE.search(key.lower()) or NON_RESULT.search(key.lower()) \
                        or (relpath, key) in covered:
                    continue
                rows.append({"metric": f"json:{relpath}#{key}", "value": value,
                             "artifact": f"{relpath}#{key}", "note": ""})
    return rows


def merge(existing: list[dict], current: list[dict], *, update: bool) -> tuple[list[dict], dict]:
    """Keep existing rows, append new metrics with fresh ids ``T###``.

    With ``update`` (re-recording after an intended change) existing rows are re-valued, a band
    that was the default for the old value (:func:`default_band`, e.g. the side of 0.05 of a
    p-value) follows the new value while a band tuned by hand stays, and rows whose metric the
    run no longer produces are dropped (logged)."""
    by_metric = {r["metric"]: r for r in current}
    out, stats = [], {"kept": 0, "updated": 0, "added": 0, "missing_now": 0, "dropped": 0}
    for r in existing:
        r = dict(r)
        cur = by_metric.pop(r["metric"], None)
        if cur is None:
            if update:
                log.warning("golden row %s (%s) is no longer produced: dropped", r["id"], r["metric"])
                stats["dropped"] += 1
                continue
            stats["missing_now"] += 1
        elif update and bands.fmt_value_exact(cur["value"]) != r["value"]:
            if r["band"] == default_band(r["metric"], r["value"]):
                r["band"] = default_band(r["metric"], cur["value"])
            r["value"] = bands.fmt_value_exact(cur["value"])
            stats["updated"] += 1
        else:
            stats["kept"] += 1
        out.append(r)
    # ids are never reused, not even those of dropped rows
    nums = [int(m.group(1)) for r in existing if (m := re.fullmatch(r"T(\d+)", r["id"]))]
    nxt = max(nums, default=0) + 1
    for cur in current:
        if cur["metric"] not in by_metric:
            continue
        out.append({"id": f"T{nxt:03d}", "metric": cur["metric"],
                    "value": bands.fmt_value_exact(cur["value"]),
                    "band": default_band(cur["metric"], cur["value"]),
                    "artifact": cur["artifact"], "note": cur["note"]})
        nxt += 1
        stats["added"] += 1
    return out, stats


def record(ctx: Context, out: str | Path, *, update: bool = False, command: str = "",
           provenance: dict | None = None) -> dict:
    """Record the golden table ``out`` from the run in ``ctx``; rewrite the README next to it."""
    out = Path(out)
    existing = []
    if out.is_file():
        existing = [{"id": r.id, "metric": r.metric, "value": r.expected, "band": str(r.band),
                     "artifact": r.artifact, "note": r.note} for r in load_table(out)]
    rows, stats = merge(existing, collect(ctx), update=update)
    write_golden(out, rows)
    from rock.report import platform

    platform.write(out.parent, platform.current())
    log.info("golden table %s: %s", out, ", ".join(f"{v} {k}" for k, v in stats.items()))
    write_readme(out.parent / "README.md", rows, stats, command=command, provenance=provenance or {},
                 run_dir=ctx.run_dir)
    return stats


def write_readme(path: Path, rows: list[dict], stats: dict, *, command: str, provenance: dict,
                 run_dir: Path) -> None:
    from rock.atomic import write_text

    git = provenance.get("git", {})
    by_source: dict[str, int] = {}
    for r in rows:
        src = r["metric"].split("#")[0].removeprefix("json:") if r["metric"].startswith("json:") \
            else r["metric"].split(".")[0]
        by_source[src] = by_source.get(src, 0) + 1
    lines = [
        "# Golden numbers of the toy run",
        "",
        "`golden.csv` holds what the toy run produced, one number per row, with the band within",
        "which a later toy run must reproduce it (`rock report check` fails on a golden row that",
        "disagrees: a toy regression). Columns: " + ", ".join(f"`{c}`" for c in GOLDEN_COLUMNS) + ".",
        "",
        "Bands of new rows follow `rock.report.golden.default_band`: counts `eq`, p-values the side",
        f"of 0.05, accuracies `abs_tol:{ACC_TOL}`, other numbers `abs_tol:max(0.1*|v|, 1e-3)`.",
        "Timings, paths and versions are never golden (they differ between identical runs).",
        "Existing rows are kept when re-recording; `--update` re-values them after an intended change.",
        "",
        "## How these numbers were obtained",
        "",
        "```",
        command or "rock report golden --from results/toy --out results/expected/toy/golden.csv",
        "```",
        "",
        f"- recorded: {provenance.get('date_utc', '?')}",
        f"- run directory: `{run_dir}`",
        f"- git commit: `{git.get('commit', '?')}`" + (" (with uncommitted changes)" if git.get("dirty") else ""),
        f"- machine: {provenance.get('hardware', {}).get('summary', '?')}",
        f"- python {provenance.get('versions', {}).get('python', '?')}, torch "
        f"{provenance.get('versions', {}).get('torch', '?')}",
        f"- this recording: " + ", ".join(f"{v} {k}" for k, v in stats.items()),
        "- numerical platform: `platform.json` (CPU vendor and model, ATen CPU capability, torch);",
        "  `rock report check` fails on a golden disagreement only on that platform (or with",
        "  `ROCK_GOLDEN_STRICT=1`): float32 CPU training differs between CPU vendors and",
        "  instruction sets (`rock/report/platform.py`)",
        "",
        "## Rows by source",
        "",
        "| source | rows |",
        "|---|---|",
        *[f"| `{k}` | {v} |" for k, v in sorted(by_source.items())],
        "",
        "Stages that have not run yet have no rows; re-run the command after they land to add them.",
        "",
    ]
    write_text(path, "\n".join(lines))
