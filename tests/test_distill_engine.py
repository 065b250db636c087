"""Distillation engine on a tiny random Qwen3 pair: padding/alignment, the KD step, sampling,
teacher samples, stage 1 and stage 2 (bad input counted, token weights, resume)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_fixtures import tiny_pair, trained_teacher  # noqa: E402,F401  (pytest fixtures)

from rock.distill.config import ModelsConfig, Stage1Config, Stage2Config  # noqa: E402
from rock.distill.losses import LossSpec, naive_loss_reference  # noqa: E402
from rock.distill.sampling import (Completion, HfGenerator, chat_prompt_ids, cut_at_stop,  # noqa: E402
                                   read_prompts, sample_teacher, teacher_system_choice)
from rock.distill.stage1 import build_sequences, run_stage1  # noqa: E402
from rock.distill.stage2 import Stage2Batches, render_prompt_pair, run_stage2  # noqa: E402
from rock.distill.trainer import (Runtime, Trainer, TrainSequence,  # noqa: E402
                                  response_logits)
from rock.errors import DataError  # noqa: E402

CPU = Runtime(torch.device("cpu"))


@pytest.fixture(scope="module")
def loaded(tiny_pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_pair["student"])
    teacher = AutoModelForCausalLM.from_pretrained(tiny_pair["teacher"]).eval()
    return tok, teacher


def _student(tiny_pair):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_pair["student"])


def _models(tiny_pair, systems=()):
    return ModelsConfig(teacher=str(tiny_pair["teacher"]), student=str(tiny_pair["student"]),
                        teacher_system_prompts=list(systems), dtype="float32")


# --- padding and alignment ---------------------------------------------------------------------

def test_left_padded_logits_equal_unpadded(loaded):
    tok, teacher = loaded
    a = chat_prompt_ids(tok, "Compute (1+2)*3.") + [50, 60, 70]
    b = chat_prompt_ids(tok, "Compute (12+2)*3 and more text here.", system="style: so") + [50, 60, 70]
    batch = response_logits(teacher, [a, b], 4, tok.pad_token_id, 298, CPU)
    for i, row in enumerate([a, b]):
        ref = teacher(input_ids=torch.tensor([row])).logits[0, -4:-1, :298]
        torch.testing.assert_close(batch[i], ref, atol=1e-4, rtol=1e-4)


def test_greedy_generation_is_independent_of_batch_padding(loaded):
    tok, teacher = loaded
    gen = HfGenerator(teacher, tok, batch_size=4)
    short = chat_prompt_ids(tok, "Compute (1+2)*3.")
    long = chat_prompt_ids(tok, "Compute (1+2)*3. So 1+2 = 3. Then 3*3 = 9.", system="style: then")
    alone = gen.generate([short], n=1, temperature=0.0, max_new_tokens=8)[0][0]
    batched = gen.generate([long, short], n=1, temperature=0.0, max_new_tokens=8)[1][0]
    assert alone.token_ids == batched.token_ids and len(alone.token_ids) >= 1


def test_kv_decode_loop_matches_transformers_generate(loaded):
    """Greedy: identical tokens. Sampling with top-p: the same support (every sampled token is in
    the nucleus of the step that produced it, checked against a fresh forward)."""
    tok, teacher = loaded
    prompts = [chat_prompt_ids(tok, f"Compute ({i}+2)*3." + " x" * (i % 3)) for i in range(5)]
    kv = HfGenerator(teacher, tok, batch_size=5, loop="kv")
    gen = HfGenerator(teacher, tok, batch_size=5, loop="generate")
    assert kv.generate(prompts, n=2, temperature=0, max_new_tokens=12) == \
        gen.generate(prompts, n=2, temperature=0, max_new_tokens=12)
    comp = kv.generate(prompts[:1], n=1, temperature=1.0, top_p=0.5, max_new_tokens=6, seed=3)[0][0]
    ids = list(prompts[0])
    for t in comp.token_ids:
        with torch.no_grad():
            p = torch.softmax(teacher(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        order = torch.argsort(p, descending=True)
        nucleus = order[: int((torch.cumsum(p[order], 0) < 0.5).sum()) + 1].tolist()
        assert t in nucleus
        ids.append(t)


def test_generate_sampler_ignores_the_models_generation_config(tiny_pair):
    """Qwen3-Instruct ships generation_config.json with top_k=20, T=0.7, top_p=0.8: none of it may
    reach the sampler, which is T and top-p from our config only."""
    from transformers import AutoTokenizer

    model = _student(tiny_pair)
    model.generation_config.top_k, model.generation_config.temperature = 20, 0.7
    model.generation_config.top_p = 0.8
    gen = HfGenerator(model, AutoTokenizer.from_pretrained(tiny_pair["student"]), loop="generate")
    cfg, _ = model._prepare_generation_config(gen._config(1.0, 1.0, 5))
    procs = model._get_logits_processor(cfg, input_ids_seq_length=3,
                                        encoder_input_ids=torch.zeros(1, 3, dtype=torch.long),
                                        prefix_allowed_tokens_fn=None, logits_processor=None)
    assert (cfg.top_k, cfg.top_p, cfg.temperature) == (0, 1.0, 1.0)
    assert [type(p).__name__ for p in procs] == []


@pytest.mark.parametrize("n", [1, 2])
def test_kv_decode_with_early_stops_keeps_each_prompts_tokens(trained_teacher, n):
    """Sequences that stop at different steps (finished rows leave the batch) and distinct or
    repeated prompts (prefix sharing) must give exactly transformers' greedy tokens, row by row."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained_teacher)
    model = AutoModelForCausalLM.from_pretrained(trained_teacher)
    prompts = [chat_prompt_ids(tok, f"Compute ({i % 5 + 1}+{(3 * i) % 5 + 1})*{i % 2 + 2}.")
               for i in range(7)]
    kv = HfGenerator(model, tok, batch_size=7, loop="kv")
    gen = HfGenerator(model, tok, batch_size=7, loop="generate")
    a = kv.generate(prompts, n=n, temperature=0, max_new_tokens=30)
    b = gen.generate(prompts, n=n, temperature=0, max_new_tokens=30)
    assert a == b
    assert all(c.finish_reason == "stop" for row in a for c in row)
    assert len({len(c.token_ids) for row in a for c in row}) > 1   # rows stopped at different steps
    assert len({tuple(row[0].token_ids) for row in a}) > 2          # answers depend on the prompt


def test_pick_samples_the_tempered_nucleus_distribution(loaded):
    tok, teacher = loaded
    gen = HfGenerator(teacher, tok)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]]).expand(40000, 5).clone()
    torch.manual_seed(0)
    freq = torch.bincount(gen._pick(logits.clone(), 1.0, 1.0), minlength=5).float() / 40000
    assert (freq - torch.softmax(logits[0], -1)).abs().max() < 0.01
    freq = torch.bincount(gen._pick(logits.clone(), 2.0, 0.8), minlength=5).float() / 40000
    p = torch.softmax(logits[0] / 2.0, -1)          # 0.41, 0.25, 0.15, 0.09, 0.03: nucleus = 3 tokens
    nucleus = p[:3] / p[:3].sum()
    assert (freq[:3] - nucleus).abs().max() < 0.01 and freq[3:].sum() == 0


def test_sampling_is_seeded_and_shapes_are_right(loaded):
    tok, teacher = loaded
    gen = HfGenerator(teacher, tok, batch_size=3)
    p = [chat_prompt_ids(tok, "Compute (2+2)*2."), chat_prompt_ids(tok, "Compute (3+1)*2.")]
    a = gen.generate(p, n=3, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=7)
    b = gen.generate(p, n=3, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=7)
    c = gen.generate(p, n=3, temperature=1.0, top_p=0.95, max_new_tokens=6, seed=8)
    assert [len(x) for x in a] == [3, 3] and a == b and a != c
    assert all(len(comp.token_ids) <= 6 for x in a for comp in x)


def test_cut_at_stop_and_system_choice():
    assert cut_at_stop([5, 6, 2, 7, 2], [2]) == Completion([5, 6, 2], "stop")
    assert cut_at_stop([5, 6], [2]) == Completion([5, 6], "length")
    assert teacher_system_choice([], 0, "x") is None
    picks = [teacher_system_choice(["a", "b"], 3, f"p{i}") for i in range(40)]
    assert picks == [teacher_system_choice(["a", "b"], 3, f"p{i}") for i in range(40)]
    assert set(picks) == {"a", "b"}


# --- the KD step -------------------------------------------------------------------------------

def test_step_loss_is_ce_over_response_tokens_only(tiny_pair, loaded):
    """kd_ratio 0: the step's loss must equal mean CE over the response tokens from a plain forward."""
    tok, teacher = loaded
    student = _student(tiny_pair)
    prompt = chat_prompt_ids(tok, "Compute (1+2)*3.")
    seqs = [TrainSequence("a", prompt + [40, 41, 2], prompt + [40, 41, 2], 3),
            TrainSequence("b", prompt[:-2] + [44, 2], prompt[:-2] + [44, 2], 2)]
    with torch.no_grad():
        nll, n = 0.0, 0
        for s in seqs:
            logits = student(input_ids=torch.tensor([s.student_ids])).logits[0, :, :298]
            lp = torch.log_softmax(logits.double(), -1)
            L = len(s.student_ids)
            for pos in range(L - s.n_response, L):
                nll -= lp[pos - 1, s.student_ids[pos]].item()
                n += 1
    cfg = Stage1Config(kd_ratio=0.0, global_batch=2, micro_batch=1, lr=1e-3)
    tr = Trainer(student, teacher, cfg, CPU, total_steps=1, vocab=298, pad_id=tok.pad_token_id)
    res = tr.step(seqs)
    assert res.loss == pytest.approx(nll / n, abs=1e-5)
    assert res.n_response_tokens == 5


def test_step_matches_float64_reference_and_micro_batching(tiny_pair, loaded):
    tok, teacher = loaded
    prompt = chat_prompt_ids(tok, "Compute (4+1)*2.")
    seqs = [TrainSequence(str(i), prompt + r, chat_prompt_ids(tok, "Compute (4+1)*2.", system="s") + r, len(r))
            for i, r in enumerate([[30, 31, 32, 2], [33, 2], [34, 35, 2]])]
    grads = []
    for micro in (1, 3):
        student = _student(tiny_pair)
        cfg = Stage2Config(global_batch=3, n_rollouts=1, micro_batch=micro, lr=1e-3,
                           gradient_checkpointing=False)
        tr = Trainer(student, teacher, cfg, CPU, total_steps=1, vocab=298, pad_id=tok.pad_token_id)
        tr.optimizer.zero_grad = lambda set_to_none=True: None  # keep gradients to compare
        res = tr.step(seqs)
        grads.append(student.lm_head.weight.grad.clone())
        # reference: float64 reverse KL over all response tokens of the three sequences
        ref_student = _student(tiny_pair).double()
        total = 0.0
        for s in seqs:
            k = s.n_response + 1
            ls = ref_student(input_ids=torch.tensor([s.student_ids])).logits[0, -k:-1, :298]
            lt = teacher.double()(input_ids=torch.tensor([s.teacher_ids])).logits[0, -k:-1, :298]
            teacher.float()
            y = torch.tensor(s.response)
            total = total + naive_loss_reference(ls, lt, y, torch.ones(len(y)), LossSpec()) * len(y)
        assert res.loss == pytest.approx(float(total.detach()) / 9, abs=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def _reference_grads(student, teacher, seqs, vocab):
    """Naive reference step: each sequence alone (no padding), full float64 logits, the KD loss
    under autograd (rock.distill.losses.naive_loss_reference), normalised by all response tokens."""
    ref = student.double()
    total, n_tok = 0.0, sum(s.n_response for s in seqs)
    for s in seqs:
        k = s.n_response + 1
        ls = ref(input_ids=torch.tensor([s.student_ids])).logits[0, -k:-1, :vocab]
        with torch.no_grad():
            lt = teacher.double()(input_ids=torch.tensor([s.teacher_ids])).logits[0, -k:-1, :vocab]
        y = torch.tensor(s.response)
        total = total + naive_loss_reference(ls, lt, y, torch.ones(len(y)), LossSpec()) * len(y) / n_tok
    teacher.float()
    total.backward()
    return float(total.detach()), {n: p.grad.clone() for n, p in ref.named_parameters()}


@pytest.mark.parametrize("fused", [False, True])
def test_optimised_step_loss_and_every_gradient_match_the_naive_reference_step(tiny_pair, loaded, fused):
    """Trainer.accumulate (kept-logit rows, chunked loss, padded length-sorted micro-batches, sums
    left on the device; with ``fused`` the lm_heads folded into the loss, the GPU default) against
    the naive full-logit step, on every parameter of the student."""
    tok, teacher = loaded
    prompt = chat_prompt_ids(tok, "Compute (2+3)*4.")
    responses = [[30, 31, 32, 33, 2], [34, 2], [35, 36, 2], [37, 38, 39, 2]]
    seqs = [TrainSequence(str(i), prompt[i:] + r, chat_prompt_ids(tok, "Compute (2+3)*4.", system="s") + r,
                          len(r)) for i, r in enumerate(responses)]
    student = _student(tiny_pair)
    cfg = Stage2Config(global_batch=4, n_rollouts=1, micro_batch=2, lr=1e-3, gradient_checkpointing=False,
                       chunk_size=3)
    tr = Trainer(student, teacher, cfg, CPU, total_steps=1, vocab=298, pad_id=tok.pad_token_id,
                 fused_lm_head=fused)
    assert tr.fused_lm_head is fused
    sums, rows = tr.accumulate(seqs, None, denominator=14.0, keep_token_rows=True)  # 5+2+3+4 tokens
    ref_loss, ref_grads = _reference_grads(_student(tiny_pair), teacher, seqs, 298)
    assert sums[0].item() == pytest.approx(ref_loss, rel=1e-6)
    assert sums[1].item() / 14 == pytest.approx(ref_loss, rel=1e-6)        # kd_ratio 1: loss = mean KD
    grads = dict(student.named_parameters())
    assert set(grads) == set(ref_grads)
    for name, g in ref_grads.items():
        got = grads[name].grad
        assert got is not None, name
        err = float((got.double() - g).norm() / g.norm().clamp_min(1e-30))
        assert err < 1e-5, (name, err)
    # the per-token rows come back in sequence order with their own response tokens
    assert rows["token_id"] == [t for s in sorted(seqs, key=lambda s: len(s.student_ids)) for t in s.response]
    assert len(rows["kd"]) == 14 and all(k > 0 for k in rows["kd"]) and set(rows["weight"]) == {1.0}


def test_compiled_blocks_run_only_inside_the_trainers_passes(tiny_pair, loaded):
    """compile_layers: the compiled calls serve step/score and are switched off afterwards, so
    generation with the same student runs the plain modules (a counting stand-in for the compiled
    call, as torch.compile itself is GPU-only here)."""
    from rock.distill.trainer import blocks_compiled, compile_blocks

    tok, teacher = loaded
    student = _student(tiny_pair)
    pairs = compile_blocks(student)
    n_layers = student.config.num_hidden_layers
    assert len(pairs) == n_layers and all(type(m).__name__ == "Qwen3DecoderLayer" for m, _ in pairs)
    calls = []

    def counting(m):
        def call(*a, **k):
            calls.append(m)
            return m._call_impl(*a, **k)
        return call

    prompt = chat_prompt_ids(tok, "Compute (1+1)*2.")
    seqs = [TrainSequence("a", prompt + [40, 41, 2], prompt + [40, 41, 2], 3)]
    tr = Trainer(student, teacher, Stage2Config(global_batch=1, n_rollouts=1, gradient_checkpointing=False),
                 CPU, total_steps=1, vocab=298, pad_id=tok.pad_token_id)
    tr._compiled = [(m, counting(m)) for m, _ in pairs]
    tr.step(seqs)
    assert len(calls) == n_layers                    # one student forward through the stand-ins
    with blocks_compiled(tr._compiled):
        assert all(m._compiled_call_impl is not None for m, _ in pairs)
    assert all(m._compiled_call_impl is None for m, _ in pairs)
    student(input_ids=torch.tensor([prompt]))
    assert len(calls) == n_layers                    # plain modules outside the trainer


def test_score_batched_by_micro_batch_equals_one_sequence_at_a_time(tiny_pair, loaded):
    tok, teacher = loaded
    prompt = chat_prompt_ids(tok, "Compute (2+3)*4.")
    seqs = [TrainSequence(str(i), prompt[2 * i:] + r, prompt + r, len(r))
            for i, r in enumerate([[30, 31, 2], [34, 35, 36, 37, 2], [38, 2]])]
    student = _student(tiny_pair)
    tr = Trainer(student, teacher, Stage2Config(global_batch=3, n_rollouts=1, micro_batch=3), CPU,
                 total_steps=1, vocab=298, pad_id=tok.pad_token_id)
    got = tr.score(seqs)["reverse_kl_tokens"]
    width = max(len(s.student_ids) for s in seqs)
    assert got.shape == (3, width)
    for i, s in enumerate(seqs):
        one = tr.score([s])["reverse_kl_tokens"][0]
        n = s.n_response
        torch.testing.assert_close(got[i, -n:], one[-n:], atol=1e-5, rtol=1e-4)
        assert (got[i, :-n] == 0).all() and (got[i, -n:] > 0).all()


def test_weighter_zero_weights_freeze_everything_and_are_counted(tiny_pair, loaded):
    tok, teacher = loaded
    student = _student(tiny_pair)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    prompt = chat_prompt_ids(tok, "Compute (1+1)*2.")
    seqs = [TrainSequence("a", prompt + [40, 41, 2], prompt + [40, 41, 2], 3)]
    seen = {}

    def weighter(input_ids, response_mask, token_loss):
        seen["ids"], seen["mask"] = input_ids.clone(), response_mask.clone()
        return torch.zeros(input_ids.shape), {"freeze_rock_tokens": 3}

    for norm in ("token_mean", "weight_mean"):
        cfg = Stage2Config(global_batch=1, n_rollouts=1, lr=1e-2, loss_normalization=norm)
        tr = Trainer(student, teacher, cfg, CPU, total_steps=1, vocab=298, pad_id=tok.pad_token_id,
                     weighter=weighter)
        res = tr.step(seqs)
        assert res.loss == 0.0 and res.n_frozen_tokens == 3 and res.extra == {"freeze_rock_tokens": 3}
        for k, v in student.state_dict().items():
            assert torch.equal(v, before[k]), k
    assert seen["ids"][0, -3:].tolist() == [40, 41, 2]
    assert seen["mask"][0].tolist()[-4:] == [False, True, True, True]


def test_weighter_that_needs_the_loss_gets_token_aligned_reverse_kl(tiny_pair, loaded):
    tok, teacher = loaded
    student = _student(tiny_pair)
    prompt = chat_prompt_ids(tok, "Compute (1+1)*2.")
    seqs = [TrainSequence("a", prompt + [40, 41, 2], prompt + [40, 41, 2], 3)]
    got = {}

    class W:
        needs_loss = True

        def __call__(self, input_ids, response_mask, token_loss):
            got["loss"] = token_loss.clone()
            return response_mask.float()

    tr = Trainer(student, teacher, Stage2Config(global_batch=1, n_rollouts=1), CPU, total_steps=1,
                 vocab=298, pad_id=tok.pad_token_id, weighter=W())
    res = tr.step(seqs)
    tl = got["loss"][0]
    assert (tl[:-3] == 0).all() and (tl[-3:] > 0).all()
    assert res.mean_kd == pytest.approx(float(tl[-3:].mean()), rel=1e-5)


# --- stage-2 data handling ---------------------------------------------------------------------

class FakeGenerator:
    """Returns scripted completions, recording what it was asked."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate(self, prompts, **kw):
        self.calls.append((prompts, kw))
        return [[self.script[i % len(self.script)]] for i in range(len(prompts))]


def test_stage2_counts_bad_prompts_and_empty_rollouts(tiny_pair, loaded):
    tok, _ = loaded
    rows = [{"id": "empty", "prompt": "   "}, {"id": "long", "prompt": "Compute (1+2)*3. " * 20},
            {"id": "ok", "prompt": "Compute (1+2)*3."}]
    script = [Completion([], "length"), Completion([2], "stop"), Completion([40, 41], "length"),
              Completion([40, 2], "stop")]
    cfg = Stage2Config(rollout_batch=3, n_rollouts=4, global_batch=4, max_prompt_len=40,
                       max_new_tokens=2, rollout_backend="hf")
    gen = FakeGenerator(script)
    b = Stage2Batches(rows, cfg, _models(tiny_pair, ["style: so"]), tok, gen, CPU, [2], vocab=298)
    seqs = []
    counts = {}
    for step in range(b.steps_per_round):
        s, c = b(step, None)
        seqs += s
        counts.update({k: v for k, v in c.items() if k != "generate_seconds"})
    assert counts == {"n_empty_prompts": 1, "n_truncated_prompts": 1, "n_empty_rollouts": 2,
                      "n_truncated_rollouts": 2, "n_skipped_sequences": 1}
    assert len(seqs) == 3 and all(s.key.startswith("ok:0:") for s in seqs)
    assert [s.response for s in seqs] == [[2], [40, 41], [40, 2]]
    # the teacher sees its system message; the student never does
    assert all(len(s.teacher_ids) > len(s.student_ids) for s in seqs)
    assert "style: so" in tok.decode(seqs[0].teacher_ids) and "style" not in tok.decode(seqs[0].student_ids)
    assert gen.calls[0][1]["max_new_tokens"] == 2 and gen.calls[0][1]["temperature"] == 1.0


def test_overlong_prompt_truncation_keeps_template_and_system(loaded):
    tok, _ = loaded
    text = "Compute (1+2)*3. " * 20
    assert render_prompt_pair(tok, text, system="style: so", enable_thinking=False, max_len=40,
                              overlong="skip") is None
    s_ids, t_ids, cut = render_prompt_pair(tok, text, system="style: so", enable_thinking=False,
                                           max_len=40, overlong="truncate")
    assert cut and len(s_ids) <= 40
    assert tok.decode(s_ids).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(t_ids).startswith("<|im_start|>system\nstyle: so<|im_end|>")


# --- teacher samples and stage 1 ---------------------------------------------------------------

def test_teacher_samples_are_deterministic_resumable_and_count_skips(tiny_pair, loaded, tmp_path):
    tok, teacher = loaded
    rows = read_prompts(tiny_pair["prompts"])[:5] + [{"id": "e", "prompt": ""}]
    gen = HfGenerator(teacher, tok, batch_size=4)
    kw = dict(temperature=0.6, top_p=0.95, max_new_tokens=6, seed=3, system_prompts=["style: so"],
              shard_size=2)
    s1 = sample_teacher(rows, tok, gen, out_path=tmp_path / "a.jsonl", **kw)
    assert s1["n_empty_prompts"] == 1 and s1["n_samples"] == 5
    a = [json.loads(x) for x in open(tmp_path / "a.jsonl")]
    assert [r["id"] for r in a] == [r["id"] for r in rows[:5]]
    assert all(r["teacher_system"] == "style: so" for r in a)
    # a killed run left shard 0 done (marked) -> the rerun reuses it and samples only the rest
    parts = tmp_path / "b.jsonl.parts"
    parts.mkdir()
    marked = dict(a[0], response="MARK")
    (parts / "shard_00000.jsonl").write_text(json.dumps(marked) + "\n" + json.dumps(a[1]) + "\n")
    (parts / "shard_00000.json").write_text(json.dumps({"n_samples": 2}))
    sample_teacher(rows, tok, gen, out_path=tmp_path / "b.jsonl", **kw)
    b = [json.loads(x) for x in open(tmp_path / "b.jsonl")]
    assert b[0]["response"] == "MARK" and b[1:] == a[1:] and not parts.exists()


def test_read_prompts_names_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prompt": "x"}\n{"id": 3}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'id'"):
        read_prompts(f)


def test_stage1_sequences_and_truncation(tiny_pair, loaded):
    tok, _ = loaded
    rows = [{"id": "a", "prompt": "Compute (1+2)*3.", "response": "So 1+2 = 3.", "finish_reason": "stop",
             "teacher_system": "style: so"},
            {"id": "b", "prompt": "Compute (1+2)*3.", "response": "So 1+2 = 3. Then 3*3 = 9.",
             "finish_reason": "length", "teacher_system": None},
            {"id": "c", "prompt": "", "response": "x", "finish_reason": "stop"},
            {"id": "d", "prompt": "Compute.", "response": "", "finish_reason": "length"}]
    n_prompt = len(chat_prompt_ids(tok, "Compute (1+2)*3."))
    n_a = len(tok("So 1+2 = 3.")["input_ids"]) + 1
    seqs, counts = build_sequences(rows, tok, max_seq_len=n_prompt + n_a, enable_thinking=False, eos_id=2)
    assert counts["n_empty_prompts"] == 1 and counts["n_empty_responses"] == 1
    assert seqs[0].response[-1] == 2 and tok.decode(seqs[0].response[:-1]) == "So 1+2 = 3."
    assert "style: so" in tok.decode(seqs[0].teacher_ids) and seqs[1].teacher_ids == seqs[1].student_ids
    assert counts["n_truncated_responses"] == 1 and len(seqs[1].student_ids) == n_prompt + n_a
    _, c2 = build_sequences(rows[:1], tok, max_seq_len=n_prompt, enable_thinking=False, eos_id=2)
    assert c2["n_overlong_prompts"] == 1


@pytest.mark.slow
def test_stage1_runs_and_lowers_the_loss(tiny_pair, tmp_path):
    torch.set_num_threads(1)
    rows = [{"id": f"s{i}", "prompt": f"Compute ({i}+1)*2.", "response": f"So {i}+1 = {i + 1}.",
             "finish_reason": "stop", "teacher_system": None} for i in range(8)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = Stage1Config(global_batch=8, micro_batch=4, epochs=6, lr=3e-3, warmup_ratio=0.0,
                       lr_scheduler="constant", gradient_checkpointing=True, save_state_every=2)
    s = run_stage1(cfg, _models(tiny_pair), samples_path=samples, student=str(tiny_pair["student"]),
                   teacher=str(tiny_pair["teacher"]), out_dir=tmp_path / "s1")
    log = pd.read_csv(tmp_path / "s1" / "log.csv")
    assert len(log) == 6 and s["total_steps"] == 6
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert (tmp_path / "s1" / "model" / "config.json").exists() and not (tmp_path / "s1" / "resume").exists()

    def kill_after_5(done):  # last state at step 4: step 5 is redone
        if done == 5:
            raise Killed()

    kw = dict(samples_path=samples, student=str(tiny_pair["student"]), teacher=str(tiny_pair["teacher"]),
              out_dir=tmp_path / "cut")
    with pytest.raises(Killed):
        run_stage1(cfg, _models(tiny_pair), on_step_end=kill_after_5, **kw)
    assert run_stage1(cfg, _models(tiny_pair), **kw)["resumed_from_step"] == 4
    from safetensors.torch import load_file

    a = load_file(tmp_path / "s1" / "model" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- stage 2 end to end and resume --------------------------------------------------------------

def _stage2_cfg(**kw):
    base = dict(rollout_backend="hf", max_new_tokens=6, max_prompt_len=64, global_batch=4, n_rollouts=2,
                lr=3e-3, warmup_ratio=0.0, save_state_every=2, max_steps=5, n_checkpoints=2,
                gradient_checkpointing=False, rollout_batch_size_hf=4)
    base.update(kw)
    return Stage2Config(**base)


class Killed(Exception):
    pass


@pytest.mark.slow
def test_stage2_interrupted_and_resumed_ends_with_the_same_weights(tiny_pair, tmp_path):
    torch.set_num_threads(1)
    models = _models(tiny_pair, ["style: so", "style: then"])
    common = dict(prompts_path=tiny_pair["prompts"], student=str(tiny_pair["student"]),
                  teacher=str(tiny_pair["teacher"]))
    run_stage2(_stage2_cfg(save_token_losses=True), models, out_dir=tmp_path / "full", **common)

    def kill_after_3(done):  # state was saved after step 2; step 3 is lost and redone
        if done == 3:
            raise Killed()

    with pytest.raises(Killed):
        run_stage2(_stage2_cfg(save_token_losses=True), models, out_dir=tmp_path / "cut",
                   on_step_end=kill_after_3, **common)
    assert (tmp_path / "cut" / "resume" / "LATEST").read_text().strip() == "step_2"
    assert not (tmp_path / "cut" / "model").exists()
    from rock.errors import ConfigError

    with pytest.raises(ConfigError, match="resume state of a run with other settings"):
        run_stage2(_stage2_cfg(save_token_losses=True, lr=1e-2), models, out_dir=tmp_path / "cut", **common)
    summary = run_stage2(_stage2_cfg(save_token_losses=True), models, out_dir=tmp_path / "cut", **common)
    assert summary["resumed_from_step"] == 2
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = pd.read_csv(tmp_path / "full" / "log.csv"), pd.read_csv(tmp_path / "cut" / "log.csv")
    assert la["step"].tolist() == lb["step"].tolist() == [1, 2, 3, 4, 5]
    pd.testing.assert_series_equal(la["loss"], lb["loss"])
    # kept checkpoints (n_checkpoints=2 over 5 steps) in HF format, token losses per step
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["step_3", "step_5"]
    tl = pd.read_parquet(tmp_path / "full" / "token_losses" / "step_000001.parquet")
    assert set(tl.columns) >= {"step", "key", "index", "token_id", "kd", "weight"}
    assert len(tl) == la["n_response_tokens"].iloc[0]
    assert tl["kd"].mean() == pytest.approx(la["mean_kl"].iloc[0], rel=1e-4)


# --- vLLM adapter (fake module) ------------------------------------------------------------------

class FakeVllm:
    def __init__(self):
        self.events = []
        outer = self

        class SamplingParams:
            def __init__(self, **kw):
                self.kw = kw

        class Model:
            def load_weights(self, weights):
                outer.events += [("load", n) for n, _ in weights]

        class LLM:
            def __init__(self, **kw):
                outer.llm_kwargs = kw
                self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(
                    driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=Model()))))

            def generate(self, requests, params, use_tqdm=False):
                outer.requests, outer.params = requests, params
                outs = [SimpleNamespace(token_ids=[7, 2], finish_reason="stop", stop_reason=None),
                        SimpleNamespace(token_ids=[7, 8], finish_reason="length", stop_reason=None),
                        SimpleNamespace(token_ids=[9], finish_reason="stop", stop_reason=None)]
                return [SimpleNamespace(outputs=outs[:p.kw["n"]]) for p in params]

            def sleep(self, level):
                outer.events.append(("sleep", level))

            def wake_up(self, tags=None):
                outer.events.append(("wake", tuple(tags)))

            def reset_prefix_cache(self):
                outer.events.append(("reset",))

        self.SamplingParams, self.LLM = SamplingParams, LLM


def test_vllm_adapter_builds_the_right_arguments(monkeypatch):
    from rock.distill.vllm_generator import VllmGenerator

    fake = FakeVllm()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    gen = VllmGenerator("some/model", tensor_parallel_size=2, seed=5, dtype="bfloat16",
                        gpu_memory_utilization=0.3, max_model_len=8800, enable_sleep_mode=True,
                        colocate=True, stop_ids=[2])
    assert fake.llm_kwargs == {"model": "some/model", "tensor_parallel_size": 2, "seed": 5,
                               "dtype": "bfloat16", "gpu_memory_utilization": 0.3,
                               "enable_sleep_mode": True, "enable_prefix_caching": False,
                               "max_model_len": 8800, "distributed_executor_backend": "external_launcher",
                               "max_num_batched_tokens": 4096}
    out = gen.generate([[1, 2, 3], [4]], n=3, temperature=1.0, top_p=1.0, max_new_tokens=8000, seed=11)
    assert fake.requests == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4]}]
    kw = fake.params[0].kw
    assert {k: kw[k] for k in ("n", "temperature", "top_p", "top_k", "max_tokens", "stop_token_ids")} == \
        {"n": 3, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": 8000, "stop_token_ids": [2]}
    assert fake.params[0].kw["seed"] != fake.params[1].kw["seed"]
    assert out[0] == [Completion([7, 2], "stop"), Completion([7, 8], "length"), Completion([9, 2], "stop")]
    gen.sleep()
    n = gen.push_weights([("model.embed_tokens.weight", torch.zeros(2)), ("lm_head.weight", torch.zeros(2))])
    assert n == 2
    assert fake.events == [("sleep", 2), ("wake", ("weights",)), ("load", "model.embed_tokens.weight"),
                           ("load", "lm_head.weight"), ("wake", ("kv_cache",)), ("reset",)]


def test_stage2_with_vllm_backend_pushes_weights_before_each_round(monkeypatch, tiny_pair, loaded):
    tok, teacher = loaded
    fake = FakeVllm()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from rock.distill import fsdp
    from rock.distill.vllm_generator import VllmGenerator

    student = _student(tiny_pair)
    gen = VllmGenerator("x", stop_ids=[2], enable_sleep_mode=True)
    gen.sleep()
    cfg = _stage2_cfg(rollout_backend="vllm", rollout_tensor_parallel_size=1)
    pushes = []

    def push(trainer):
        pushes.append(gen.push_weights(fsdp.iter_full_tensors(trainer.student, dtype=torch.bfloat16)))

    b = Stage2Batches(read_prompts(tiny_pair["prompts"]), cfg, _models(tiny_pair), tok, gen, CPU, [2],
                      push_weights=push, vocab=298)
    tr = SimpleNamespace(student=student)
    seqs, _ = b(0, tr)
    b(1, tr)
    assert pushes == [len(student.state_dict())] * 2
    assert fake.events[-1] == ("sleep", 2) and len(seqs) == 4


# --- FSDP2 path (gloo, one CPU process) ---------------------------------------------------------

@pytest.mark.slow
def test_stage2_under_torchrun_env_uses_fsdp2_and_matches_single_process(tiny_pair, tmp_path, monkeypatch):
    """The torchrun path (FSDP2-sharded student and teacher, collectives, full-state-dict saving and
    optimizer state of the resume state) run as one gloo process on CPU: same result as without."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    models = _models(tiny_pair, ["style: so", "style: then"])
    common = dict(prompts_path=tiny_pair["prompts"], student=str(tiny_pair["student"]),
                  teacher=str(tiny_pair["teacher"]))
    cfg = dict(max_steps=3, save_state_every=1)
    run_stage2(_stage2_cfg(**cfg), models, out_dir=tmp_path / "plain", **common)
    for k, v in {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": "29541"}.items():
        monkeypatch.setenv(k, v)

    def kill_after_2(done):
        if done == 2:
            raise Killed()

    try:
        with pytest.raises(Killed):
            run_stage2(_stage2_cfg(**cfg), models, out_dir=tmp_path / "fsdp", on_step_end=kill_after_2, **common)
        summary = run_stage2(_stage2_cfg(**cfg), models, out_dir=tmp_path / "fsdp", **common)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert summary["distributed"] and summary["world_size"] == 1 and summary["resumed_from_step"] == 2
    from safetensors.torch import load_file

    a = load_file(tmp_path / "plain" / "model" / "model.safetensors")
    b = load_file(tmp_path / "fsdp" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


# --- command line ------------------------------------------------------------------------------

def _toy_like_config(tiny_pair, tmp_path, **stage2):
    import yaml

    cfg = yaml.safe_load((Path(__file__).parent / "config_toy" / "config.yaml").read_text())
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["models"].update(teacher=str(tiny_pair["teacher"]), student=str(tiny_pair["student"]))
    cfg["teacher_samples"].update(max_new_tokens=6)
    cfg["stage1"].update(global_batch=4, micro_batch=2, max_steps=2)
    cfg["stage2"].update(max_new_tokens=6, global_batch=4, n_rollouts=2, micro_batch=4,
                         n_checkpoints=1, max_steps=2, **stage2)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_cli_runs_all_three_stages_with_default_paths(tiny_pair, tmp_path):
    from rock import paths
    from rock.cli import main

    torch.set_num_threads(1)
    config = _toy_like_config(tiny_pair, tmp_path)
    run = tmp_path / "run"
    paths.prompts(run, 1).parent.mkdir(parents=True)
    rows = read_prompts(tiny_pair["prompts"])
    for stage in (1, 2):
        paths.prompts(run, stage).write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    assert main(["distill", "teacher-samples", "--config", str(config)]) == 0
    assert json.loads(paths.teacher_samples_summary(run).read_text())["n_samples"] == 6
    assert main(["distill", "stage1", "--config", str(config)]) == 0
    assert (paths.stage_model(run, 1) / "config.json").exists()
    assert main(["distill", "stage2", "--config", str(config), "--max-steps", "3", "--lr", "0.01"]) == 0
    log = pd.read_csv(paths.train_log(paths.stage_dir(run, 2)))
    assert log["step"].tolist() == [1, 2, 3] and log["lr"].iloc[1] > 0.001   # flags override the file
    assert (paths.train_checkpoint(paths.stage_dir(run, 2), 3) / "model.safetensors").exists()
    summary = json.loads(paths.train_summary(paths.stage_dir(run, 2)).read_text())
    assert summary["student"] == str(paths.stage_model(run, 1))   # stage 2 starts from stage 1


def test_cli_config_errors_are_one_line(tiny_pair, tmp_path, capsys):
    import yaml

    from rock.cli import main

    config = _toy_like_config(tiny_pair, tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["stage2"]["lrr"] = 1.0
    config.write_text(yaml.safe_dump(cfg))
    assert main(["distill", "stage2", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'stage2.lrr'" in err   # the schema names the key path
    cfg["stage2"].pop("lrr")
    cfg["stage2"]["global_batch"] = 6   # not a multiple of n_rollouts * rollout_batch
    cfg["stage2"]["rollout_batch"] = 1
    config.write_text(yaml.safe_dump(cfg))
    assert main(["distill", "stage2", "--config", str(config)]) == 2
    assert "stage2.rollout_batch" in capsys.readouterr().err


def test_step_log_header_names_columns_added_later_and_survives_a_resume(tmp_path):
    """Freeze runs add count columns after the first step; a resume truncates: the csv stays
    rectangular with one header naming every column (pandas reads it without guessing an index)."""
    from rock.distill.checkpoint import StepLog

    log = StepLog(tmp_path, ["step", "loss"])
    log.truncate(0)
    log.append({"step": 1, "loss": 0.5})
    log.columns.append("n_frozen")
    log.append({"step": 2, "loss": 0.25, "n_frozen": 7})
    log.append({"step": 3, "loss": 0.125, "n_frozen": 9})
    with open(log.path, "a") as fh:                      # killed while writing step 4
        fh.write("4,0.1")
    resumed = StepLog(tmp_path, ["step", "loss"])        # a new process knows only the base columns
    resumed.truncate(2)
    resumed.append({"step": 3, "loss": 0.125, "n_frozen": 9})
    table = pd.read_csv(log.path)
    assert list(table.columns) == ["step", "loss", "n_frozen"]
    assert table["step"].tolist() == [1, 2, 3] and table["n_frozen"].tolist()[1:] == [7, 9]
    assert pd.isna(table["n_frozen"][0])
