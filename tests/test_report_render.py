"""The one-page report: HTML and markdown content, provenance, and a real headless browser
(Debian's chromium) that loads the page, checks every figure decodes and every table renders, and
keeps a screenshot."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from report_fake_run import make_fake_run
from rock import paths
from rock.cli import main as rock_main
from rock.report import browser, provenance

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "results" / "expected" / "paper" / "claims.csv"
GOLDEN = ROOT / "results" / "expected" / "toy" / "golden.csv"
CAPTIONS = ROOT / "workflow" / "report"
TOY_RUN = ROOT / "results" / "toy"
TOY_CONFIG = ROOT / "tests" / "config_toy" / "config.yaml"

needs_chromium = pytest.mark.skipif(
    browser.find_browser() is None,
    reason="chromium is not installed (apt-get update && apt-get install -y chromium); "
           "the headless-browser check of the report needs it")


def build_report(run: Path, *, config: Path | None = None, expected=(CLAIMS,), link=False):
    out = paths.report_dir(run)
    check = out / "claims_check.csv"
    cfg = ["--config", str(config)] if config else []
    rc = rock_main(["report", "check", "--run-dir", str(run), "--out", str(check), "--no-fail",
                    "--expected", *map(str, expected), *cfg])
    assert rc == 0
    html = out / "report.html"
    args = ["report", "render", "--run-dir", str(run), "--check", str(check), "--out", str(html),
            "--captions", str(CAPTIONS), *cfg] + (["--link-images"] if link else [])
    assert rock_main(args) == 0
    return html


@pytest.fixture()
def fake_run(tmp_path):
    return make_fake_run(tmp_path / "run")


def test_html_has_every_figure_table_and_claim(fake_run):
    html_path = build_report(fake_run)
    html = html_path.read_text()
    for fig in ("figure2", "figure3", "figure4", "figure5", "figure6"):
        assert re.search(rf"<img class='figure' id='{fig}'[^>]*src='data:image/png;base64,", html), fig
    assert "figure2_official" in html and "not run" in html          # absent figure: no broken <img>
    for table_id in ("table1", "table2", "table2-agreement", "check-claim", "versions", "wall-clock", "seeds"):
        assert f'id="{table_id}"' in html
    n_claims = len(pd.read_csv(CLAIMS))
    assert html.count("<tr class=") >= n_claims                      # one row per claim
    assert "0.071" in html and "190" in html                          # Table 1 and 2 paper values
    assert "Panels follow the paper" in html                # caption from workflow/report
    md = html_path.with_suffix(".md").read_text()
    assert "## Table 1 (ours vs paper)" in md and "![Figure 3" in md
    assert "| Frequency |" in md
    prov = json.loads((html_path.parent / "provenance.json").read_text())
    assert prov["versions"]["python"] and "summary" in prov["hardware"]


def test_tables_show_ours_next_to_the_paper(fake_run):
    html_path = build_report(fake_run)
    md = html_path.with_suffix(".md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| KL improvement |"))
    # paper r, ours r, paper p, ours p on MATH-500 then IFEval
    assert line.split("|")[2:10] == [" -0.062 ", " -0.062 ", " 0.386 ", " 0.386 ",
                                     " 0.071 ", " 0.071 ", " 0.320 ", " 0.32 "]
    (paths.knockout_result(fake_run, "table1.csv")).unlink()
    md = build_report(fake_run).with_suffix(".md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| KL improvement |"))
    assert "not run" in line and "-0.062" in line


def test_linked_images_are_relative(fake_run):
    html = build_report(fake_run, link=True).read_text()
    assert "src='../geometry/figure3.png'" in html and "base64" not in html


def test_provenance_reads_benchmarks_seeds_and_config(fake_run, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 3\nknockout: {seed: 5}\n")
    p = provenance.collect(fake_run, cfg, {"seed": 3, "knockout": {"seed": 5}})
    assert {"stage": "toy_world", "source": "benchmarks/toy_world.tsv", "seconds": 301.5,
            "max_rss_mb": 812.3} in p["wall_clock"]
    assert any(r["stage"].startswith("world:timings") for r in p["wall_clock"])
    assert {(s["key"], s["value"]) for s in p["seeds"]} >= {("seed", 3), ("knockout.seed", 5)}
    assert p["config"]["sha256"] and p["logs"][0]["log"] == "logs/toy_world.log"


def test_stage_times_sum_the_jobs_of_each_rule(tmp_path, capsys):
    bd = paths.benchmarks_dir(tmp_path)
    (bd / "evaluate").mkdir(parents=True)
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bd / "stage1.tsv").write_text(head + "14.0\t0:00:14\t700\t0\t0\t0\t0\t0\t90\t13.5\n")
    for name, sec, rss in (("teacher", 9.5, 600), ("student", 7.0, 500)):
        (bd / "evaluate" / f"{name}.tsv").write_text(head + f"{sec}\t0:00:09\t{rss}\t0\t0\t0\t0\t0\t90\t8\n")
    (bd / "broken.tsv").write_text("")
    table = provenance.stage_times(tmp_path)
    assert table.to_dict("records") == [
        {"stage": "evaluate", "jobs": 2, "wall_s": 16.5, "max_job_s": 9.5, "cpu_s": 16.0, "max_rss_mb": 600.0},
        {"stage": "stage1", "jobs": 1, "wall_s": 14.0, "max_job_s": 14.0, "cpu_s": 13.5, "max_rss_mb": 700.0},
        {"stage": "total", "jobs": 3, "wall_s": 30.5, "max_job_s": 14.0, "cpu_s": 29.5, "max_rss_mb": 700.0}]
    assert rock_main(["report", "timings", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "evaluate" in out and "30.5" in out
    assert rock_main(["report", "timings", "--run-dir", str(tmp_path / "none")]) == 2


def test_render_refuses_a_missing_check_table(fake_run, tmp_path):
    rc = rock_main(["report", "render", "--run-dir", str(fake_run), "--check", str(tmp_path / "no.csv"),
                    "--out", str(tmp_path / "r.html")])
    assert rc == 2 and not (tmp_path / "r.html").exists()


@needs_chromium
def test_report_opens_in_headless_chromium(fake_run):
    html_path = build_report(fake_run)
    res = browser.selfcheck(browser.dump_dom(html_path))
    imgs = {i["id"]: i for i in res["images"]}
    assert set(imgs) == {"figure2", "figure3", "figure4", "figure5", "figure6"}
    assert all(i["ok"] and i["width"] > 0 for i in imgs.values()), imgs
    tables = {t["id"]: t for t in res["tables"]}
    assert {"table1", "table2", "check-claim", "versions"} <= set(tables)
    assert all(t["ok"] for t in tables.values()), tables
    assert tables["table1"]["rows"] == 9 and tables["table2"]["rows"] == 2
    assert tables["table2-agreement"]["rows"] == 4
    png = browser.screenshot(html_path, html_path.with_suffix(".png"), height=2000)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@needs_chromium
def test_a_broken_image_is_caught_by_the_browser_check(fake_run):
    html_path = build_report(fake_run, link=True)
    paths.figure3(fake_run, "png").write_bytes(b"not a png")
    res = browser.selfcheck(browser.dump_dom(html_path))
    bad = [i["id"] for i in res["images"] if not i["ok"]]
    assert bad == ["figure3"]


@needs_chromium
@pytest.mark.skipif(not (paths.world_dir(TOY_RUN) / "world.json").is_file(),
                    reason="no toy run in results/toy (run the toy workflow first)")
def test_toy_report_opens_in_headless_chromium(tmp_path):
    """The real toy run's report: every figure it has decodes, every table renders; the
    screenshot is kept with the run (results/toy/report/report.png)."""
    run = tmp_path / "toy"
    shutil.copytree(TOY_RUN, run, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt",
                                                                  "checkpoints", "*.parquet"))
    expected = [CLAIMS] + ([GOLDEN] if GOLDEN.is_file() else [])
    html_path = build_report(run, config=TOY_CONFIG, expected=expected)
    res = browser.selfcheck(browser.dump_dom(html_path))
    assert all(i["ok"] for i in res["images"]), res["images"]
    assert all(t["ok"] for t in res["tables"]), res["tables"]
    keep = paths.report_file(TOY_RUN, "report.png")
    browser.screenshot(html_path, keep)
    assert keep.stat().st_size > 10_000


def test_toy_regressions_are_shown_at_the_top(fake_run, tmp_path):
    from rock.report import golden
    from rock.report.extract import Context

    gold = tmp_path / "golden.csv"
    golden.record(Context(run_dir=fake_run), gold, provenance={})
    summary = json.loads((fake_run / "geometry" / "summary.json").read_text())
    summary["median_cos"]["rock"] = 0.5
    (fake_run / "geometry" / "summary.json").write_text(json.dumps(summary))
    html = build_report(fake_run, expected=(CLAIMS, gold)).read_text()
    assert "1 toy regression(s)" in html and "geometry.median_cos.rock" in html
    assert 'id="check-golden"' in html
    md = (paths.report_dir(fake_run) / "report.md").read_text()
    assert "**1 toy regression(s)**" in md and "### Toy golden numbers" in md


def test_design_table_reads_the_design_artifacts_and_says_not_run_for_missing_ones(tmp_path):
    """The report's "Experimental design" rows (rock.report.design) on hand-made artifacts."""
    import json

    import pandas as pd

    from rock import paths
    from rock.report.design import design_frame
    from rock.report.readers import Context

    info = paths.detection_file(tmp_path, "context", "info.json")
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"n_qualifying": 12, "min_ccr": 0.2, "n_rocks": 10}))
    mt = tmp_path / "knockout" / "results" / "multiple_testing.json"
    mt.parent.mkdir(parents=True)
    mt.write_text(json.dumps({"level_correction": "bonferroni", "window_sets": {
        "rule": "high_divergence", "min_share": 0.25, "text": "n 10, median 2, max 3"},
        "per_task": {"math500": {"m": 10, "min_p": 0.0088, "min_p_uncorrected": 0.0044,
                                 "bonferroni_rejections": 0, "bonferroni_threshold": 0.005}}}))
    reg = tmp_path / "freeze" / "results" / "regimes.csv"
    reg.parent.mkdir(parents=True)
    pd.DataFrame({"regime": ["rock_freeze", "random_window_freeze"], "selection": ["rock", "random"],
                  "frozen_fraction": [0.47, 0.389], "control_overlap_tokens": [None, 0],
                  "unmatched_windows": [None, 76], "unmatched_tokens": [None, 670]}).to_csv(reg, index=False)
    table = design_frame(Context(run_dir=tmp_path, config={"stats": {"checkpoints": {"late": "stage2_penultimate"}}}))
    text = table.set_index("design")["this run"]
    assert text["detection cut: CCR(v) >= min_ccr before top-K"] == \
        "12 types qualify (min_ccr 0.2); 10 rock tokens selected"
    assert text["window sets W(v): rule high_divergence, share >= 0.25"] == "n 10, median 2, max 3"
    assert "min p 0.0088 (uncorrected 0.0044), Bonferroni rejections 0 at 0.005" in table["this run"].iloc[2]
    assert text["freeze regime random_window_freeze (selection random)"] == \
        "frozen share 0.389; overlap with W_R 0 tokens; unmatched 76 windows (670 tokens)"
    assert text["persistence"].startswith("not run (FileNotFoundError") and text["data"].startswith("not run")
