"""Stage 2 drops unusable prompts before forming rollout rounds [5.1, C]: a skipped over-long
prompt costs no optimizer step and no scheduler step (tiny random Qwen3 pair, CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_fixtures import tiny_pair  # noqa: E402,F401  (pytest fixture)

from rock.distill.config import ModelsConfig, Stage2Config  # noqa: E402
from rock.distill.stage2 import run_stage2, usable_prompts  # noqa: E402
from rock.errors import ConfigError  # noqa: E402

LONG = "Compute (1+2)*3. " * 20          # ~100 tokens: over max_prompt_len = 64
ROWS = [{"id": "a", "prompt": "Compute (1+2)*3."}, {"id": "long", "prompt": LONG},
        {"id": "b", "prompt": "Compute (2+2)*2."}, {"id": "c", "prompt": "Compute (3+1)*3."}]


def _cfg(**kw):
    # one prompt x 2 rollouts = one optimizer step per round; linear decay, no warmup
    base = dict(rollout_backend="hf", max_new_tokens=4, max_prompt_len=64, global_batch=2, n_rollouts=2,
                lr=1e-3, warmup_ratio=0.0, lr_scheduler="linear", save_state_every=100, n_checkpoints=1,
                gradient_checkpointing=False, rollout_batch_size_hf=2)
    base.update(kw)
    return Stage2Config(**base)


def _run(tiny_pair, tmp_path, **kw):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    models = ModelsConfig(teacher=str(tiny_pair["teacher"]), student=str(tiny_pair["student"]), dtype="float32")
    return run_stage2(_cfg(**kw), models, prompts_path=prompts, student=str(tiny_pair["student"]),
                      teacher=str(tiny_pair["teacher"]), out_dir=tmp_path / "out")


def test_usable_prompts_drops_empty_and_overlong(tiny_pair):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_pair["student"])
    rows = ROWS + [{"id": "empty", "prompt": "  "}]
    kept, counts = usable_prompts(rows, tok, _cfg(), enable_thinking=False)
    assert [r["id"] for r in kept] == ["a", "b", "c"]
    assert counts == {"n_prompts_read": 5, "n_empty_prompts_dropped": 1, "n_overlong_prompts_dropped": 1,
                      "n_prompts_used": 3}
    kept, counts = usable_prompts(rows, tok, _cfg(overlong_prompts="truncate"), enable_thinking=False)
    assert [r["id"] for r in kept] == ["a", "long", "b", "c"] and counts["n_overlong_prompts_dropped"] == 0


def test_skipped_overlong_prompt_costs_no_optimizer_or_scheduler_step(tiny_pair, tmp_path):
    """4 prompts, 1 over-long: 3 steps of 2 sequences each, the linear schedule over 3 steps
    (1e-3, 2/3e-3, 1/3e-3). Before the fix: 4 steps, one with 0 sequences, lr 1e-3 .. 0.25e-3."""
    torch.set_num_threads(1)
    summary = _run(tiny_pair, tmp_path)
    assert summary["total_steps"] == 3 and summary["n_overlong_prompts_dropped"] == 1
    assert summary["n_prompts_used"] == 3 and summary["n_prompts_read"] == 4
    log = pd.read_csv(tmp_path / "out" / "log.csv")
    assert log["step"].tolist() == [1, 2, 3]
    assert log["n_sequences"].tolist() == [2, 2, 2]
    assert log["lr"].tolist() == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])


def test_a_planned_step_count_the_dropped_prompts_cannot_reach_is_an_error(tiny_pair, tmp_path):
    with pytest.raises(ConfigError, match="at most 3"):
        _run(tiny_pair, tmp_path, max_steps=4)
