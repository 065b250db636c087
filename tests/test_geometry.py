"""Gradient geometry [Sec. 2.6]: the logit gradient against autograd, streaming means against a
direct computation, Eq. 16 and the group statistics on hand examples."""

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
