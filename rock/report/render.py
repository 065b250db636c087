"""The one-page report: Figures 2-6, Tables 1-2, the claim check and the run's provenance.

Two renderings of the same content:

* HTML (``report.html``): self-contained by default (figures embedded as data URIs, so the file
  can be mailed or attached to a ticket), or with relative image links (``--link-images``). A small
  script at the end checks, once the page has loaded, that every figure decoded
  (``naturalWidth > 0``) and every table has rows, and writes the result into
  ``<pre id="selfcheck" data-done="1">``; the browser test reads it with ``chromium --dump-dom``.
* Markdown (``report.md``) for a terminal, figures as relative links.

Every number shown is read from a file a rule wrote (the check table, the stage artifacts): the
report computes nothing itself (showyourwork's ``\\variable``). Tables 1 and 2 are shown side by side
with the paper's values, taken from the claim check rows of the same metrics.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from pathlib import Path

import pandas as pd

from rock.report import toy as toy_section
from rock.report.design import design_frame
from rock.report.check import STATUSES, markdown_table, summary
from rock.report.extract import (FIGURES, KNOCKOUT_BENCHMARKS, TABLE1_PREDICTORS, Context, NotRun,
                                 find_artifact)

log = logging.getLogger(__name__)

#: figure number -> (title, stage that makes it); captions come from workflow/report/<fig>.rst
FIGURE_TITLES = {
    "figure2": ("Figure 2: identification and stability of Rock Tokens", "detection [2.3-2.4, E]"),
    "figure2_official": ("Figure 2, official mode: the authors' selection (freq >= 2, 5 most "
                         "frequent dropped, freq x mean KL)", "detection, official mode [reference]"),
    "figure3": ("Figure 3: gradient geometry and persistence", "geometry [2.6]"),
    "figure4": ("Figure 4: knockout effect of the screened candidates", "knockout [3, D.4]"),
    "figure5": ("Figure 5: AIME/HMMT accuracy during OPD per freeze regime", "freeze [4]"),
    "figure6": ("Figure 6: knockout effect vs six predictors", "knockout [D.5]"),
}
TABLE1_LABELS = {
    "frequency": "Frequency", "rock_count": "Rock count", "rock_rate": "Rock rate",
    "pre_opd_kl": "Pre-OPD KL", "post_opd_kl": "Post-OPD KL", "kl_improvement": "KL improvement",
    "teacher_entropy": "Teacher entropy", "pre_opd_student_entropy": "Pre-OPD student entropy",
    "post_opd_student_entropy": "Post-OPD student entropy",
}
BENCH_LABELS = {"math500": "MATH-500", "ifeval": "IFEval"}
CENSUS_COLUMNS = (("pillar", "Strong Pillar"), ("neutral", "Neutral"),
                  ("stumbling", "Strong Stumbling"), ("baseline_acc", "Baseline acc."))
CROSS_TASK = ("N||N", "P||N", "N||P", "P||P")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
figure{margin:1em 0;padding:.5em;border:1px solid #ddd;border-radius:4px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:.9em;color:#444;margin-top:.5em}
.notrun{background:#f6f6f6;color:#777;padding:1em;border:1px dashed #bbb;border-radius:4px}
table.data{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em 0}
table.data th,table.data td{border:1px solid #ccc;padding:.2em .45em;vertical-align:top;text-align:left}
table.data th{background:#f0f0f0}
tr.agrees td.status{background:#d9f2d9}tr.disagrees td.status{background:#f8d0d0}
tr.notrun td.status{background:#eee;color:#666}tr.recorded td.status{background:#dde8f6}
.badge{display:inline-block;padding:.1em .5em;border-radius:3px;margin-right:.4em;font-size:.9em}
.b-agrees{background:#d9f2d9}.b-disagrees{background:#f8d0d0}.b-notrun{background:#eee}
.b-recorded{background:#dde8f6}.regression{background:#f8d0d0;padding:.6em;border-radius:4px}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
details{margin:.5em 0}.small{font-size:.85em;color:#555}
"""

_SELFCHECK_JS = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.figure'));
  var tables = Array.prototype.slice.call(document.querySelectorAll('table.data'));
  var res = {
    images: imgs.map(function (i) { return {id: i.id, ok: i.complete && i.naturalWidth > 0,
                                            width: i.naturalWidth}; }),
    tables: tables.map(function (t) { var n = t.tBodies.length ? t.tBodies[0].rows.length : 0;
                                      return {id: t.id, rows: n, ok: n > 0 && t.offsetHeight > 0}; })
  };
  var bad = res.images.filter(function (x) { return !x.ok; }).length +
            res.tables.filter(function (x) { return !x.ok; }).length;
  var el = document.getElementById('selfcheck');
  el.textContent = JSON.stringify(res);
  el.setAttribute('data-done', '1');
  document.getElementById('selfcheck-summary').textContent =
    'Page self-check: ' + res.images.length + ' figures, ' + res.tables.length + ' tables, ' +
    (bad ? bad + ' failed to render' : 'all rendered');
});
</script>
"""


def esc(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and pd.isna(x)) else str(x))


def read_caption(captions_dir: Path | None, name: str) -> str:
    """Caption text from ``<captions_dir>/<name>.rst`` (plain paragraphs), '' if absent."""
    if captions_dir is None:
        return ""
    p = Path(captions_dir) / f"{name}.rst"
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _paragraphs_html(text: str) -> str:
    return "".join(f"<p>{esc(par.strip())}</p>" for par in text.split("\n\n") if par.strip())


def find_figures(ctx: Context) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for name in FIGURES:
        try:
            out[name] = find_artifact(ctx, name, FIGURES)
        except NotRun:
            out[name] = None
    return out


def _img_src(png: Path, html_dir: Path, embed: bool) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    return html.escape(os.path.relpath(png, html_dir))


# ---- tables built from the check rows (ours next to the paper's) ----------------------------

def _by_metric(check: pd.DataFrame) -> dict[str, pd.Series]:
    claims = check[check["kind"] == "claim"]
    return {r["metric"]: r for _, r in claims.iterrows()}


def _cell(rows: dict, metric: str, col: str) -> str:
    r = rows.get(metric)
    if r is None:
        return ""
    v = r[col]
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


def _measured(rows: dict, metric: str) -> str:
    r = rows.get(metric)
    if r is None:
        return "n/a"
    return _cell(rows, metric, "measured") or "not run"


def table1_frame(check: pd.DataFrame) -> pd.DataFrame:
    """Table 1, ours next to the paper's: one row per predictor, r and p per benchmark."""
    rows = _by_metric(check)
    out = []
    for p in TABLE1_PREDICTORS:
        rec = {"Predictor": TABLE1_LABELS[p]}
        for b in KNOCKOUT_BENCHMARKS:
            for s in ("r", "p"):
                m = f"knockout.table1.{p}.{b}.{s}"
                rec[f"{BENCH_LABELS[b]} {s} (paper)"] = _cell(rows, m, "expected")
                rec[f"{BENCH_LABELS[b]} {s} (ours)"] = _measured(rows, m)
        out.append(rec)
    return pd.DataFrame(out)


def table2_frame(check: pd.DataFrame) -> pd.DataFrame:
    """Table 2 (Pillar census), ours next to the paper's: one row per benchmark."""
    rows = _by_metric(check)
    out = []
    for b in KNOCKOUT_BENCHMARKS:
        rec = {"Benchmark": BENCH_LABELS[b]}
        for key, label in CENSUS_COLUMNS:
            m = f"knockout.census.{b}.{key}"
            rec[f"{label} (paper)"] = _cell(rows, m, "expected")
            rec[f"{label} (ours)"] = _measured(rows, m)
        out.append(rec)
    return pd.DataFrame(out)


def agreement_frame(check: pd.DataFrame) -> pd.DataFrame:
    """Table 2's last line: cross-task agreement (category on MATH-500 || on IFEval)."""
    rows = _by_metric(check)
    return pd.DataFrame([{"Agreement": lab,
                          "paper": _cell(rows, f"knockout.cross_task.{lab}", "expected"),
                          "ours": _measured(rows, f"knockout.cross_task.{lab}")} for lab in CROSS_TASK])


def html_table(df: pd.DataFrame, table_id: str, *, status_col: str | None = None,
               cols: list[str] | None = None) -> str:
    cols = cols or list(df.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        cls = ""
        if status_col:
            cls = f' class="{str(r[status_col]).replace(" ", "")}"'
        tds = "".join(f'<td class="{esc(c)}">{esc(r[c])}</td>' for c in cols)
        body.append(f"<tr{cls}>{tds}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(cols)}">(empty)</td></tr>')
    return (f'<table class="data" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _badges(counts: dict[str, int]) -> str:
    return "".join(f'<span class="badge b-{s.replace(" ", "")}">{counts[s]} {esc(s)}</span>'
                   for s in STATUSES)


# ---- the page --------------------------------------------------------------------------------

def render_html(ctx: Context, check: pd.DataFrame, prov: dict, html_path: Path, *,
                captions_dir: Path | None = None, embed_images: bool = True,
                title: str = "Rock Tokens reproduction report", truth: pd.DataFrame | None = None) -> str:
    html_dir = html_path.parent
    figs = find_figures(ctx)
    counts = summary(check)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             "<p class='small'>Cornerstones or Stumbling Blocks? Deciphering the Rock Tokens in "
             "On-Policy Distillation (arXiv 2605.09253). Run directory "
             f"<code>{esc(prov.get('run_dir', ctx.run_dir))}</code>, rendered {esc(prov.get('date_utc'))}, "
             f"commit <code>{esc(prov.get('git', {}).get('commit', '?'))[:12]}</code>"
             f"{' (uncommitted changes)' if prov.get('git', {}).get('dirty') else ''}.</p>",
             "<h2 id='summary'>Summary</h2>"]
    for kind, c in counts.items():
        label = "Paper claims" if kind == "claim" else "Toy golden numbers"
        parts.append(f"<p><b>{label}</b>: {_badges(c)}</p>")
    regs = check[(check["kind"] == "golden") & (check["status"] == "disagrees")]
    if len(regs):
        parts.append(f"<p class='regression'><b>{len(regs)} toy regression(s)</b>: "
                     + ", ".join(esc(f"{r.id} {r.metric}") for r in regs.itertuples()) + "</p>")
    parts.append(f"<p class='small'>Figures produced: {sum(p is not None for p in figs.values())} of "
                 f"{len(figs)}.</p>")
    parts.append(toy_section.section_html(check, truth, html_table, esc))

    parts.append("<h2 id='figures'>Figures</h2>")
    parts += [_figure_html(name, png, ctx, html_dir, captions_dir, embed_images) for name, png in figs.items()]

    parts.append("<h2 id='tables'>Tables</h2>")
    parts.append(f"<h3>Table 1: Pearson correlation of the knockout effect with nine predictors</h3>"
                 f"{_paragraphs_html(read_caption(captions_dir, 'table1'))}"
                 + html_table(table1_frame(check), "table1"))
    parts.append(f"<h3>Table 2: Pillar census over the screened candidates</h3>"
                 f"{_paragraphs_html(read_caption(captions_dir, 'table2'))}"
                 + html_table(table2_frame(check), "table2")
                 + "<p class='small'>Cross-task agreement (X||Y: category on MATH-500 || on IFEval; "
                 "N neutral, P Strong Pillar, S Strong Stumbling)</p>"
                 + html_table(agreement_frame(check), "table2-agreement"))
    parts.append("<h3>Experimental design as the paper defines it</h3>" + html_table(design_frame(ctx), "design"))

    parts.append("<h2 id='claims'>Claim check</h2>"
                 f"{_paragraphs_html(read_caption(captions_dir, 'claims_check'))}")
    cols = ["id", "section_or_figure", "metric", "expected", "measured", "band", "status", "detail"]
    for kind, g in check.groupby("kind", sort=False):
        label = "Paper claims" if kind == "claim" else "Toy golden numbers"
        use = cols if kind == "claim" else [c for c in cols if c != "section_or_figure"]
        parts.append(f"<h3>{label}</h3>" + html_table(g, f"check-{kind}", status_col="status", cols=use))

    parts.append("<h2 id='provenance'>Provenance</h2>" + _provenance_html(prov))
    parts.append("<p class='small' id='selfcheck-summary'>Page self-check: pending (needs JavaScript)."
                 "</p><pre id='selfcheck' data-done='0' style='display:none'></pre>")
    parts.append(_SELFCHECK_JS + "</body></html>")
    return "\n".join(parts)


def _figure_html(name: str, png: Path | None, ctx: Context, html_dir: Path, captions_dir: Path | None,
                 embed_images: bool) -> str:
    """One figure with its caption, or a "not run" box naming where it was looked for."""
    ttl, stage = FIGURE_TITLES[name]
    cap = _paragraphs_html(read_caption(captions_dir, name))
    if png is None:
        return (f"<figure id='{name}-box'><div class='notrun'><b>{esc(ttl)}</b>: not run "
                f"(the {esc(stage)} stage has not produced it; looked for "
                f"{esc(', '.join(FIGURES[name]))}).</div><figcaption>{cap}</figcaption></figure>")
    pdf = png.with_suffix(".pdf")
    pdf_link = (f" <a href='{esc(os.path.relpath(pdf, html_dir))}'>PDF</a>" if pdf.is_file() else "")
    return (f"<figure id='{name}-box'><img class='figure' id='{name}' alt='{esc(ttl)}' "
            f"src='{_img_src(png, html_dir, embed_images)}'><figcaption><b>{esc(ttl)}</b> "
            f"<span class='small'>({esc(os.path.relpath(png, ctx.run_dir))}{pdf_link})</span>"
            f"{cap}</figcaption></figure>")


def _kv_table(d: dict, table_id: str) -> str:
    return html_table(pd.DataFrame({"key": list(d), "value": [str(v) for v in d.values()]}), table_id)


def _provenance_html(prov: dict) -> str:
    git = prov.get("git") or {}
    hw = dict(prov.get("hardware") or {})
    cfg = prov.get("config") or {}
    out = [f"<p>Command: <code>{esc(prov.get('command'))}</code></p>",
           f"<p>Git: <code>{esc(git.get('commit', 'unknown'))}</code> on {esc(git.get('branch', '?'))}"
           f"{', uncommitted changes' if git.get('dirty') else ''}.</p>",
           f"<p>Machine (where the report was rendered): {esc(hw.get('summary', '?'))}</p>"]
    if cfg:
        out.append(f"<p>Config: <code>{esc(cfg.get('path'))}</code> sha256 "
                   f"<code>{esc(str(cfg.get('sha256', ''))[:16])}</code></p>"
                   f"<details><summary>config text</summary><pre>{esc(cfg.get('text', cfg.get('error', '')))}"
                   f"</pre></details>")
    else:
        out.append("<p>Config: not given.</p>")
    out.append("<h3>Package versions</h3>" + _kv_table(prov.get("versions") or {}, "versions"))
    hw.pop("summary", None)
    out.append("<h3>Hardware</h3>" + _kv_table(hw, "hardware"))
    seeds = pd.DataFrame(prov.get("seeds") or [], columns=["source", "key", "value"])
    out.append("<h3>Seeds</h3>" + html_table(seeds, "seeds"))
    wc = pd.DataFrame(prov.get("wall_clock") or [], columns=["stage", "source", "seconds", "max_rss_mb"])
    st = pd.DataFrame(prov.get("stage_times") or [], columns=STAGE_TIME_COLUMNS)
    out.append("<h3>Wall-clock per stage</h3>" + html_table(st, "stage times")
               + "<details><summary>every job and summary timing</summary>" + html_table(wc, "wall-clock")
               + "</details>")
    lg = pd.DataFrame(prov.get("logs") or [], columns=["log", "bytes", "modified_utc"])
    out.append("<h3>Logs</h3>" + html_table(lg, "logs"))
    return "".join(out)


#: columns of rock.report.provenance.stage_times
STAGE_TIME_COLUMNS = ["stage", "jobs", "wall_s", "max_job_s", "cpu_s", "max_rss_mb"]


def render_markdown(ctx: Context, check: pd.DataFrame, prov: dict, md_path: Path, *,
                    captions_dir: Path | None = None,
                    title: str = "Rock Tokens reproduction report", truth: pd.DataFrame | None = None) -> str:
    md_dir = md_path.parent
    figs = find_figures(ctx)
    git = prov.get("git") or {}
    lines = [f"# {title}", "",
             f"Run directory `{prov.get('run_dir', ctx.run_dir)}`, rendered {prov.get('date_utc')}, "
             f"commit `{git.get('commit', '?')}`" + (" (uncommitted changes)" if git.get("dirty") else ""),
             "", "## Summary", ""]
    for kind, c in summary(check).items():
        lines.append(f"- {'Paper claims' if kind == 'claim' else 'Toy golden numbers'}: "
                     + ", ".join(f"{v} {k}" for k, v in c.items()))
    regs = check[(check["kind"] == "golden") & (check["status"] == "disagrees")]
    if len(regs):
        lines.append(f"- **{len(regs)} toy regression(s)**: "
                     + ", ".join(f"{r.id} {r.metric}" for r in regs.itertuples()))
    lines += [""] + toy_section.section_markdown(check, truth)
    lines += ["## Figures", ""]
    for name, png in figs.items():
        ttl, stage = FIGURE_TITLES[name]
        cap = " ".join(read_caption(captions_dir, name).split())
        if png is None:
            lines += [f"**{ttl}**: not run ({stage} has not produced it).", ""]
        else:
            lines += [f"![{ttl}]({os.path.relpath(png, md_dir)})", "", f"**{ttl}.** {cap}", ""]
    lines += ["## Table 1 (ours vs paper)", "", markdown_table(table1_frame(check)), "",
              "## Table 2 (ours vs paper)", "", markdown_table(table2_frame(check)), "",
              "Cross-task agreement (MATH-500 || IFEval):", "", markdown_table(agreement_frame(check)), "",
              "## Experimental design as the paper defines it", "", markdown_table(design_frame(ctx)), "",
              "## Claim check", ""]
    cols = ["id", "section_or_figure", "metric", "expected", "measured", "band", "status", "detail"]
    for kind, g in check.groupby("kind", sort=False):
        use = cols if kind == "claim" else [c for c in cols if c != "section_or_figure"]
        lines += [f"### {'Paper claims' if kind == 'claim' else 'Toy golden numbers'}", "",
                  markdown_table(g, use), ""]
    hw = prov.get("hardware") or {}
    lines += ["## Provenance", "",
              f"- command: `{prov.get('command')}`",
              f"- machine (rendering): {hw.get('summary', '?')}",
              f"- config: `{(prov.get('config') or {}).get('path', 'not given')}` sha256 "
              f"`{str((prov.get('config') or {}).get('sha256', ''))[:16]}`",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items()),
              "- seeds: " + (", ".join(f"{s['source']}:{s['key']}={s['value']}"
                                        for s in prov.get("seeds") or []) or "none recorded"),
              "", "### Wall-clock per stage", "",
              markdown_table(pd.DataFrame(prov.get("stage_times") or [], columns=STAGE_TIME_COLUMNS)),
              ""]
    return "\n".join(lines) + "\n"


def write_report(ctx: Context, check: pd.DataFrame, prov: dict, out_html: str | Path, *,
                 captions_dir: Path | None = None, embed_images: bool = True,
                 truth: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (same stem) plus ``provenance.json``, atomically."""
    from rock.atomic import write_json, write_text

    out_html = Path(out_html)
    md = out_html.with_suffix(".md")
    write_text(out_html, render_html(ctx, check, prov, out_html, captions_dir=captions_dir,
                                     embed_images=embed_images, truth=truth))
    write_text(md, render_markdown(ctx, check, prov, md, captions_dir=captions_dir, truth=truth))
    slim = {k: v for k, v in prov.items() if k != "config"}
    slim["config"] = {k: v for k, v in (prov.get("config") or {}).items() if k != "text"}
    write_json(out_html.with_name("provenance.json"), json.loads(json.dumps(slim, default=str)))
    return out_html, md
