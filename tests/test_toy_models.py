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


def test_length_buckets_use_every_document_once_with_little_padding():
    import random

    rng = random.Random(0)
    data = [models.Encoded([1] * rng.randint(10, 200), 1) for _ in range(64 * 8)]
    batches = models.length_bucketed(data, 64, 4, random.Random(0))
    assert len(batches) == 8 and all(len(b) == 64 for b in batches)
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in data)
    def padded(bs):
        return sum(64 * max(len(e.ids) for e in b) for b in bs)

    in_order = [data[i:i + 64] for i in range(0, len(data), 64)]
    real = sum(len(e.ids) for e in data)
    assert padded(in_order) / real > 1.7          # lengths 10-200 at random: ~1.85x
    assert padded(batches) / real < 1.3           # quarter-range buckets: ~1.2x


def test_collate_right_pads_and_masks_prompts():
    ids, labels = models.collate([models.Encoded([5, 6, 7, 8], 2), models.Encoded([9, 10], 1)], 0)
    assert ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert labels.tolist() == [[-100, -100, 7, 8], [-100, 10, -100, -100]]


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
    model, summary = models.pretrain(cfg, models.qwen3_config(cfg, Tok(), 32), data, 0, 0, "tiny")
    assert summary["loss_first10"] > 1.5 and summary["loss_last10"] < 0.2
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
