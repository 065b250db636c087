"""Token statistics [Sec. 2.1, 2.3] on a tiny random Qwen3 teacher/student pair."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_fixtures import tiny_pair  # noqa: E402,F401  (pytest fixture)

from rock import paths  # noqa: E402
from rock.errors import ConfigError, DataError  # noqa: E402
from rock.stats import (StatsConfig, build_trajectory_prompts, decode, detection_problems,  # noqa: E402
                        hidden_states, projection, resolve_checkpoint, score)

PROBLEMS = [{"problem": f"Compute ({a}+{b})*2.", "unique_id": f"u{a}{b}"} for a in range(1, 4) for b in range(1, 4)]


@pytest.fixture(scope="module")
def loaded(tiny_pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_pair["tokenizer"])
    student = AutoModelForCausalLM.from_pretrained(tiny_pair["student"]).eval()
    teacher = AutoModelForCausalLM.from_pretrained(tiny_pair["teacher"]).eval()
    return tok, student, teacher


def _trajectories(loaded, systems=(), n=5, max_new=12):
    from rock.distill.sampling import HfGenerator

    tok, student, _ = loaded
    cfg = StatsConfig(n_problems=n, max_new_tokens=max_new, shuffle_seed=42)
    probs = detection_problems(PROBLEMS, cfg, file="mem")
    rows = build_trajectory_prompts(probs, tok, cfg, enable_thinking=False, system_prompts=list(systems), seed=0)
    gen = HfGenerator(student, tok, batch_size=2, vocab_limit=len(tok))
    return decode(rows, gen, cfg, tok)


def test_detection_set_is_a_seeded_shuffle():
    cfg = StatsConfig(n_problems=4, shuffle_seed=42)
    a = detection_problems(PROBLEMS, cfg, file="x")
    assert [p["problem_id"] for p in a] == [p["problem_id"] for p in detection_problems(PROBLEMS, cfg, file="x")]
    order = np.random.default_rng(42).permutation(len(PROBLEMS))   # datasets' shuffle(seed=42)
    assert [p["problem_id"] for p in a] == [PROBLEMS[i]["unique_id"] for i in order[:4]]
    unshuffled = detection_problems(PROBLEMS, StatsConfig(n_problems=2, shuffle_seed=None), file="x")
    assert [p["problem_id"] for p in unshuffled] == ["u11", "u12"]
    with pytest.raises(DataError, match="x:2: field 'problem'"):
        detection_problems([PROBLEMS[0], {"problem": " "}], cfg, file="x")


def test_greedy_decode_is_deterministic(loaded):
    a, b = _trajectories(loaded), _trajectories(loaded)
    assert [r["response_ids"] for r in a] == [r["response_ids"] for r in b]
    assert all(r["finish_reason"] in ("stop", "length") for r in a)
    assert all(len(r["response_ids"]) <= 12 for r in a)


def _reference_stats(student, teacher, row, vocab):
    """Full-sequence forward passes, float64 softmax: the per-position quantities of Eq. 1-2."""
    resp = row["response_ids"]
    s_ids = torch.tensor([row["student_prompt_ids"] + resp])
    t_ids = torch.tensor([row["teacher_prompt_ids"] + resp])
    ps, pt = len(row["student_prompt_ids"]), len(row["teacher_prompt_ids"])
    with torch.no_grad():
        sl = student(s_ids).logits[0, ps - 1:ps - 1 + len(resp), :vocab].double()
        tl = teacher(t_ids).logits[0, pt - 1:pt - 1 + len(resp), :vocab].double()
    ls, lt = torch.log_softmax(sl, -1), torch.log_softmax(tl, -1)
    y = torch.tensor(resp)
    kl = (ls.exp() * (ls - lt)).sum(-1)
    lr = ls.gather(-1, y[:, None])[:, 0] - lt.gather(-1, y[:, None])[:, 0]
    ent_s = -(ls.exp() * ls).sum(-1)
    return kl.numpy(), lr.numpy(), ent_s.numpy()


@pytest.mark.parametrize("chunk", [1, 3, None])
def test_score_matches_full_forward_reference(loaded, chunk):
    tok, student, teacher = loaded
    traj = _trajectories(loaded, systems=["style: so", "style: then"])
    assert any(r["teacher_prompt_ids"] != r["student_prompt_ids"] for r in traj)  # privileged context
    assert all(r["teacher_system"] in ("style: so", "style: then") for r in traj)
    vocab = len(tok)
    table = score(student, teacher, traj, checkpoint="post", vocab=vocab, chunk_size=chunk, device="cpu")
    hidden = hidden_states(student, traj, dim=8, seed=0, device="cpu")
    assert len(table) == sum(len(r["response_ids"]) for r in traj) == len(hidden)
    assert hidden.shape[1] == 8 and hidden.dtype == np.float16
    assert list(table.columns[:3]) == ["trajectory", "position", "token_id"]
    assert (table["checkpoint"] == "post").all()
    for row in traj:
        if not row["response_ids"]:
            continue
        sub = table[table["trajectory"] == row["trajectory"]]
        assert sub["position"].tolist() == list(range(len(row["response_ids"])))
        assert sub["token_id"].tolist() == row["response_ids"]
        kl, lr, ent = _reference_stats(student, teacher, row, vocab)
        np.testing.assert_allclose(sub["reverse_kl"], kl, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(sub["log_ratio"], lr, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(sub["student_entropy"], ent, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table["log_ratio"], table["student_logprob"] - table["teacher_logprob"], atol=1e-5)
    assert (table["reverse_kl"] >= -1e-6).all()


def test_hidden_states_are_the_students_final_states(loaded):
    tok, student, teacher = loaded
    traj = _trajectories(loaded, n=2)
    hidden = hidden_states(student, traj, dim=64, seed=0, device="cpu")   # 64 >= width 16: no projection
    row = traj[0]
    ids = torch.tensor([row["student_prompt_ids"] + row["response_ids"]])
    with torch.no_grad():
        h = student.model(ids).last_hidden_state[0, len(row["student_prompt_ids"]):].numpy()
    np.testing.assert_allclose(hidden[:len(row["response_ids"])].astype(np.float32), h, rtol=2e-3, atol=2e-3)


def test_projection_is_seeded_and_preserves_cosines_roughly():
    p = projection(512, 128, seed=3)
    assert np.array_equal(p, projection(512, 128, seed=3)) and projection(16, 64, 0) is None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 512)).astype(np.float32)
    y = x + 0.5 * rng.normal(size=x.shape).astype(np.float32)
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    assert np.abs(cos(x, y) - cos(x @ p, y @ p)).max() < 0.15


def test_resolve_checkpoint(tmp_path):
    run = tmp_path
    ck = paths.train_checkpoints_dir(paths.stage_dir(run, 2))
    for step in (30, 4, 100):
        (ck / f"step_{step}").mkdir(parents=True)
    models = {"student": "hub/s", "teacher": "hub/t"}
    assert resolve_checkpoint("stage2_first", run, models).endswith("step_4")
    assert resolve_checkpoint("stage2_last", run, models).endswith("step_100")
    assert resolve_checkpoint("stage2_penultimate", run, models).endswith("step_30")
    assert resolve_checkpoint("stage1", run, models) == str(paths.stage_model(run, 1))
    assert resolve_checkpoint("student", run, models) == "hub/s"
    assert resolve_checkpoint("step_30", run, models) == str(paths.train_checkpoint(paths.stage_dir(run, 2), 30))
    assert resolve_checkpoint("Qwen/Qwen3-4B", run, models) == "Qwen/Qwen3-4B"
    with pytest.raises(DataError, match="no kept stage-2"):
        resolve_checkpoint("stage2_last", tmp_path / "empty", models)
    (paths.train_checkpoints_dir(paths.stage_dir(tmp_path / "one", 2)) / "step_7").mkdir(parents=True)
    with pytest.raises(DataError, match="1 kept, needs 2"):
        resolve_checkpoint("stage2_penultimate", tmp_path / "one", models)


def test_config_checks():
    with pytest.raises(ConfigError, match="decode_checkpoint"):
        StatsConfig(decode_checkpoint="nope")
    with pytest.raises(ConfigError, match="unknown key"):
        StatsConfig.from_dict({"n_problem": 3})
    with pytest.raises(ConfigError, match="dataset"):
        StatsConfig(dataset="gsm8k")


def test_vllm_decode_builds_greedy_requests(monkeypatch, loaded):
    """GPU path tested down to the arguments it gives vLLM 0.33.0 (LLM, SamplingParams, generate)."""
    import types

    import rock.distill.vllm_generator as vllm_generator
    from rock.stats import make_generator

    calls = {}

    class LLM:
        def __init__(self, **kw):
            calls["engine"] = kw

        def generate(self, requests, params, use_tqdm=False):
            calls["requests"], calls["params"] = requests, params
            out = types.SimpleNamespace(token_ids=[5, 6, 2], finish_reason="stop", stop_reason=None)
            return [types.SimpleNamespace(outputs=[out]) for _ in requests]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)
    monkeypatch.setattr(vllm_generator, "_import_vllm", lambda: fake)
    tok = loaded[0]
    cfg = StatsConfig(decode_backend="vllm", tensor_parallel_size=2, max_new_tokens=4096, n_problems=3)
    gen = make_generator("Qwen/Qwen3-4B-Instruct-2507", tok, cfg, {"dtype": "bfloat16"})
    rows = build_trajectory_prompts(detection_problems(PROBLEMS, cfg, file="x"), tok, cfg,
                                    enable_thinking=False, system_prompts=[], seed=0)
    out = decode(rows, gen, cfg, tok)
    assert calls["engine"]["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert calls["engine"]["tensor_parallel_size"] == 2 and calls["engine"]["dtype"] == "bfloat16"
    assert all(p.kw["temperature"] == 0.0 and p.kw["max_tokens"] == 4096 and p.kw["n"] == 1
               for p in calls["params"])
    assert [r["prompt_token_ids"] for r in calls["requests"]] == [r["student_prompt_ids"] for r in rows]
    assert out[0]["response_ids"] == [5, 6, 2] and out[0]["finish_reason"] == "stop"
