"""Gradient geometry [Sec. 2.6]: the logit gradient against autograd, streaming means against a
direct computation, Eq. 16 and the group statistics on hand examples."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rock.geometry import (GradientAccumulator, GroupSpec, define_groups, per_type_geometry, persistence,
                           reverse_kl_logit_grad, group_tests)


def test_logit_gradient_matches_autograd():
    torch.manual_seed(0)
    s = torch.randn(7, 11, dtype=torch.float64, requires_grad=True)
    t = torch.randn(7, 11, dtype=torch.float64)
    ls, lt = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
    kl = (ls.exp() * (ls - lt)).sum(-1)
    (auto,) = torch.autograd.grad(kl.sum(), s)
    g = reverse_kl_logit_grad(s.detach(), t)
    np.testing.assert_allclose(g.numpy(), auto.numpy(), atol=1e-6)
    # the authors' "+1" cancels: the same formula without it gives the same gradient
    ps = ls.exp().detach()
    a = (ls - lt).detach()
    no_one = ps * (a - (ps * a).sum(-1, keepdim=True))
    np.testing.assert_allclose(g.numpy(), no_one.numpy(), atol=1e-6)
    # a gradient in logit space sums to zero over the vocabulary (softmax is shift invariant)
    np.testing.assert_allclose(g.sum(-1).numpy(), 0.0, atol=1e-6)


def test_gradient_is_zero_when_student_equals_teacher():
    z = torch.randn(3, 5)
    assert torch.allclose(reverse_kl_logit_grad(z, z + 2.0), torch.zeros(3, 5), atol=1e-7)


def test_streaming_means_equal_direct_computation():
    rng = np.random.default_rng(0)
    n, vocab = 300, 13
    tokens = rng.integers(0, 9, size=n)
    grads = rng.normal(size=(n, vocab))
    counts = {int(t): int((tokens == t).sum()) for t in np.unique(tokens)}
    members = [0, 3, 8]
    direct_bal = sum(grads[tokens == t].mean(0) for t in counts)
    direct_means = np.stack([grads[tokens == m].mean(0) for m in members])
    for chunk in (1, 17, n):
        acc = GradientAccumulator(counts, members, vocab)
        before = acc.nbytes()
        for a in range(0, n, chunk):
            acc.update(torch.tensor(grads[a:a + chunk], dtype=torch.float32), torch.tensor(tokens[a:a + chunk]))
        assert acc.nbytes() == before  # memory does not grow with positions
        g_bal, means = acc.finalize()
        np.testing.assert_allclose(g_bal, direct_bal, atol=1e-5)
        np.testing.assert_allclose(means, direct_means, atol=1e-5)


def test_accumulator_memory_is_v_times_members():
    acc = GradientAccumulator({i: 1 for i in range(10)}, [1, 2, 3], vocab=1000)
    # G_balanced + 3 member rows in float64, plus per-type index/count vectors
    assert 4 * 1000 * 8 <= acc.nbytes() <= 4 * 1000 * 8 + 4 * 1000 * 8


def test_accumulator_rejects_positions_the_table_did_not_count():
    acc = GradientAccumulator({1: 2}, [1], vocab=4)
    acc.update(torch.zeros(1, 4), torch.tensor([1]))
    with pytest.raises(Exception, match="saw other positions"):
        acc.finalize()
    with pytest.raises(Exception, match="no count"):
        acc.update(torch.zeros(1, 4), torch.tensor([2]))


def test_contrib_eq16_hand_example():
    g_bal = np.array([1.0, 0.0])
    means = np.array([[3.0, 4.0], [0.0, -2.0]])
    per = per_type_geometry(g_bal, means, [7, 9], {7: 10, 9: 4})
    assert per["grad_norm"].tolist() == pytest.approx([5.0, 2.0])
    assert per["cos_balanced"].tolist() == pytest.approx([0.6, 0.0])
    assert per["contrib"].tolist() == pytest.approx([10 * 5 * 0.6, 0.0])


def test_groups_follow_the_authors_definitions():
    types = pd.DataFrame({"token_id": [1, 2, 3, 4, 5, 6, 7],
                          "freq": [50, 1, 3, 2, 9, 4, 8],
                          "mean_kl": [0.2, 9.0, 2.0, 3.0, 0.1, 1.0, 0.5]})
    g = define_groups(types, rocks=[1], spec=GroupSpec(high_kl_n=2, random_n=2, random_seed=0))
    assert g["rock"] == [1]
    assert g["high_kl"] == [4, 3]            # freq >= 2, not a rock, by mean KL (token 2 has freq 1)
    assert set(g["random"]) <= {5, 6, 7} and len(g["random"]) == 2
    assert g == define_groups(types, rocks=[1], spec=GroupSpec(high_kl_n=2, random_n=2, random_seed=0))


def test_persistence_and_wilcoxon():
    def table(kl_by_token):
        rows = [(t, k) for t, ks in kl_by_token.items() for k in ks]
        return pd.DataFrame({"token_id": [r[0] for r in rows], "reverse_kl": [r[1] for r in rows]})

    early = table({1: [0.2, 0.2], 2: [0.3], 3: [2.0], 4: [1.5], 5: [3.0], 6: [2.5], 7: [2.2], 8: [1.9]})
    late = table({1: [0.2, 0.2], 2: [0.3], 3: [0.5], 4: [0.4], 5: [1.0], 6: [0.9], 7: [0.8], 8: [0.7]})
    per, tests = persistence(early, late, {"rock": [1, 2], "high_kl": [3, 4, 5, 6, 7, 8]})
    t = tests.set_index("group")
    assert t.loc["rock", "median_delta_kl"] == 0.0 and np.isnan(t.loc["rock", "pvalue"])
    assert t.loc["high_kl", "median_kl_early"] == pytest.approx(2.1)
    assert t.loc["high_kl", "pvalue"] == pytest.approx(0.03125)   # exact: all 6 decrease, 2 * 2^-6
    assert per.set_index("token_id").loc[3, "delta_kl"] == pytest.approx(-1.5)


def test_mann_whitney_between_groups():
    per = pd.DataFrame({"group": ["rock"] * 4 + ["high_kl"] * 4,
                        "grad_norm": [0.01, 0.02, 0.015, 0.012, 0.5, 0.6, 0.55, 0.7],
                        "cos_balanced": [0.1] * 8, "contrib": [1.0] * 8})
    t = group_tests(per)
    row = t[(t["metric"] == "grad_norm") & (t["group_a"] == "rock") & (t["group_b"] == "high_kl")].iloc[0]
    assert row["statistic"] == 0.0 and row["pvalue"] == pytest.approx(2 / 70)  # exact two-sided, 4 vs 4


# --------------------------------------------------------------------------------------------
# persistence groups and the late checkpoint (issue 13, point 4; rock.persistence)
# --------------------------------------------------------------------------------------------

def _null_world(seed=0, V=300, n_traj=60, L=80):
    """Token tables of three checkpoints that learned *nothing*: per-occurrence KL = the type's
    true KL x a context factor shared by every checkpoint (same trajectories) x independent
    model noise per checkpoint. Any Delta KL a group shows here is selection, not training."""
    rng = np.random.default_rng(seed)
    true = rng.lognormal(-1, 1, V)
    p = 1 / np.arange(1, V + 1) ** 1.1
    tok = rng.choice(V, size=(n_traj, L), p=p / p.sum())
    ctx = rng.lognormal(0, 0.5, size=tok.shape)

    def table(s):
        noise = np.random.default_rng(s).lognormal(0, 0.7, size=tok.shape)
        return pd.DataFrame({"trajectory": np.repeat(np.arange(n_traj), L),
                             "position": np.tile(np.arange(L), n_traj), "token_id": tok.ravel(),
                             "reverse_kl": (true[tok] * ctx * noise).ravel()})
    return table(1), table(2), table(3)


def test_selecting_on_the_late_model_manufactures_a_kl_change_that_pre_selection_does_not():
    """Regression to the mean on a planted null: high-KL types chosen on the late checkpoint's own
    KL show a 'significant' Delta KL (+0.99, Wilcoxon p = 0.019) although nothing was learned;
    chosen on the pre model (independent weights), Delta KL is +0.10, p = 0.87."""
    from rock.geometry import type_kl

    pre, early, late = _null_world()
    spec = GroupSpec(high_kl_n=20, random_n=40)
    out = {}
    for name, sel in (("late", late), ("pre", pre)):
        g = define_groups(type_kl(sel), [], spec)
        _, t = persistence(early, late, {"high_kl": g["high_kl"], "random": g["random"]})
        out[name] = t.set_index("group")
        print(f"\nselected on {name}:\n{out[name].to_string()}")
    assert out["late"].loc["high_kl", "median_delta_kl"] == pytest.approx(0.985, abs=0.01)
    assert out["late"].loc["high_kl", "pvalue"] < 0.05
    assert out["pre"].loc["high_kl", "median_delta_kl"] == pytest.approx(0.101, abs=0.01)
    assert out["pre"].loc["high_kl", "pvalue"] > 0.5


def test_holdout_split_is_disjoint_complete_and_seeded():
    from rock.persistence import restrict, split_trajectories

    a, b = split_trajectories([5, 1, 3, 3, 9, 7, 1], seed=0)
    assert sorted([*a, *b]) == [1, 3, 5, 7, 9] and not set(a) & set(b) and len(a) == 3
    a2, _ = split_trajectories([5, 1, 3, 9, 7], seed=0)
    assert a.tolist() == a2.tolist()
    assert split_trajectories(range(60), seed=1)[0].tolist() != split_trajectories(range(60), seed=0)[0].tolist()
    t = pd.DataFrame({"trajectory": [1, 3, 5, 7, 9], "x": range(5)})
    assert set(restrict(t, b)["trajectory"]) == set(b)


def _ckpt(path, payload: bytes):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(payload)
    (path / "config.json").write_text("{}")
    return path


def test_late_with_the_selection_models_weights_is_refused(tmp_path):
    """The last kept stage-2 checkpoint is byte-identical to the post model (which selects R):
    as 'late' it is refused; the second-to-last kept checkpoint is accepted."""
    from rock.errors import ConfigError
    from rock.persistence import check_late_is_other_weights, same_weights

    pre = _ckpt(tmp_path / "pre", b"A" * 64)
    post = _ckpt(tmp_path / "post", b"B" * 64)
    last = _ckpt(tmp_path / "step_4", b"B" * 64)
    penult = _ckpt(tmp_path / "step_3", b"B" * 63 + b"C")
    assert same_weights(post, last) and same_weights(post, post) and not same_weights(post, penult)
    with pytest.raises(ConfigError, match="same weights as the selection model 'post'"):
        check_late_is_other_weights(("late", str(last)), {"pre": str(pre), "post": str(post)})
    check_late_is_other_weights(("late", str(penult)), {"pre": str(pre), "post": str(post)})


@pytest.mark.parametrize("late_spec, refused", [("stage2_last", True), ("stage2_penultimate", False)])
def test_geometry_resolves_the_configured_late_checkpoint_and_compares_weights(tmp_path, late_spec, refused):
    """The wiring: stats.checkpoints names -> resolved model directories -> weight comparison,
    as `rock geometry analyze` runs it; both shipped configs name a late that passes."""
    import yaml

    from rock import paths
    from rock.errors import ConfigError
    from rock.geometry import GeometryConfig, late_is_other_weights

    run = tmp_path
    _ckpt(paths.stage_model(run, 1), b"S1" * 32)
    _ckpt(paths.stage_model(run, 2), b"S2" * 32)
    ck = paths.train_checkpoints_dir(paths.stage_dir(run, 2))
    for step, payload in ((1, b"k1"), (2, b"k2"), (3, b"k3"), (4, b"S2")):
        _ckpt(ck / f"step_{step}", payload * 32)  # the last kept one IS the final model
    config = {"stats": {"checkpoints": {"pre": "stage1", "post": "stage2", "early": "stage2_first",
                                        "late": late_spec}}, "models": {}}
    gcfg = GeometryConfig(early="early", late="late")
    if refused:
        with pytest.raises(ConfigError, match="'late'.*'post'"):
            late_is_other_weights(config, run, gcfg)
    else:
        late_is_other_weights(config, run, gcfg)
    root = Path(__file__).resolve().parents[1]
    for cfg_file in ("config.yaml", "tests/config_toy/config.yaml"):
        cfg = yaml.safe_load((root / cfg_file).read_text())
        late = cfg["stats"]["checkpoints"][cfg["geometry"]["late"]]
        assert late == "stage2_penultimate", cfg_file
        assert cfg["geometry"]["persistence_selection"] == "pre"


def test_toy_dry_run_wires_the_selection_inputs_into_geometry_analyze():
    """`snakemake -n` on the toy profile: geometry_analyze reads the pre table (the selection
    data) and the pre, post and late models whose weights it compares."""
    import re
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_workflow import snakemake

    result = snakemake("-n", "-F", "--profile", "workflow/profiles/toy", "results/toy/geometry/summary.json")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    inputs = re.search(r"rule geometry_analyze:\n\s+input: (.*)\n", out).group(1).split(", ")
    for need in ("results/toy/stats/tokens_pre.parquet", "results/toy/stats/tokens_late.parquet",
                 "results/toy/distill/stage1/model", "results/toy/distill/stage2/model",
                 "results/toy/distill/stage2/checkpoints"):
        assert need in inputs, (need, inputs)


def test_holdout_selection_redetects_rocks_on_half_a_and_measures_on_half_b(tmp_path):
    """persistence_selection 'holdout' on a planted corpus: type 7 is high-loss in the same
    context (5 7 5) in every trajectory, pre and post; types 10..29 are noise. Detection re-run
    on half A finds R = {7}; early/late KL are read on the other half only."""
    from rock import paths
    from rock.geometry import GeometryConfig, persistence_groups

    rng = np.random.default_rng(0)
    rows = []
    for traj in range(20):
        toks = [5, 7, 5] + list(rng.integers(10, 30, size=17))
        rows += [(traj, pos, int(t)) for pos, t in enumerate(toks)]
    base = pd.DataFrame(rows, columns=["trajectory", "position", "token_id"])
    loss = np.where(base["token_id"] == 7, 3.0, 0.01 + 0.01 * rng.random(len(base)))
    tables = {"pre": loss, "post": loss * 0.9, "early": loss * 0.8, "late": loss * 0.7}
    for name, kl in tables.items():
        path = paths.token_stats(tmp_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        base.assign(reverse_kl=kl).to_parquet(path)
    config = {"detection": {"top_k": 1, "n_controls": 1, "k_screen": 1, "context": {"radius": 1}}}
    gcfg = GeometryConfig(persistence_selection="holdout", holdout_seed=3,
                          groups=GroupSpec(high_kl_n=3, random_n=3))
    early = pd.read_parquet(paths.token_stats(tmp_path, "early"))
    late = pd.read_parquet(paths.token_stats(tmp_path, "late"))
    groups, e, la, info = persistence_groups(config, tmp_path, gcfg, [99], "context", early, late)
    assert groups["rock"] == [7]                      # re-detected on half A, not the [99] passed in
    assert info["n_selection_trajectories"] == info["n_measured_trajectories"] == 10
    measured = set(e["trajectory"]) | set(la["trajectory"])
    assert len(measured) == 10 and set(e["trajectory"]) == set(la["trajectory"])
    from rock.persistence import split_trajectories
    a, b = split_trajectories(base["trajectory"], 3)
    assert measured == set(b.tolist()) and not measured & set(a.tolist())
    groups_pre, e_pre, _, info_pre = persistence_groups(config, tmp_path, GeometryConfig(
        groups=GroupSpec(high_kl_n=3, random_n=3)), [99], "context", early, late)
    assert groups_pre["rock"] == [99] and len(e_pre) == len(early) and info_pre["selection"] == "pre"
    # pre: high-KL ranked on the pre table (not on early/late/post)
    from rock.geometry import type_kl
    kl_pre = type_kl(pd.read_parquet(paths.token_stats(tmp_path, "pre")))
    top = kl_pre[kl_pre["token_id"] != 99].sort_values(["mean_kl", "token_id"], ascending=[False, True])
    assert groups_pre["high_kl"] == top["token_id"].head(3).tolist()


def test_rock_geometry_analyze_end_to_end_selects_on_pre_and_refuses_the_final_model_as_late(tmp_path):
    """`rock geometry analyze` on files as the workflow leaves them: summary.json names the
    selection and the checkpoints, the persistence groups come from the pre table, and a config
    whose late is the last kept checkpoint (= the post model's weights) stops with the reason."""
    import argparse
    import json

    import yaml

    from rock import paths
    from rock.errors import ConfigError
    from rock.geometry import run

    rng = np.random.default_rng(1)
    base = pd.DataFrame({"trajectory": np.repeat(np.arange(10), 30), "position": np.tile(np.arange(30), 10),
                         "token_id": rng.integers(0, 40, size=300)})
    for name, scale in (("pre", 1.0), ("post", 0.5), ("early", 0.9), ("late", 0.6)):
        path = paths.token_stats(tmp_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        base.assign(reverse_kl=scale * (base["token_id"] + 1) / 40 * rng.lognormal(0, .3, 300)).to_parquet(path)
    det = paths.detection_file(tmp_path, "context", "rocks.json")
    det.parent.mkdir(parents=True)
    det.write_text(json.dumps({"rocks": [39, 38]}))
    per = pd.DataFrame({"token_id": [39, 38, 1, 2], "group": ["rock", "rock", "high_kl", "random"],
                        "n": 5, "grad_norm": [.1, .2, .3, .4], "cos_balanced": .1, "contrib": 1.0})
    paths.geometry_file(tmp_path, "per_type.csv").parent.mkdir(parents=True)
    per.to_csv(paths.geometry_file(tmp_path, "per_type.csv"), index=False)
    _ckpt(paths.stage_model(tmp_path, 1), b"S1")
    _ckpt(paths.stage_model(tmp_path, 2), b"S2")
    for step, payload in ((2, b"k2"), (4, b"k4"), (6, b"S2")):
        _ckpt(paths.train_checkpoints_dir(paths.stage_dir(tmp_path, 2)) / f"step_{step}", payload)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "tests/config_toy/config.yaml").read_text())
    cfg["run_dir"] = str(tmp_path)                  # a whole config: every stage reads it validated
    cfg["detection"]["downstream_mode"] = "context"
    cfg["stats"]["checkpoints"] = {"pre": "stage1", "post": "stage2", "early": "stage2_first",
                                   "late": "stage2_penultimate"}
    cfg["geometry"].update(early="early", late="late")
    cfg["geometry"]["groups"].update(high_kl_n=5, random_n=5)
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    args = argparse.Namespace(action="analyze", config=str(cfg_file), run_dir=None, threads=None)
    assert run(args) == 0
    summary = json.loads(paths.geometry_file(tmp_path, "summary.json").read_text())
    assert summary["persistence_selection"]["selection"] == "pre" and summary["late"] == "late"
    assert summary["persistence_groups"] == {"rock": 2, "highkl": 5, "random": 5}
    persist = pd.read_csv(paths.geometry_file(tmp_path, "persistence.csv"))
    pre = pd.read_parquet(paths.token_stats(tmp_path, "pre"))
    from rock.geometry import type_kl
    kl = type_kl(pre)
    kl = kl[~kl["token_id"].isin([38, 39])].sort_values(["mean_kl", "token_id"], ascending=[False, True])
    assert sorted(persist.loc[persist["group"] == "high_kl", "token_id"]) == sorted(kl["token_id"].head(5))
    cfg["stats"]["checkpoints"]["late"] = "stage2_last"
    cfg_file.write_text(yaml.safe_dump(cfg))
    args = argparse.Namespace(action="analyze", config=str(cfg_file), run_dir=None, threads=None)
    with pytest.raises(ConfigError, match="same weights as the selection model 'post'"):
        run(args)
