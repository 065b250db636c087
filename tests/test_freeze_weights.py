"""The per-regime weight hook: baseline, rock, soft and random regimes on one rollout batch."""

import numpy as np
import pytest
import torch

from rock.freeze.config import ControlConfig, Regime
from rock.freeze.weights import FreezeWeights

IDS = torch.tensor([[100, 101, 5, 7, 9, 7, 5, 3, 5, 8, 8, 8, 0, 0],
                    [100, 102, 3, 3, 3, 3, 7, 3, 3, 3, 3, 3, 3, 3]])
RESP = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
                     [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
FREQ = np.bincount(IDS[RESP].numpy(), minlength=200)


def hook(selection, lam, **kw):
    return FreezeWeights(Regime("r", selection, lam), rock_ids=[7], radius=1, token_freq=FREQ, **kw)


def test_baseline_weights_are_the_response_mask_and_rock_share_is_counted():
    w, stats = hook("none", 1.0)(IDS, RESP, step=0)
    assert torch.equal(w, RESP.float())
    assert stats["freeze_frozen_tokens"] == 0 and stats["freeze_weight_sum"] == 22
    assert stats["freeze_rock_occurrences"] == 3  # two 7s in row 0, one in row 1
    assert stats["freeze_rock_window_tokens"] == 5 + 3
    assert stats["freeze_rock_windows"] == 2


def test_rock_and_soft_regimes():
    w, stats = hook("rock", 0.0)(IDS, RESP, step=0)
    assert w[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert w[1].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert stats["freeze_frozen_tokens"] == 8 and stats["freeze_rock_tokens"] == 3
    assert stats["freeze_frozen_windows"] == 2
    w, stats = hook("rock", 0.5)(IDS, RESP, step=0)
    assert w[1, 5:8].tolist() == [0.5, 0.5, 0.5]
    assert stats["freeze_weight_sum"] == pytest.approx(22 - 8 * 0.5)


def test_random_regime_freezes_matched_windows_and_accumulates():
    g = np.random.default_rng(0)
    ids = torch.as_tensor(g.integers(0, 40, size=(6, 120)))
    resp = torch.zeros_like(ids, dtype=torch.bool)
    resp[:, 10:] = True
    freq = np.bincount(ids[resp].numpy(), minlength=40)
    h = FreezeWeights(Regime("rnd", "random", 0.0), rock_ids=[3, 11], radius=1, token_freq=freq,
                      control=ControlConfig(), seed=5)
    w, stats = h(ids, resp, step=3)
    matched, unmatched = stats["freeze_matched_windows"], stats["freeze_unmatched_windows"]
    assert matched + unmatched == stats["freeze_target_windows"]
    assert stats["freeze_target_windows"] == stats["freeze_rock_windows"]
    assert stats["freeze_frozen_windows"] == stats["freeze_matched_windows"]
    frozen = (w == 0) & resp
    assert int(frozen.sum()) == stats["freeze_frozen_tokens"]
    # not a Rock-Freeze: window centres are never rock tokens
    from rock.freeze.control import spans
    for b, s, n in spans(frozen.numpy()):
        assert int(ids[b, s + (n - 1) // 2]) not in (3, 11)
    assert sum(h.match.control["length"].values()) == stats["freeze_matched_windows"]
    w2, _ = FreezeWeights(Regime("rnd", "random", 0.0), rock_ids=[3, 11], radius=1, token_freq=freq,
                          seed=5)(ids, resp, step=3)
    assert torch.equal(w, w2)  # deterministic for (seed, step)
    w3, _ = h(ids, resp, step=4)
    assert not torch.equal(w, w3)
    # the hook counts steps itself: after the call for step 4 the next call is step 5
    h5 = FreezeWeights(Regime("rnd", "random", 0.0), rock_ids=[3, 11], radius=1, token_freq=freq,
                       seed=5, step=5)
    assert torch.equal(h(ids, resp)[0], h5(ids, resp)[0])


def test_hook_leaves_global_rng_alone():
    torch.manual_seed(0)
    np.random.seed(0)
    a = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(0)
    np.random.seed(0)
    hook("random", 0.0)(IDS, RESP, step=1)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_high_loss_anchor_requires_loss():
    h = hook("rock", 0.0, anchor="high_loss", loss_threshold=1.0)
    assert h.needs_loss
    with pytest.raises(ValueError, match="token_loss"):
        h(IDS, RESP, step=0)
    loss = torch.zeros(IDS.shape)
    loss[1, 6] = 3.0
    w, stats = h(IDS, RESP, loss)  # the trainer's positional call
    # row 0's rocks are low-loss: only the rock tokens themselves; row 1's rock opens its window
    assert w[0].tolist() == [0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert w[1].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]


def test_through_the_distillation_loss_frozen_rows_get_no_gradient():
    """The hook's weights through rock.distill.losses (row i of the logits predicts ids[i+1]):
    rows predicting a frozen token get exactly zero gradient, the row that predicts the token
    *after* a rock token gets a gradient."""
    from rock.distill.losses import LossSpec, distill_loss
    from rock.freeze.masks import to_logit_positions

    ids = torch.tensor([[11, 12, 13, 7, 14, 15, 16, 17]])
    resp = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    h = FreezeWeights(Regime("r", "rock", 0.0), rock_ids=[7], radius=0, token_freq=np.ones(20))
    w, _ = h(ids, resp)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1, 7, 20, generator=g, requires_grad=True)
    t = torch.randn(1, 7, 20, generator=g)
    loss, _ = distill_loss(s, t, ids[:, 1:], resp[:, 1:].float(), LossSpec("reverse_kl"),
                           weights=to_logit_positions(w))
    loss.backward()
    row_norm = s.grad[0].abs().sum(-1)
    # row 0 predicts the prompt token 12 (no loss); row 1 predicts 13 (trained); row 2 predicts
    # the rock 7 (frozen); row 3 sits ON the rock and predicts 14 (trained), and so on
    assert row_norm[0] == 0 and row_norm[2] == 0
    assert row_norm[1] > 0 and bool((row_norm[3:] > 0).all())


def test_hand_made_rollout_regimes_frozen_positions_disjoint_and_matched():
    """Issue 13 on one hand-made rollout (radius 1, R = {7}, anchors need l_t >= 1):

    position  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17
    token     5  7  6  5  6  7  5  6  5  6  8  6  5  6  5  8  6  5
    loss      .  2  .  .  .  0  .  .  .  .  .  .  .  .  .  .  .  .

    Rock-Freeze: the high-loss 7 at 1 opens W = {0, 1, 2}; the low-loss 7 at 5 opens no window
    but is frozen itself (Eq. 19: x_t in R) -> {0, 1, 2, 5}: spans of length 3 and 1, both centred
    on a 7 (count 100, bin 6). The only non-rock tokens of that bin are the two 8s (count 100;
    5 and 6 have count 1000, bin 9), so W_S is a length-3 span centred on one 8 and a length-1
    span on the other: {9, 10, 11, 15} or {10, 14, 15, 16}, never touching {0, 1, 2, 5}."""
    ids = torch.tensor([[5, 7, 6, 5, 6, 7, 5, 6, 5, 6, 8, 6, 5, 6, 5, 8, 6, 5]])
    resp = torch.ones_like(ids, dtype=torch.bool)
    loss = torch.zeros(ids.shape)
    loss[0, 1] = 2.0
    freq = np.zeros(10, dtype=np.int64)
    freq[[5, 6]], freq[[7, 8]] = 1000, 100
    frozen, logged = {}, {}
    for sel, lam in (("none", 1.0), ("rock", 0.0), ("random", 0.0)):
        h = FreezeWeights(Regime("r", sel, lam), rock_ids=[7], radius=1, token_freq=freq,
                          anchor="high_loss", loss_threshold=1.0)
        w, logged[sel] = h(ids, resp, loss, step=3)
        frozen[sel] = set(torch.nonzero(w[0] == 0).flatten().tolist())
    assert frozen["none"] == set()
    assert frozen["rock"] == {0, 1, 2, 5}
    assert frozen["random"] in ({9, 10, 11, 15}, {10, 14, 15, 16})
    assert frozen["random"] & frozen["rock"] == set()
    assert logged["random"]["freeze_control_rock_window_overlap"] == 0
    assert logged["random"]["freeze_unmatched_windows"] == 0
    assert logged["rock"]["freeze_frozen_fraction"] == pytest.approx(4 / 18)
    assert logged["none"]["freeze_rock_window_tokens"] == 4  # what Rock-Freeze would freeze
    # matched histograms: window lengths, centre-token frequency bins, per-position log2 counts
    # (rock positions 0,2 = count 1000; control neighbours = 1000 too; centres 100 on both sides)
    acc = h.match
    assert acc.target["length"] == acc.control["length"] == {3: 1, 1: 1}
    assert acc.target["centre_bin"] == acc.control["centre_bin"] == {6: 2}
    assert acc.target["token_log2q"] == acc.control["token_log2q"]


def test_control_that_cannot_be_placed_outside_w_r_is_logged_not_overlapped(caplog):
    """A rollout whose response is all W_R leaves no room: the window is unmatched (with its
    tokens), W_S is empty, and a warning gives the counts."""
    ids = torch.tensor([[5, 7, 5]])
    resp = torch.ones_like(ids, dtype=torch.bool)
    freq = np.array([0, 0, 0, 0, 0, 10, 0, 10])
    h = FreezeWeights(Regime("r", "random", 0.0), rock_ids=[7], radius=1, token_freq=freq)
    with caplog.at_level("WARNING"):
        w, stats = h(ids, resp, step=0)
    assert w[0].tolist() == [1, 1, 1]
    assert stats["freeze_unmatched_windows"] == 1 and stats["freeze_unmatched_tokens"] == 3
    assert stats["freeze_control_rock_window_overlap"] == 0
    assert "1 of 1 W_R windows (3 of 3 tokens)" in caplog.text


def test_high_loss_baseline_asks_for_no_loss_and_logs_rock_tokens_only():
    """The scoring pass behind token_loss costs a teacher + student forward per step: only the
    regimes that freeze ask for it (needs_loss), so the baseline's wall-clock is plain OPD's."""
    kw = {"anchor": "high_loss", "loss_threshold": 1.0}
    base, rock = hook("none", 1.0, **kw), hook("rock", 0.0, **kw)
    assert not base.needs_loss and rock.needs_loss
    w, stats = base(IDS, RESP, step=0)
    assert torch.equal(w, RESP.float())
    assert stats["freeze_rock_occurrences"] == 3 and "freeze_rock_window_tokens" not in stats
    with pytest.raises(ValueError, match="needs the per-token loss"):
        rock(IDS, RESP, step=0)
    loss = torch.zeros(IDS.shape)
    loss[1, 6] = 5.0  # only the 7 of row 1 is high-loss: window 5..7; row 0's 7s frozen alone
    w, stats = rock(IDS, RESP, loss, step=0)
    assert stats["freeze_frozen_tokens"] == 2 + 3 and stats["freeze_rock_window_tokens"] == 5
