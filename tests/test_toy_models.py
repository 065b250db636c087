"""Toy models: packing, learning-rate schedule, vocabulary padding, a pretraining loop that learns."""

from __future__ import annotations

import pytest
import torch

from rock.toy import models
from rock.toy.config import ModelConfig


def _tiny_model(vocab: int = 50):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    return Qwen3ForCausalLM(cfg).eval()


def test_packed_logits_equal_per_document_logits():
    model = _tiny_model()
    g = torch.Generator().manual_seed(1)
    docs = [models.Encoded(torch.randint(0, 49, (n,), generator=g).tolist(), 2)
            for n in (7, 5, 9, 3, 12)]
    ids, labels, pos, mask = models.pack(docs, 16, pad_id=49)
    assert ids.shape == (3, 16)                         # 12+3 | 9+7 | 5 (first fit, longest first)
    packed = model(input_ids=ids, position_ids=pos, attention_mask=mask).logits
    assert not torch.isnan(packed).any()
    for d in docs:
        n = len(d.ids)
        hits = [(r, a) for r in range(ids.shape[0]) for a in range(ids.shape[1] - n + 1)
                if ids[r, a:a + n].tolist() == d.ids and pos[r, a:a + n].tolist() == list(range(n))]
        assert len(hits) == 1
        r, a = hits[0]
        alone = model(input_ids=torch.tensor([d.ids])).logits[0]
        assert torch.allclose(packed[r, a:a + n], alone, atol=1e-5)
        # loss only on the response part (after n_prompt = 2 tokens)
        assert labels[r, a:a + n].tolist() == [-100, -100] + d.ids[2:]
    assert (labels[2, 5:] == -100).all()                 # padding carries no loss


def test_lr_schedule_warmup_then_cosine_to_floor():
    cfg = ModelConfig(steps=110, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert models.lr_at(0, cfg) == pytest.approx(1e-4)
    assert models.lr_at(9, cfg) == pytest.approx(1e-3)
    assert models.lr_at(10, cfg) == pytest.approx(1e-3)
    assert models.lr_at(60, cfg) == pytest.approx(0.55e-3)      # halfway: mean of lr and floor
    assert models.lr_at(110, cfg) == pytest.approx(1e-4)


def test_padded_vocab():
    assert models.padded_vocab(1024, 64) == 1024
    assert models.padded_vocab(1025, 64) == 1088
    assert models.padded_vocab(151669, 128) == 151680


def test_pretraining_learns_a_fixed_mapping():
    """30 steps on one repeated 'prompt -> response' pair drive its loss far below log(V)."""

    class Tok:
        pad_token_id = 0

        def convert_tokens_to_ids(self, token):
            return 1

    cfg = ModelConfig(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, steps=30,
                      batch_size=4, lr=1e-2, warmup_steps=2)
    data = [models.Encoded([5, 6, 7, 8, 9, 10, 1], 3)] * (30 * 4)
    model, summary = models.pretrain(cfg, models.qwen3_config(cfg, Tok(), 32), data, 0, 0,
                                     "tiny", row_len=16)
    assert summary["loss_first10"] > 1.5 and summary["loss_last10"] < 0.2
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
