"""Freeze masks (Eq. 18-19): hand-built sequences with hand-checked weights."""

import itertools

import pytest
import torch

from rock.freeze.masks import (count_runs, dilate, rock_freeze_weights, rock_window_masks,
                               to_logit_positions)

# positions:      0    1    2  | 3  4  5  6  7  8  9  10 11 12 | 13 14
# role:           prompt       | response                       | pad
IDS = torch.tensor([[100, 101, 7, 5, 7, 9, 7, 5, 3, 5, 8, 8, 8, 0, 0]])
RESP = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
R = [7]


def test_radius1_union_of_two_windows_hand_checked():
    w, stats = rock_freeze_weights(IDS, RESP, R, radius=1, lam=0.0)
    # rocks at 4 and 6 -> windows [3,5] and [5,7] -> union 3..7 (the prompt's 7 at 2 is no anchor)
    expected = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert w[0].tolist() == expected
    assert stats.response_tokens == 10
    assert stats.frozen_tokens == 5
    assert stats.rock_tokens == 2
    assert stats.window_only_tokens == 3
    assert stats.frozen_windows == 1
    assert stats.weight_sum == 5.0
    assert stats.frozen_fraction == 0.5


def test_first_and_last_position_of_a_window_are_frozen_and_nothing_beyond():
    ids = torch.tensor([[1, 2, 3, 4, 5, 7, 5, 4, 3, 2, 1, 1]])
    resp = torch.ones_like(ids, dtype=torch.bool)
    w, stats = rock_freeze_weights(ids, resp, R, radius=2, lam=0.0)
    # rock at 5, radius 2 -> window 3..7: first position 3 and last position 7 are frozen,
    # positions 2 and 8 (just outside) are not
    assert w[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert stats.frozen_windows == 1 and stats.frozen_tokens == 5


def test_window_clipped_at_response_edges():
    # rock as the first and as the last response token: windows never reach prompt or padding
    ids = torch.tensor([[7, 7, 7, 5, 5, 5, 5, 7, 0, 0]])
    resp = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    w, stats = rock_freeze_weights(ids, resp, R, radius=1, lam=0.0)
    assert w[0].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    #                       prompt  2,3 frozen   6,7 frozen  pad
    assert stats.frozen_windows == 2
    assert stats.frozen_tokens == 4 and stats.rock_tokens == 2


def test_never_freezes_the_position_after_a_rock_token():
    """The authors' token_freeze_kd masked on the input token at each predicting position,
    freezing the token *after* a rock token. Token-level (radius 0) must freeze x_t only."""
    ids = torch.tensor([[11, 12, 7, 13, 14, 7, 15]])
    resp = torch.tensor([[0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    w, _ = rock_freeze_weights(ids, resp, R, radius=0, lam=0.0)
    assert w[0].tolist() == [0, 1, 0, 1, 1, 0, 1]
    # logit-aligned: logits[p] predicts ids[p+1]; logits 1 and 4 predict the rocks at 2 and 5
    wl = to_logit_positions(w)
    assert wl[0].tolist() == [1, 0, 1, 1, 0, 1]
    rock_next = [p for p in range(ids.shape[1] - 1) if ids[0, p] == 7]  # logits *at* a rock token
    assert all(wl[0, p] == 1 for p in rock_next)  # they predict the following token: not frozen


def test_soft_lambda_and_baseline():
    w, stats = rock_freeze_weights(IDS, RESP, R, radius=1, lam=0.25)
    assert w[0].tolist() == [0, 0, 0, 0.25, 0.25, 0.25, 0.25, 0.25, 1, 1, 1, 1, 1, 0, 0]
    assert stats.weight_sum == pytest.approx(5 * 0.25 + 5)
    assert stats.frozen_tokens == 5  # "frozen" = weight lambda, whatever lambda is
    w1, _ = rock_freeze_weights(IDS, RESP, R, radius=1, lam=1.0)
    assert torch.equal(w1, RESP.float())
    with pytest.raises(ValueError):
        rock_freeze_weights(IDS, RESP, R, radius=1, lam=1.5)


def test_high_loss_anchor_only_opens_windows_at_high_loss_occurrences():
    loss = torch.zeros(IDS.shape)
    loss[0, 6] = 2.0  # only the rock at 6 is high-loss; the rock at 4 stays frozen itself (Eq. 19)
    w, stats = rock_freeze_weights(IDS, RESP, R, radius=1, lam=0.0, anchor="high_loss",
                                   token_loss=loss, loss_threshold=1.0)
    assert w[0].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert stats.frozen_windows == 1 and stats.frozen_tokens == 4
    with pytest.raises(ValueError):
        rock_window_masks(IDS, RESP, R, 1, anchor="high_loss")


def _brute_force(ids, resp, rocks, radius, lam):
    B, L = ids.shape
    out = torch.zeros(B, L)
    for b, t in itertools.product(range(B), range(L)):
        if not resp[b, t]:
            continue
        near = any(resp[b, s] and int(ids[b, s]) in rocks and abs(s - t) <= radius for s in range(L))
        out[b, t] = lam if (int(ids[b, t]) in rocks or near) else 1.0
    return out


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_matches_brute_force_definition(radius):
    g = torch.Generator().manual_seed(radius)
    ids = torch.randint(0, 12, (5, 40), generator=g)
    starts = torch.randint(0, 10, (5,), generator=g)
    ends = torch.randint(25, 41, (5,), generator=g)
    pos = torch.arange(40)
    resp = (pos[None] >= starts[:, None]) & (pos[None] < ends[:, None])
    rocks = {3, 7}
    w, stats = rock_freeze_weights(ids, resp, sorted(rocks), radius, lam=0.0)
    assert torch.equal(w, _brute_force(ids, resp, rocks, radius, 0.0))
    assert stats.frozen_tokens == int(((w == 0) & resp).sum())


def test_dilate_and_runs():
    a = torch.tensor([[0, 0, 1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert dilate(a, 1)[0].int().tolist() == [0, 1, 1, 1, 0, 0, 1, 1]
    assert count_runs(dilate(a, 1)) == 2
    assert count_runs(dilate(a, 2)) == 1
    assert dilate(a, 0).equal(a)
