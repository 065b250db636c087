"""The paper's expected table (results/expected/paper/claims.csv): complete, well-formed, and
consistent with the paper's own arithmetic where the paper states both a value and its inputs."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rock.report.bands import parse_expected, to_value
from rock.report.expected import CLAIM_COLUMNS, TOY_COLUMNS, load_table
from rock.report.extract import REGISTRY, TABLE1_PREDICTORS

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "results" / "expected" / "paper" / "claims.csv"


@pytest.fixture(scope="module")
def rows():
    return load_table(CLAIMS)


@pytest.fixture(scope="module")
def by_id(rows):
    return {r.id: r for r in rows}


def _metrics(rows):
    return {r.metric for r in rows}


def test_table_loads_with_registered_metrics(rows):
    assert CLAIMS.read_text().splitlines()[0] == ",".join(CLAIM_COLUMNS + TOY_COLUMNS)
    assert len(rows) >= 150
    assert all(r.metric in REGISTRY for r in rows)
    assert all(r.artifact and r.section and r.note for r in rows)


@pytest.mark.parametrize("metric,value", [
    ("detect.median_rock_density", "0.18"),             # Sec. 2.3 / abstract
    ("detect.median_rock_occ_density", "0.18"),
    ("detect.coverage_at_k100", "0.60"), ("detect.coverage_at_k50", "0.49"),
    ("detect.jaccard_mean_min_k_le_100", "0.70"), ("detect.jaccard_mean_k_ge_150", "0.57"),
    ("detect.jaccard_mean_at_k50", "0.81"),
    ("geometry.median_grad_norm.rock", "0.016"), ("geometry.median_grad_norm.highkl", "0.54"),
    ("geometry.mannwhitney_p.grad_norm_rock_vs_highkl", "1e-30"),
    ("geometry.median_cos.rock", "0.040"), ("geometry.median_cos.highkl", "0.025"),
    ("geometry.median_cos.random", "0.006"), ("geometry.max_cos.rock", "0.3"),
    ("geometry.median_kl_early.highkl", "2.02"), ("geometry.median_kl_late.highkl", "0.85"),
    ("geometry.kl_reduction.highkl", "0.58"), ("geometry.wilcoxon_p.highkl", "1e-8"),
    ("geometry.median_kl_early.rock", "0.21"), ("geometry.median_kl_late.rock", "0.19"),
    ("knockout.census.math500.pillar", "7"), ("knockout.census.math500.neutral", "193"),
    ("knockout.census.math500.stumbling", "0"), ("knockout.census.math500.baseline_acc", "0.750"),
    ("knockout.census.ifeval.pillar", "3"), ("knockout.census.ifeval.neutral", "197"),
    ("knockout.census.ifeval.stumbling", "0"), ("knockout.census.ifeval.baseline_acc", "0.752"),
    ("knockout.cross_task.N||N", "190"), ("knockout.cross_task.P||N", "7"),
    ("knockout.cross_task.N||P", "3"), ("knockout.cross_task.P||P", "0"),
    ("knockout.min_p.math500", "0.0038"), ("knockout.min_p.ifeval", "0.0016"),
    ("knockout.bonferroni_threshold.math500", "2.5e-4"),
    ("knockout.sign_test.combined.p", "1.95e-3"), ("knockout.sign_test.math500.p", "0.016"),
    ("knockout.sign_test.ifeval.p", "0.25"), ("knockout.sign_test.core.p", "3.1e-2"),
    ("knockout.sign_test.core.n_neg", "6"), ("knockout.n_pillars_in_core", "6"),
    ("knockout.table1.max_abs_r", "0.071"), ("knockout.table1.min_p", "0.320"),
])
def test_required_claims_are_present(rows, metric, value):
    hits = [r for r in rows if r.metric == metric]
    assert hits, f"no claim row for {metric}"
    assert any(to_value(value) in parse_expected(r.expected) for r in hits), (metric, value)


def test_all_bh_and_bonferroni_rows(rows):
    m = _metrics(rows)
    for b in ("math500", "ifeval"):
        assert f"knockout.bonferroni_rejections.{b}" in m
        for q in ("0.05", "0.1", "0.2"):
            assert f"knockout.bh_rejections.{b}.q{q}" in m


def test_table1_has_all_36_cells_with_their_bands(rows):
    cells = [r for r in rows if r.metric.startswith("knockout.table1.") and r.metric.count(".") == 4]
    assert len(cells) == 36
    for r in cells:
        if r.metric.endswith(".r"):
            assert str(r.band) == "abs_lt:0.075" and abs(float(r.expected)) < 0.075
        else:
            assert str(r.band) == "p_above:0.3" and float(r.expected) > 0.30
    assert {r.metric.split(".")[2] for r in cells} == set(TABLE1_PREDICTORS)


@pytest.mark.parametrize("metric,alternatives", [
    ("freeze.speedup_throughput", [1.7, 1.4]), ("freeze.speedup_tta", [1.7, 1.4]),
    ("freeze.frozen_token_share", [0.18, 0.30]),
    ("detect.k_share_of_observed_vocab", [0.06, 0.025]),
    ("config.evaluation.n_runs", [5.0, 3.0]), ("config.stage2.max_new_tokens", [8000.0, 1024.0]),
    ("detect.median_rock_density", [0.18, 0.185]),
])
def test_inconsistencies_are_rows_with_both_values(rows, metric, alternatives):
    hits = [r for r in rows if r.metric == metric and len(parse_expected(r.expected)) > 1]
    assert hits, f"no inconsistency row for {metric}"
    assert parse_expected(hits[0].expected) == alternatives
    assert "INCONSISTENT" in hits[0].note


def test_figure2_panel_labels_row_lists_the_three_readings(by_id):
    r = by_id["I06"]
    assert str(r.band) == "info"
    for piece in ("caption:", "Sec. 2.3", "App. E", "(d) Jaccard", "Figures 1b and 1c"):
        assert piece in r.expected


@pytest.mark.parametrize("key,value", [
    ("stage1.lr", "2e-5"), ("stage2.lr", "2e-6"), ("stage1.kd_ratio", "0.5"), ("stage2.kd_ratio", "1.0"),
    ("stage1.global_batch", "128"), ("stage2.global_batch", "4"), ("stage2.n_rollouts", "4"),
    ("stage2.max_prompt_len", "800"), ("teacher_samples.temperature", "0.6"),
    ("teacher_samples.max_new_tokens", "16384"), ("stage2.max_grad_norm", "1.0"),
    ("stage1.warmup_ratio", "0.05"), ("stage2.n_checkpoints", "7"), ("detection.k_screen", "200"),
    ("knockout.epsilon", "0.01"), ("knockout.n_resamples", "10000"),
])
def test_appendix_c_hyperparameters_are_paper_scale_config_rows(rows, key, value):
    hits = [r for r in rows if r.metric == f"config.{key}" and str(r.band) == "eq"]
    assert hits and hits[0].scale == "paper"
    assert to_value(value) in parse_expected(hits[0].expected)


def test_paper_config_yaml_reproduces_every_config_claim(rows):
    """config.yaml is the paper-scale run: each App. C row agrees with it (or is recorded)."""
    import yaml

    from rock.report.check import run_check
    from rock.report.extract import Context

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    config_rows = [r for r in rows if r.metric.startswith("config.")]
    table = run_check(config_rows, Context(run_dir=ROOT / "results" / "none", config=cfg), "paper")
    bad = table[table["status"] == "disagrees"]
    assert bad.empty, bad[["id", "metric", "expected", "measured"]].to_string()


# ---- the paper's own arithmetic -------------------------------------------------------------------

def test_table1_p_values_follow_from_r_at_n_200(by_id):
    """Two-sided Pearson p for n = 200 (t with 198 df) reproduces every p of Table 1 to rounding."""
    r_rows = [r for r in by_id.values() if r.metric.startswith("knockout.table1.")
              and r.metric.endswith(".r") and r.metric.count(".") == 4]
    for rr in r_rows:
        pr = next(x for x in by_id.values() if x.metric == rr.metric[:-1] + "p")
        r = float(rr.expected)
        t = r * np.sqrt(198 / (1 - r * r))
        p = 2 * stats.t.sf(abs(t), 198)
        assert p == pytest.approx(float(pr.expected), abs=0.006), (rr.metric, p, pr.expected)


def test_sign_tests_bonferroni_and_bh_arithmetic(by_id):
    def two_sided(k, n):
        return stats.binomtest(k, n, 0.5).pvalue

    assert two_sided(10, 10) == pytest.approx(float(by_id["K63"].expected), rel=0.01)   # 1.95e-3
    assert two_sided(7, 7) == pytest.approx(float(by_id["K66"].expected), rel=0.03)     # 0.016
    assert two_sided(3, 3) == pytest.approx(float(by_id["K69"].expected))               # 0.25
    assert two_sided(6, 6) == pytest.approx(float(by_id["K72"].expected), rel=0.01)     # 3.1e-2
    assert 0.05 / 200 == pytest.approx(float(by_id["K43"].expected))                    # 2.5e-4
    assert 1 / 200 * 0.20 < float(by_id["K42"].expected)                                # BH cutoff 1e-3 < 0.0016
    # D.4 "2^-10 ~ 0.002" conflates one- and two-sided: recorded as I11
    one, two = parse_expected(by_id["I11"].expected)
    assert one == pytest.approx(2 * 2 ** -10, rel=1e-3) and two == pytest.approx(2 ** -10, rel=1e-3)


def test_census_and_stable_core_arithmetic(by_id):
    assert float(by_id["K11"].expected) + float(by_id["K12"].expected) == 200
    assert float(by_id["K21"].expected) + float(by_id["K22"].expected) == 200
    assert sum(float(by_id[k].expected) for k in ("K31", "K32", "K33", "K34")) == 200
    assert float(by_id["K16"].expected) == pytest.approx(7 / 200)
    ranks = [16, 93, 99, 109, 143, 166, 185, 35, 64, 69]                   # App. D.2
    assert sum(r <= 100 for r in ranks) == float(by_id["K73"].expected) == 6


def test_geometry_and_coverage_arithmetic(by_id):
    assert 1 - 0.85 / 2.02 == pytest.approx(float(by_id["G13"].expected), abs=0.005)     # ~58%
    assert 0.016 / 0.54 == pytest.approx(float(by_id["G03"].expected), abs=5e-4)
    assert 0.016 / 0.54 < 0.1                                                           # an order of magnitude
    # K = 100 at 2.5% of the observed vocabulary -> about 4,000 observed types; 6% would be ~1,700
    a, b = parse_expected(by_id["I03"].expected)
    assert 100 / b == pytest.approx(4000) and 100 / a == pytest.approx(1667, abs=1)


def test_figure5_caption_contradicts_the_batch_size(by_id):
    """200 steps = 8,000 prompts means 40 prompts/step; App. C's global batch is 4."""
    alt = parse_expected(by_id["I08"].expected)
    assert alt == [8000 / 200, 4.0]
