"""Benchmark: one KD optimizer step of ``rock.distill.trainer.Trainer.step`` against a naive step.

Both sides train the same random-weight Qwen3-shaped student against the same frozen teacher on
the same batch (global batch of prompt + response token sequences, micro-batches, gradient
checkpointing on, AdamW, gradient clipping 1.0, reverse KL over the full vocabulary, kd_ratio 1):

* ``naive``: what KDFlow and TRL do: full logits of both models over every position, fp32
  ``log_softmax`` of both, ``sum p_s (log p_s - log p_t)`` under autograd, masked to the response
  tokens and divided by the global batch's response-token count, one ``backward`` per micro-batch.
* ``rock``: :meth:`rock.distill.trainer.Trainer.step` (logits only at response positions, the
  chunked loss of :mod:`rock.distill.losses`, no host sync inside the micro-batch loop).

On a GPU the student keeps fp32 master weights and runs under bf16 autocast, the teacher is bf16
(as ``rock.distill.runtime.load_causal_lm`` loads them); on CPU both are fp32. Each side gets its
own AdamW; warm-up steps (which also allocate the optimizer state) are not timed; time is the
median of ``--steps`` steps. Peak memory: on a GPU ``torch.cuda.max_memory_allocated`` over the
timed steps (everything: weights, optimizer state, activations, logits), on CPU the process's
peak RSS above its RSS before the timed steps (VmHWM, reset through ``/proc/self/clear_refs``).

Model FLOPs per step, the same for both sides (so the TFLOP/s ratio is the speed ratio): with T
the tokens of the step (prompts + responses) and N a model's matmul parameters (decoder layers +
lm_head), ``(6 + 2 * checkpointing) * N_student * T + 2 * N_teacher * T``; attention's
``O(L^2)`` term is left out. MFU is that rate over ``--peak-tflops`` (989: H100/H200 SXM dense
bf16 datasheet; about 790 was measured for a large bf16 matrix product on the H200 lent here).

    python benchmarks/bench_train_step.py --size tiny            # CPU, seconds
    python benchmarks/bench_train_step.py --size 0.6b            # GPU: 1k and 4k responses
    python benchmarks/bench_train_step.py --size 0.6b --cases 1024:2 --breakdown
    python benchmarks/bench_train_step.py --size 4b --cases 1024:2
    python benchmarks/bench_train_step.py --size 0.6b --compile    # also rock with compile_layers

Targets (issue 17), for the 0.6B/1.7B shapes on a GPU: speed >= 1.2x naive, peak memory <= 0.6x
naive, MFU >= 25 %. At ``--size tiny`` on CPU the same ratios are reported (not the GPU case).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: Qwen3 shapes (config.json of the hub models): hidden, layers, q heads, kv heads, MLP, head dim
SHAPES = {
    "qwen3-tiny-s": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=192, head_dim=32, tie=True),
    "qwen3-tiny-t": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=384, head_dim=32, tie=True),
    "qwen3-0.6b": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, intermediate_size=3072, head_dim=128, tie=True),
    "qwen3-1.7b": dict(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, intermediate_size=6144, head_dim=128, tie=True),
    "qwen3-4b": dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=9728, head_dim=128, tie=True),
    "qwen3-8b": dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=12288, head_dim=128, tie=False),
}
#: --size: student, teacher, vocabulary, global batch, prompt length, default cases
#: (response:micro_batch). ASSUMED for 4b: a Qwen3-8B-shaped dense teacher (the paper's 30B-A3B
#: MoE teacher does not fit next to a 4B fp32 student with AdamW on one GPU).
SIZES = {
    "tiny": dict(student="qwen3-tiny-s", teacher="qwen3-tiny-t", vocab=1024, global_batch=4,
                 prompt=16, cases=["48:2"], device="cpu"),
    "0.6b": dict(student="qwen3-0.6b", teacher="qwen3-1.7b", vocab=151_936, global_batch=8,
                 prompt=256, cases=["1024:2", "4096:1"], device="cuda"),
    "4b": dict(student="qwen3-4b", teacher="qwen3-8b", vocab=151_936, global_batch=8,
               prompt=256, cases=["1024:2"], device="cuda"),
}
TARGET_SPEED, TARGET_MEMORY, TARGET_MFU = 1.2, 0.6, 25.0


# --------------------------------------------------------------------------------------------
# models and data
# --------------------------------------------------------------------------------------------

def build_model(shape: str, vocab: int, device: torch.device, dtype: torch.dtype, seed: int):
    """A random-weight Qwen3 causal LM, initialised directly on ``device``."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    spec = dict(SHAPES[shape])
    tie = spec.pop("tie")
    cfg = Qwen3Config(vocab_size=vocab, max_position_embeddings=8192, tie_word_embeddings=tie,
                      use_cache=False, **spec)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model


def matmul_params(model) -> int:
    """Parameters that take part in a matmul per token: decoder layers + lm_head."""
    layers = sum(p.numel() for p in model.model.layers.parameters())
    return layers + model.get_output_embeddings().weight.numel()


def make_batch(n: int, prompt: int, response: int, vocab: int, seed: int):
    """``n`` random sequences of ``prompt + response`` token ids (pad id 0 never drawn)."""
    from rock.distill.trainer import TrainSequence

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, prompt + response), generator=g).tolist()
    return [TrainSequence(str(i), row, row, response) for i, row in enumerate(ids)]


# --------------------------------------------------------------------------------------------
# the two steps
# --------------------------------------------------------------------------------------------

def naive_step(student, teacher, optimizer, seqs, micro: int, runtime, max_norm: float = 1.0) -> float:
    """KDFlow/TRL-style KD step: full logits, fp32 log_softmax reverse KL under autograd."""
    from rock.distill.trainer import left_pad, response_mask_right

    n_tok = sum(s.n_response for s in seqs)
    total = torch.zeros((), dtype=torch.float32, device=runtime.device)
    for a in range(0, len(seqs), micro):
        batch = seqs[a:a + micro]
        ids, attn, pos = left_pad([s.student_ids for s in batch], 0, runtime.device)
        mask = response_mask_right([s.n_response for s in batch], ids.shape[1], runtime.device)
        with torch.no_grad(), runtime.autocast():
            t_logits = teacher(input_ids=ids, attention_mask=attn, position_ids=pos).logits
        with runtime.autocast():
            s_logits = student(input_ids=ids, attention_mask=attn, position_ids=pos).logits
        ls = torch.log_softmax(s_logits[:, :-1].float(), -1)
        lt = torch.log_softmax(t_logits[:, :-1].float(), -1)
        kl = (ls.exp() * (ls - lt)).sum(-1)
        loss = (kl * mask[:, 1:]).sum() / n_tok
        loss.backward()
        total += loss.detach()
        del t_logits, s_logits, ls, lt, kl, loss
    torch.nn.utils.clip_grad_norm_(student.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(total)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return 0
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM to the current RSS
        fh.write("5")
    return _rss_kib("VmRSS") * 1024


def _peak(device, base: int) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    return max(0, _rss_kib("VmHWM") * 1024 - base)


def measure(run_step, device, warmup: int, steps: int) -> dict:
    """Median seconds and peak bytes of ``run_step()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run_step()
    _sync(device)
    base = _reset_peak(device)
    times, losses = [], []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        losses.append(run_step())
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "times": times, "peak_bytes": _peak(device, base),
            "loss": losses[-1]}


def run_side(side: str, student, teacher, seqs, micro: int, runtime, vocab: int, args) -> dict:
    """Time one side with its own AdamW (dropped afterwards, so the other side starts clean)."""
    from rock.distill.config import Stage2Config
    from rock.distill.trainer import Trainer

    cfg = Stage2Config(global_batch=len(seqs), n_rollouts=1, micro_batch=micro, lr=1e-6,
                       warmup_ratio=0.0, gradient_checkpointing=args.checkpointing,
                       chunk_size=args.chunk_size, compile_layers=side == "rock_compiled")
    trainer = Trainer(student, teacher, cfg, runtime, total_steps=1000, vocab=vocab, pad_id=0)
    if side == "naive":
        opt = trainer.optimizer                 # the same AdamW settings as the Trainer's
        out = measure(lambda: naive_step(student, teacher, opt, seqs, micro, runtime),
                      runtime.device, args.warmup, args.steps)
    else:
        out = measure(lambda: trainer.step(seqs).loss, runtime.device, args.warmup, args.steps)
    trainer.optimizer.zero_grad(set_to_none=True)
    del trainer
    _reset_peak(runtime.device)
    return out


def breakdown(student, teacher, seqs, micro: int, runtime, vocab: int) -> dict:
    """Seconds of the step's parts: teacher forwards alone, student forward + backward of the
    decoder alone (one kept logit row, a trivial loss), over the same micro-batches."""
    from rock.distill.trainer import keep_logits

    def teacher_only():
        with torch.no_grad():
            for a in range(0, len(seqs), micro):
                keep_logits(teacher, [s.teacher_ids for s in seqs[a:a + micro]], 1, 0, vocab, runtime)
        return 0.0

    def student_only():
        for a in range(0, len(seqs), micro):
            out = keep_logits(student, [s.student_ids for s in seqs[a:a + micro]], 1, 0, vocab, runtime)
            out.float().mean().backward()
        student.zero_grad(set_to_none=True)
        return 0.0

    return {"teacher_forward_s": measure(teacher_only, runtime.device, 1, 2)["seconds"],
            "student_decoder_fwd_bwd_s": measure(student_only, runtime.device, 1, 2)["seconds"]}


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def run_case(student, teacher, n_s: int, n_t: int, response: int, micro: int, runtime, size: dict,
             args) -> dict:
    seqs = make_batch(size["global_batch"], size["prompt"], response, size["vocab"], args.seed)
    tokens = sum(len(s.student_ids) for s in seqs)
    flops = ((6 + 2 * args.checkpointing) * n_s + 2 * n_t) * tokens
    row = {"response": response, "micro_batch": micro, "tokens": tokens, "step_tflop": flops / 1e12}
    for side in ("naive", "rock") + (("rock_compiled",) if args.compile else ()):
        try:
            r = run_side(side, student, teacher, seqs, micro, runtime, size["vocab"], args)
        except Exception as err:  # noqa: BLE001  (an optional variant must not lose the others)
            if side != "rock_compiled":
                raise
            print(f"rock_compiled failed: {type(err).__name__}: {str(err)[:2000]}", flush=True)
            for m in (*student.modules(), *teacher.modules()):
                m._compiled_call_impl = None
            student.zero_grad(set_to_none=True)
            continue
        r["tflops"] = flops / r["seconds"] / 1e12
        r["mfu_pct"] = 100 * r["tflops"] / args.peak_tflops
        row[side] = r
    if args.breakdown:
        row["breakdown"] = breakdown(student, teacher, seqs, micro, runtime, size["vocab"])
    return row


def report(rows: list[dict], args, device) -> None:
    from protocol import emit

    unit = "GiB" if device.type == "cuda" else "MiB above the pre-step RSS"
    scale = 2**30 if device.type == "cuda" else 2**20
    print(f"| response x micro | side | step (s) | peak ({unit}) | TFLOP/s | MFU % | loss |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for side in ("rock", "rock_compiled", "naive"):
            if side not in row:
                continue
            r = row[side]
            print(f"| {row['response']} x {row['micro_batch']} | {side} | {r['seconds']:.3f} | "
                  f"{r['peak_bytes'] / scale:.2f} | {r['tflops']:.1f} | {r['mfu_pct']:.1f} | "
                  f"{r['loss']:.5f} |")
    print()
    for row in rows:
        n, o = row["naive"], row["rock"]
        tag = f"{args.size} response {row['response']} micro {row['micro_batch']}"
        speed, mem = n["seconds"] / o["seconds"], o["peak_bytes"] / max(n["peak_bytes"], 1)
        print(f"ratio (speed naive/rock, {tag}): {speed:.2f}x   (target >= {TARGET_SPEED}x)")
        print(f"ratio (peak memory rock/naive, {tag}): {mem:.3f}x   (target <= {TARGET_MEMORY}x)")
        print(f"rock MFU ({tag}): {o['mfu_pct']:.1f} % of {args.peak_tflops:g} TFLOP/s "
              f"(target >= {TARGET_MFU} %)")
        if "breakdown" in row:
            b = row["breakdown"]
            print(f"breakdown ({tag}): teacher forwards {b['teacher_forward_s']:.3f} s, student "
                  f"decoder fwd+bwd {b['student_decoder_fwd_bwd_s']:.3f} s, rest of the rock step "
                  f"{o['seconds'] - b['teacher_forward_s'] - b['student_decoder_fwd_bwd_s']:.3f} s")
        note = (f"{device.type}, {args.size} shapes, prompt {args.prompt_len} + response "
                f"{row['response']}, global batch {args.global_batch}, micro {row['micro_batch']}"
                + ("" if device.type == "cuda" else "; targets are for the GPU case"))
        key = f"train_step_{args.size}_r{row['response']}_m{row['micro_batch']}"
        emit(f"{key}_speed", speed, TARGET_SPEED, unit="x", note=note)
        if device.type == "cuda":  # a CPU process's RSS moves by allocator noise at tiny shapes
            emit(f"{key}_peak_memory", mem, TARGET_MEMORY, direction="<=", unit="x", note=note)
            emit(f"{key}_mfu", o["mfu_pct"], TARGET_MFU, unit="%", note=note)
        if "rock_compiled" in row:
            c = row["rock_compiled"]
            cnote = note + "; compile_layers: true (torch.compile per decoder block)"
            print(f"ratio (speed naive/rock compiled, {tag}): {n['seconds'] / c['seconds']:.2f}x   "
                  f"(target >= {TARGET_SPEED}x); peak memory {c['peak_bytes'] / max(n['peak_bytes'], 1):.3f}x "
                  f"of naive; MFU {c['mfu_pct']:.1f} %")
            emit(f"{key}_compiled_speed", n["seconds"] / c["seconds"], TARGET_SPEED, unit="x", note=cnote)
            if device.type == "cuda":
                emit(f"{key}_compiled_peak_memory", c["peak_bytes"] / max(n["peak_bytes"], 1),
                     TARGET_MEMORY, direction="<=", unit="x", note=cnote)
                emit(f"{key}_compiled_mfu", c["mfu_pct"], TARGET_MFU, unit="%", note=cnote)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--cases", nargs="+", metavar="RESPONSE:MICRO",
                   help="response length and micro batch per case (default: the size's)")
    p.add_argument("--device", help="default: cpu for tiny, cuda otherwise")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=0, help="loss chunk (positions); 0 = library default")
    p.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    p.add_argument("--breakdown", action="store_true", help="also time teacher and student alone")
    p.add_argument("--compile", action="store_true",
                   help="also time Trainer.step with compile_layers (GPU; the warm-up step compiles)")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write every number here")
    args = p.parse_args(argv)
    from rock.distill.trainer import Runtime

    size = SIZES[args.size]
    args.global_batch, args.prompt_len = size["global_batch"], size["prompt"]
    device = torch.device(args.device or size["device"])
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    runtime = Runtime(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    t0 = time.perf_counter()
    student = build_model(size["student"], size["vocab"], device, torch.float32, args.seed)
    teacher = build_model(size["teacher"], size["vocab"], device, runtime.dtype, args.seed + 1)
    teacher.eval().requires_grad_(False)
    student.train()
    if args.checkpointing:  # as rock.distill.runtime.load_causal_lm does
        enable = getattr(student, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_s, n_t = matmul_params(student), matmul_params(teacher)
    print(f"{args.size}: student {size['student']} ({n_s / 1e9:.3f}B matmul params), teacher "
          f"{size['teacher']} ({n_t / 1e9:.3f}B), V={size['vocab']:,}, global batch "
          f"{size['global_batch']}, prompt {size['prompt']}, {device}, checkpointing "
          f"{args.checkpointing}; models built in {time.perf_counter() - t0:.1f} s; median of "
          f"{args.steps} steps after {args.warmup} warm-up")
    rows = []
    for case in args.cases or size["cases"]:
        response, micro = (int(x) for x in case.split(":"))
        rows.append(run_case(student, teacher, n_s, n_t, response, micro, runtime, size, args))
        sys.stdout.flush()
    report(rows, args, device)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"size": args.size, "device": str(device), "rows": rows},
                                        indent=2, default=str))
    bad = [r for r in rows if not all(math.isfinite(r[s]["loss"]) for s in ("naive", "rock"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
