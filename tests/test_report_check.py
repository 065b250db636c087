"""The claim check: extractors on constructed artifacts (agree, disagree, missing), the check table,
the exit policy (toy regressions fail, paper claims never do) and the golden recording."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from report_fake_run import make_fake_run
from rock import paths
from rock.cli import main as rock_main
from rock.errors import DataError
from rock.report import check as chk
from rock.report import golden
from rock.report.expected import load_expected, load_table
from rock.report.extract import REGISTRY, Context, NotRun, dig, norm, resolve

CLAIMS = Path(__file__).resolve().parents[1] / "results" / "expected" / "paper" / "claims.csv"


@pytest.fixture()
def run(tmp_path):
    return make_fake_run(tmp_path / "run", figures=False)


def ctx(run, config=None):
    return Context(run_dir=run, config=config)


def value(run, metric, config=None):
    return resolve(metric).read(ctx(run, config)).value


# ---- one extractor per artifact type --------------------------------------------------------------

def test_json_extractor_reads_nested_keys_and_dotted_key_names(run):
    assert value(run, "detect.median_rock_density") == 0.185
    assert value(run, "geometry.median_grad_norm.rock") == 0.016
    assert value(run, "knockout.bh_rejections.math500.q0.05") == 0   # key "0.05" contains a dot
    assert value(run, "knockout.sign_test.core.p") == 0.03125
    assert dig({"a": {"0.1": 3}}, "a.0.1") == 3


def test_csv_extractors_compute_from_stage_tables(run):
    assert value(run, "detect.median_rock_occ_density") == pytest.approx(0.18)
    assert value(run, "detect.rock_token_share") == pytest.approx(55 / 300)
    assert value(run, "detect.coverage_at_k100") == 0.60
    assert value(run, "detect.jaccard_mean_min_k_le_100") == 0.75     # min(0.81, 0.75)
    assert value(run, "detect.jaccard_mean_k_ge_150") == pytest.approx(0.565)
    assert value(run, "detect.n_digit_rocks") == 10
    assert value(run, "detect.share_four_clusters") == pytest.approx(0.75)
    assert value(run, "freeze.speedup_tta") == 1.45
    assert value(run, "freeze.frozen_token_share") == 0.19


def test_table_extractors_wide_table1_and_census(run):
    assert value(run, "knockout.table1.kl_improvement.ifeval.r") == 0.071
    assert value(run, "knockout.table1.pre_opd_student_entropy.math500.p") == 0.406
    assert value(run, "knockout.table1.max_abs_r") == 0.071
    assert value(run, "knockout.table1.max_abs_r.math500") == 0.063
    assert value(run, "knockout.table1.min_p") == 0.320
    assert value(run, "knockout.census.math500.pillar") == 7
    assert value(run, "knockout.census.ifeval.baseline_acc") == 0.752
    assert value(run, "knockout.cross_task.N||P") == 3
    assert value(run, "knockout.pillar_share.math500") == pytest.approx(0.035)


def test_long_table1_layout_is_accepted(run):
    t = paths.knockout_result(run, "table1.csv")
    pd.DataFrame([{"predictor": "Teacher entropy", "benchmark": "MATH-500", "r": 0.2, "p": 0.01}]
                 ).to_csv(t, index=False)
    assert value(run, "knockout.table1.teacher_entropy.math500.r") == 0.2
    with pytest.raises(NotRun):
        value(run, "knockout.table1.teacher_entropy.ifeval.r")


def test_derived_config_and_jsonl_extractors(run):
    assert value(run, "geometry.grad_norm_ratio_rock_to_highkl") == pytest.approx(0.016 / 0.54)
    assert value(run, "geometry.kl_reduction.highkl") == pytest.approx(1 - 0.85 / 2.02)
    assert value(run, "geometry.cos_order_rock_highkl_random") == 1.0
    assert value(run, "freeze.acc_delta.rock_freeze_minus_baseline") == pytest.approx(-0.02)
    assert value(run, "detect.k_share_of_observed_vocab") == 0.025
    assert value(run, "data.n_problems.math500") == 500
    cfg = {"stage2": {"max_new_tokens": 1024}, "knockout": {"fdr_q": [0.05, 0.1, 0.2]}}
    assert value(run, "config.stage2.max_new_tokens", cfg) == 1024
    assert value(run, "config.knockout.fdr_q", cfg) == "0.05,0.1,0.2"
    with pytest.raises(NotRun, match="no config"):
        value(run, "config.stage2.lr")
    with pytest.raises(NotRun, match="no key stage2.lr"):
        value(run, "config.stage2.lr", cfg)


def test_missing_and_unreadable_artifacts_are_not_run(run):
    (paths.geometry_dir(run) / "summary.json").unlink()
    with pytest.raises(NotRun, match="not produced"):
        value(run, "geometry.median_cos.rock")
    with pytest.raises(NotRun):   # a derived metric inherits the reason
        value(run, "geometry.grad_norm_ratio_rock_to_highkl")
    paths.detection_file(run, "context", "info.json").write_text("{not json")
    with pytest.raises(NotRun, match="unreadable"):
        value(run, "detect.median_rock_density")
    pd.DataFrame({"k": [10], "coverage": [0.1], "jaccard_mean": [0.9]}).to_csv(
        paths.detection_file(run, "context", "stability_summary.csv"), index=False)
    with pytest.raises(NotRun, match="not in table"):
        value(run, "detect.coverage_at_k100")


def test_norm_matches_table_spellings():
    assert norm("Pre-OPD student entropy") == "pre_opd_student_entropy"
    assert norm("MATH-500") == "math500" and norm("High-KL") == "highkl"


def test_registry_keys_are_unique_and_resolvable():
    assert len(REGISTRY) > 150
    assert resolve("json:world/world.json#teacher.accuracy").key.startswith("json:")
    with pytest.raises(KeyError):
        resolve("detect.no_such_metric")


# ---- the check table --------------------------------------------------------------------------

def _claims(tmp_path, rows):
    p = tmp_path / "claims.csv"
    pd.DataFrame(rows, columns=["id", "section_or_figure", "metric", "paper_value", "band",
                                "artifact", "scale", "note"]).to_csv(p, index=False)
    return p


def test_check_statuses_agree_disagree_not_run_recorded(run, tmp_path):
    p = _claims(tmp_path, [
        ["X1", "Sec. 2.4", "detect.coverage_at_k100", "0.60", "abs_tol:0.05", "", "any", ""],
        ["X2", "Sec. 2.6", "geometry.median_cos.rock", "0.10", "abs_tol:0.02", "", "any", ""],
        ["X3", "Sec. 4.3", "freeze.speedup_throughput", "1.7;1.4", "rel_tol:0.2", "", "any", ""],
        ["X4", "App. C", "config.stage2.lr", "2e-6", "eq", "", "paper", ""],
        ["X5", "D.4", "knockout.sign_test.combined.p", "0.00195;0.00098", "info", "", "any", ""],
    ])
    paths.freeze_result(run, "regimes.csv").unlink()
    table = chk.run_check(load_table(p), ctx(run), "toy")
    st = dict(zip(table["id"], table["status"]))
    assert st == {"X1": "agrees", "X2": "disagrees", "X3": "not run", "X4": "not run",
                  "X5": "recorded"}
    x2 = table.set_index("id").loc["X2"]
    assert x2["expected"] == "0.10" and x2["measured"] == "0.04"   # both numbers are shown
    assert "paper-scale" in table.set_index("id").loc["X4", "detail"]
    assert table.set_index("id").loc["X5", "measured"] == "0.001953"
    # at paper scale the config row is judged
    t2 = chk.run_check(load_table(p), ctx(run, {"stage2": {"lr": 2e-6}}), "paper")
    assert dict(zip(t2["id"], t2["status"]))["X4"] == "agrees"


def test_every_paper_claim_has_a_status_on_the_fake_run(run):
    rows = load_expected([CLAIMS])
    table = chk.run_check(rows, ctx(run), "toy")
    assert len(table) == len(rows) and set(table["status"]) <= set(chk.STATUSES)
    by = table.set_index("id")
    # paper-like numbers agree, both sides of an inconsistency are reported
    for rid in ("D02", "D07", "G03", "G13", "K11", "K34", "K63", "T1-37", "T1-38", "T1-39"):
        assert by.loc[rid, "status"] == "agrees", (rid, by.loc[rid, "detail"])
    assert by.loc["I15", "status"] == "agrees" and "1.4" in by.loc["I15", "detail"]
    assert by.loc["I01", "status"] == "disagrees"        # throughput 1.05: neither 1.7 nor 1.4
    assert by.loc["F02", "status"] == "agrees" and by.loc["F01", "status"] == "agrees"


def test_regressions_fail_only_on_golden_rows(run, tmp_path):
    claims = _claims(tmp_path, [["X2", "Sec. 2.6", "geometry.median_cos.rock", "0.10", "abs_tol:0.02",
                                 "", "any", ""]])
    out = tmp_path / "check" / "claims_check.csv"
    base = ["report", "check", "--run-dir", str(run), "--out", str(out), "--scale", "toy"]
    assert rock_main(base + ["--expected", str(claims)]) == 0          # a claim disagrees: exit 0
    gold = tmp_path / "golden.csv"
    pd.DataFrame([["T001", "geometry.median_cos.rock", "0.04", "abs_tol:0.004", "", ""]],
                 columns=["id", "metric", "value", "band", "artifact", "note"]).to_csv(gold, index=False)
    assert rock_main(base + ["--expected", str(claims), str(gold)]) == 0   # golden agrees
    summary = json.loads((run / "geometry" / "summary.json").read_text())
    summary["median_cos"]["rock"] = 0.05
    (run / "geometry" / "summary.json").write_text(json.dumps(summary))
    assert rock_main(base + ["--expected", str(claims), str(gold)]) == 1   # toy regression
    table = pd.read_csv(out, dtype=str)
    row = table[table["id"] == "T001"].iloc[0]
    assert row["status"] == "disagrees" and row["expected"] == "0.04" and row["measured"] == "0.05"
    assert rock_main(base + ["--expected", str(gold), "--no-fail"]) == 0
    assert "disagrees" in out.with_suffix(".md").read_text()


def test_bad_expected_table_names_file_line_field(tmp_path):
    p = _claims(tmp_path, [["X1", "s", "detect.coverage_at_k100", "0.6", "abs_tol:0.05", "", "any", ""],
                           ["X2", "s", "detect.nope", "0.6", "abs_tol:0.05", "", "any", ""]])
    with pytest.raises(DataError, match=r"claims.csv:3: field 'metric'.*detect.nope"):
        load_table(p)
    p = _claims(tmp_path, [["X1", "s", "detect.coverage_at_k100", "0.6", "tol:0.05", "", "any", ""]])
    with pytest.raises(DataError, match=r"claims.csv:2: field 'band'"):
        load_table(p)
    p = _claims(tmp_path, [["X1", "s", "detect.coverage_at_k100", "", "abs_tol:0.05", "", "any", ""]])
    with pytest.raises(DataError, match=r"field 'paper_value'"):
        load_table(p)
    p = _claims(tmp_path, [["X1", "s", "detect.coverage_at_k100", "0.6", "eq", "", "any", ""],
                           ["X1", "s", "detect.coverage_at_k50", "0.5", "eq", "", "any", ""]])
    with pytest.raises(DataError, match="duplicate id"):
        load_table(p)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,metric\nA,b\n")
    with pytest.raises(DataError, match="header lacks"):
        load_table(bad)
    assert rock_main(["report", "check", "--run-dir", str(tmp_path), "--out", str(tmp_path / "o.csv"),
                      "--expected", str(bad)]) == 2


# ---- golden recording ---------------------------------------------------------------------------

def test_golden_records_registry_metrics_and_world_leaves(run, tmp_path):
    out = tmp_path / "toy" / "golden.csv"
    stats = golden.record(ctx(run), out, command="rock report golden ...", provenance={})
    rows = {r.metric: r for r in load_table(out)}
    assert stats["added"] == len(rows) > 50
    acc = rows["json:world/world.json#accuracy_math500.teacher"]
    assert acc.expected == "0.89" and str(acc.band) == "abs_tol:0.05"
    assert str(rows["json:world/world.json#parameters.student"].band) == "eq"
    assert str(rows["json:world/world.json#pretraining.teacher.loss_last10"].band) == "abs_tol:0.061"
    assert not any(k in m for m in rows for k in ("timings", "versions", "#config."))  # never golden
    assert "json:detect/context/info.json#median_density" not in rows      # covered by the registry
    assert rows["detect.median_rock_density"].expected == "0.185"
    assert str(rows["knockout.sign_test.combined.p"].band) == "p_below:0.05"
    assert "rock report golden" in (out.parent / "README.md").read_text()
    # the run reproduces its own golden numbers
    table = chk.run_check(load_table(out), ctx(run), "toy")
    assert set(table["status"]) == {"agrees"}


def test_golden_keeps_existing_rows_and_appends_new_ones(run, tmp_path):
    out = tmp_path / "golden.csv"
    shutil.rmtree(paths.knockout_dir(run))
    golden.record(ctx(run), out, provenance={})
    first = load_table(out)
    assert not any(r.metric.startswith("knockout.") for r in first)
    # hand-tune a band, change the world, land the knockout stage
    text = out.read_text().replace("abs_tol:0.05", "abs_tol:0.07", 1)
    out.write_text(text)
    w = json.loads((run / "world" / "world.json").read_text())
    w["accuracy_math500"]["teacher"] = 0.5
    (run / "world" / "world.json").write_text(json.dumps(w))
    make_fake_run(run, figures=False)  # rewrites everything, knockout included...
    (run / "world" / "world.json").write_text(json.dumps(w))   # ...but keep the changed world
    stats = golden.record(ctx(run), out, provenance={})
    second = {r.metric: r for r in load_table(out)}
    assert stats["added"] > 0 and stats["updated"] == 0
    assert second["json:world/world.json#accuracy_math500.teacher"].expected == "0.89"  # kept
    assert any(m.startswith("knockout.") for m in second)
    assert [r.id for r in first] == [r.id for r in load_table(out)][:len(first)]  # ids are stable
    golden.record(ctx(run), out, update=True, provenance={})
    third = {r.metric: r for r in load_table(out)}
    assert third["json:world/world.json#accuracy_math500.teacher"].expected == "0.5"
    tuned = [r for r in load_table(out) if str(r.band) == "abs_tol:0.07"]
    assert tuned, "a hand-tuned band survives --update"


def test_golden_cli_on_an_empty_run_writes_a_header_only_table(tmp_path):
    out = tmp_path / "golden.csv"
    assert rock_main(["report", "golden", "--from", str(tmp_path / "nothing"), "--out", str(out)]) == 0
    assert load_table(out) == []


def test_golden_update_moves_default_bands_keeps_tuned_ones_and_drops_vanished_rows():
    existing = [
        {"id": "T001", "metric": "knockout.table1.x.math500.p", "value": "0.01", "band": "p_below:0.05",
         "artifact": "", "note": ""},                                 # default band of 0.01
        {"id": "T002", "metric": "knockout.table1.y.math500.p", "value": "0.01", "band": "p_above:0.001",
         "artifact": "", "note": "tuned"},                             # tuned by hand
        {"id": "T003", "metric": "knockout.table1.x.ifeval.r", "value": "0.3", "band": "abs_tol:0.03",
         "artifact": "", "note": ""},                                  # no longer produced
    ]
    current = [{"metric": "knockout.table1.x.math500.p", "value": 0.08, "artifact": "", "note": ""},
               {"metric": "knockout.table1.y.math500.p", "value": 0.08, "artifact": "", "note": ""},
               {"metric": "knockout.census.math500.pillar", "value": 8, "artifact": "", "note": ""}]
    rows, stats = golden.merge([dict(r) for r in existing], current, update=True)
    by_id = {r["id"]: r for r in rows}
    assert stats == {"kept": 0, "updated": 2, "added": 1, "missing_now": 0, "dropped": 1}
    assert (by_id["T001"]["value"], by_id["T001"]["band"]) == ("0.08", "p_above:0.05")
    assert (by_id["T002"]["value"], by_id["T002"]["band"]) == ("0.08", "p_above:0.001")
    assert "T003" not in by_id and by_id["T004"]["band"] == "eq"
    # without --update nothing is re-valued or dropped
    rows, stats = golden.merge([dict(r) for r in existing], current, update=False)
    assert stats == {"kept": 2, "updated": 0, "added": 1, "missing_now": 1, "dropped": 0}
    assert [r["value"] for r in rows[:3]] == ["0.01", "0.01", "0.3"]


def test_golden_disagreement_fails_only_on_the_recorded_numerical_platform(run, tmp_path, monkeypatch):
    """Golden numbers are a same-platform check (rock.report.platform): recorded here -> a
    disagreement fails; recorded on another CPU -> listed with a warning, exit 0; strict env -> fails."""
    from rock.report import platform

    monkeypatch.delenv(platform.STRICT_ENV, raising=False)
    gold_dir = tmp_path / "toy"
    gold_dir.mkdir()
    gold = gold_dir / "golden.csv"
    pd.DataFrame([["T001", "geometry.median_cos.rock", "0.5", "abs_tol:0.004", "", ""]],
                 columns=["id", "metric", "value", "band", "artifact", "note"]).to_csv(gold, index=False)
    out = tmp_path / "check" / "claims_check.csv"
    args = ["report", "check", "--run-dir", str(run), "--out", str(out), "--scale", "toy",
            "--expected", str(gold_dir)]
    here = platform.current()
    assert rock_main(args) == 1                                   # no platform.json: strict
    platform.write(gold_dir, here)
    assert platform.recorded_for([gold_dir]) == here
    assert rock_main(args) == 1                                   # same platform: a regression
    platform.write(gold_dir, {**here, "cpu_model": f"not {here['cpu_model']}"})
    assert rock_main(args) == 0                                   # another platform: reported only
    assert pd.read_csv(out, dtype=str).set_index("id").loc["T001", "status"] == "disagrees"
    monkeypatch.setenv(platform.STRICT_ENV, "1")
    assert rock_main(args) == 1
    gates, diff = platform.golden_gates({**here, "torch": "0.0"}, here, env={})
    assert not gates and diff == [f"torch: '0.0' != {here['torch']!r}"]


def test_golden_recording_writes_the_platform(run, tmp_path):
    from rock.report import platform

    out = tmp_path / "g" / "golden.csv"
    assert rock_main(["report", "golden", "--from", str(run), "--out", str(out)]) == 0
    assert platform.read(out.parent) == platform.current()
    assert "numerical platform" in (out.parent / "README.md").read_text()
