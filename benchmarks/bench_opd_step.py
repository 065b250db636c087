"""Benchmark: one stage-2 (on-policy KD) step on the toy pair, rock.distill vs TRL.

Same models, prompts, batch (``--prompts-per-step`` prompts x ``--n-rollouts`` completions),
generation length, sampling (T = 1, top-p = 1, no top-k), reverse KL over the full vocabulary,
fp32 on CPU, no gradient checkpointing (TRL turns it on by default, which also disables the KV
cache in generation), same thread count. Sides:

* ``rock``: :class:`rock.distill.stage2.Stage2Batches` + :class:`rock.distill.trainer.Trainer`
  (hf rollouts on the training model, chunked reverse KL);
* ``gkd``: TRL ``GKDTrainer`` with ``beta=1`` (reverse KL), ``lmbda=1`` (always on-policy);
* ``distill``: TRL ``DistillationTrainer`` (``beta=1``, ``num_generations=n``), if present.

Each side runs ``--warmup`` steps, then ``--steps`` timed steps, in its own process; with
``--rounds`` the three sides run that many times, interleaved, and their steps are pooled (a shared
host's load drifts). Tokens per second = generated completion tokens / wall time of the step; the
table also gives them per CPU second of the process (less sensitive to other processes). Fastest
fair settings, measured: 1 torch thread for every side (2 threads on a busy 2-core host made
generation ~10x slower), TRL with the whole batch per forward (gradient accumulation over 8-sequence
micro-batches was slower for both TRL trainers), rock with length-sorted micro-batches of 8.
The per-token loss is what each side
optimises, per generated token: rock logs the mean reverse KL per response token; GKD's logged loss
divides the summed token losses by the number of *dataset answer* tokens (its labels) rather than
the generated ones, so the table also shows it rescaled per generated token.

TRL is not part of the CPU environment: install it into a separate venv (the numbers in the
report used trl 1.9.0 on top of this repository's venv) and pass ``--trl-python``::

    python -m venv /tmp/trlvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/trlvenv/lib/python3.11/site-packages/main.pth
    /tmp/trlvenv/bin/pip install --no-deps trl==1.9.0
    python benchmarks/bench_opd_step.py --trl-python /tmp/trlvenv/bin/python

Target (issue 3): rock's tokens/s at least 1.2x each TRL trainer's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _prompts(args) -> list[str]:
    rows = [json.loads(x) for x in open(args.prompts) if x.strip()]
    n = args.prompts_per_step * (args.warmup + args.steps)
    texts = [r["prompt"] for r in rows if r.get("prompt", "").strip()]
    return [texts[i % len(texts)] for i in range(n)]


def side_rock(args) -> dict:
    import torch

    from rock.distill.config import ModelsConfig, Stage2Config
    from rock.distill.sampling import stop_token_ids
    from rock.distill.stage2 import Stage2Batches
    from rock.distill.trainer import Runtime, Trainer, load_causal_lm
    from transformers import AutoConfig, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rt = Runtime(torch.device("cpu"))
    tok = AutoTokenizer.from_pretrained(args.student)
    student = load_causal_lm(args.student, rt, trainable=True)
    teacher = load_causal_lm(args.teacher, rt, trainable=False)
    vocab = min(student.config.vocab_size, teacher.config.vocab_size)
    seqs_per_step = args.prompts_per_step * args.n_rollouts
    cfg = Stage2Config(rollout_backend="hf", global_batch=seqs_per_step, n_rollouts=args.n_rollouts,
                       micro_batch=args.micro_batch, max_new_tokens=args.max_new_tokens,
                       max_prompt_len=4096, lr=args.lr, warmup_ratio=0.0, lr_scheduler="constant",
                       gradient_checkpointing=False, rollout_batch_size_hf=seqs_per_step)
    models = ModelsConfig(teacher=args.teacher, student=args.student, dtype="float32",
                          teacher_system_prompts=args.system_prompts)
    rows = [{"id": f"p{i}", "prompt": p} for i, p in enumerate(_prompts(args))]
    stops = stop_token_ids(tok, AutoConfig.from_pretrained(args.student))
    from rock.distill.sampling import HfGenerator

    gen = HfGenerator(student, tok, batch_size=seqs_per_step, stop_ids=stops, vocab_limit=vocab)
    batches = Stage2Batches(rows, cfg, models, tok, gen, rt, stops, vocab=vocab)
    batches.prompts_of_round = lambda r: rows[r * args.prompts_per_step:(r + 1) * args.prompts_per_step]
    trainer = Trainer(student, teacher, cfg, rt, total_steps=args.warmup + args.steps, vocab=vocab,
                      pad_id=tok.pad_token_id if tok.pad_token_id is not None else stops[0])
    out = []
    for step in range(args.warmup + args.steps):
        c0, t0 = time.process_time(), time.perf_counter()
        seqs, counts = batches(step, trainer)
        t1 = time.perf_counter()
        res = trainer.step(seqs)
        t2 = time.perf_counter()
        out.append({"seconds": t2 - t0, "cpu": time.process_time() - c0, "generate": t1 - t0, "train": t2 - t1,
                    "tokens": res.n_response_tokens, "loss": res.loss, "per_token_loss": res.mean_kd})
    return {"steps": out[args.warmup:]}


def side_trl(args, which: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.student)
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32)
    seqs_per_step = args.prompts_per_step * args.n_rollouts
    prompts = _prompts(args)
    n_steps = args.warmup + args.steps
    # per optimizer step: generated tokens and generation time summed over its micro-batches
    record = {"tokens": [0], "t_begin": [], "t_end": [], "c_begin": [], "c_end": [], "gen": [0.0],
              "loss": []}
    pad = tok.pad_token_id
    orig_generate = student.generate

    def counting_generate(*a, **kw):  # count generated tokens (up to and including the stop token)
        t0 = time.perf_counter()
        out = orig_generate(*a, **kw)
        record["gen"][-1] += time.perf_counter() - t0
        seqs = out.sequences if hasattr(out, "sequences") else out
        width = (kw.get("input_ids") if kw.get("input_ids") is not None else a[0]).shape[1]
        new = seqs[:, width:]
        eos = tok.eos_token_id
        n = 0
        for row in new.tolist():
            k = 0
            for tid in row:
                k += 1
                if tid == eos:
                    break
            while k and row[k - 1] == pad and pad != eos:
                k -= 1
            n += k
        record["tokens"][-1] += n
        return out

    student.generate = counting_generate

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            record["t_begin"].append(time.perf_counter())
            record["c_begin"].append(time.process_time())

        def on_step_end(self, a, state, control, **kw):
            record["t_end"].append(time.perf_counter())
            record["c_end"].append(time.process_time())
            record["tokens"].append(0)
            record["gen"].append(0.0)

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                record["loss"].append(float(logs["loss"]))

    micro = args.trl_micro_batch or seqs_per_step
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=micro,
                  gradient_accumulation_steps=seqs_per_step // micro, learning_rate=args.lr, max_steps=n_steps,
                  lr_scheduler_type="constant", warmup_steps=0, use_cpu=True, bf16=False, fp16=False,
                  gradient_checkpointing=False, report_to=[], logging_steps=1, save_strategy="no",
                  dataloader_num_workers=0, seed=0, temperature=1.0, beta=1.0)
    if which == "gkd":
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        # GKD needs reference answers in the dataset (its collator); with lmbda=1 they are only used
        # to normalise the loss. One rollout per dataset row: each prompt is repeated n times.
        rows = [{"messages": [{"role": "user", "content": p},
                              {"role": "assistant", "content": args.reference_answer}]}
                for p in prompts[:: 1] for _ in range(args.n_rollouts)]
        rows = rows[:n_steps * seqs_per_step]
        cfg = GKDConfig(lmbda=1.0, max_new_tokens=args.max_new_tokens, seq_kd=False,
                        max_length=4096, **common)
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=cfg,
                             train_dataset=Dataset.from_list(rows), processing_class=tok,
                             callbacks=[Timer()])
        trainer.generation_config.top_p = 1.0
    else:
        from trl.experimental.distillation import DistillationConfig, DistillationTrainer

        rows = [{"prompt": [{"role": "user", "content": p}]} for p in prompts]
        cfg = DistillationConfig(num_generations=args.n_rollouts, max_completion_length=args.max_new_tokens,
                                 max_length=4096, top_p=1.0, top_k=0, **common)
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=cfg,
                                      train_dataset=Dataset.from_list(rows), processing_class=tok,
                                      callbacks=[Timer()])
    items = []
    orig_step = trainer.training_step

    def recording_step(model, inputs, num_items_in_batch=None):
        items.append(float(num_items_in_batch) if num_items_in_batch is not None else None)
        return orig_step(model, inputs, num_items_in_batch)

    trainer.training_step = recording_step
    trainer.train()
    steps = []
    for i in range(args.warmup, n_steps):
        sec = record["t_end"][i] - record["t_begin"][i]
        tokens = record["tokens"][i] if i < len(record["tokens"]) else float("nan")
        loss = record["loss"][i] if i < len(record["loss"]) else float("nan")
        # the loss is sum(token losses) / num_items_in_batch (when given): per generated token it is
        # loss * num_items / generated tokens
        norm = items[i] if i < len(items) and items[i] else tokens   # 0/None: normalised internally
        steps.append({"seconds": sec, "cpu": record["c_end"][i] - record["c_begin"][i], "generate": record["gen"][i] if i < len(record["gen"]) else float("nan"),
                      "train": sec - (record["gen"][i] if i < len(record["gen"]) else 0.0),
                      "tokens": tokens, "loss": loss, "per_token_loss": loss * norm / tokens,
                      "normaliser": norm})
    return {"steps": steps}


def main(argv=None) -> int:
    world = REPO / "results" / "toy" / "world"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default=str(world / "student"))
    p.add_argument("--teacher", default=str(world / "teacher"))
    p.add_argument("--prompts", default=str(REPO / "results" / "toy" / "data" / "prompts_stage2.jsonl"))
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--n-rollouts", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--micro-batch", type=int, default=8,
                   help="rock: sequences per forward/backward (sorted by length; 8 was the fastest)")
    p.add_argument("--trl-micro-batch", type=int, default=0,
                   help="TRL per_device_train_batch_size (gradient accumulation up to the batch); "
                        "0 = the whole batch at once")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the sides this many times, interleaved, and pool their steps (load noise)")
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per side (1 is the fastest for toy-size models: with 2 threads "
                        "on a shared 2-core machine generation was ~10x slower)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--system-prompts", nargs="*", default=[],
                   help="teacher system prompts (rock side only; TRL has no hidden teacher context, so "
                        "the default compares both without it)")
    p.add_argument("--reference-answer", default="So the answer is \\boxed{0}.",
                   help="GKD's dataset answer (unused for training with lmbda=1; sets its loss normaliser)")
    p.add_argument("--trl-python", help="python of a venv with trl installed; omit to run rock only")
    p.add_argument("--side", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from protocol import emit, skip

    if args.side:
        res = side_rock(args) if args.side == "rock" else side_trl(args, args.side)
        print("RESULT " + json.dumps(res))
        return 0
    for f in (args.student, args.teacher, args.prompts):
        if not Path(f).exists():
            msg = (f"missing {f}: build the toy world and data first (snakemake --profile "
                   "workflow/profiles/toy data_prompts), or pass --student/--teacher/--prompts")
            print(msg, file=sys.stderr)
            skip("opd_step_rock_vs_trl", msg)
            return 0
    sides = [("rock", sys.executable)]
    if args.trl_python:
        sides += [("gkd", args.trl_python), ("distill", args.trl_python)]
    passthrough = list(argv if argv is not None else sys.argv[1:])
    results = {}
    for _ in range(args.rounds):
        for name, py in sides:
            proc = subprocess.run([py, __file__, "--side", name] + passthrough, capture_output=True,
                                  text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"side {name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            results.setdefault(name, {"steps": []})["steps"] += json.loads(lines[-1][len("RESULT "):])["steps"]
    print(f"one stage-2 step: {args.prompts_per_step} prompts x {args.n_rollouts} rollouts, <= {args.max_new_tokens} "
          f"new tokens, fp32 CPU, {args.threads} threads, no gradient checkpointing; mean of {args.steps} steps "
          f"after {args.warmup} warm-up, x{args.rounds} interleaved rounds; micro-batch rock {args.micro_batch}, "
          f"TRL {args.trl_micro_batch or args.prompts_per_step * args.n_rollouts}")
    print(f"| {'side':<8} | {'tokens/step':>11} | {'step s':>7} | {'generate s':>10} | {'train s':>7} | "
          f"{'tokens/s':>8} | {'tokens/CPU s':>12} | {'logged loss':>11} | {'loss/gen. token':>15} |")
    print("|" + "|".join(["-" * 10, "-" * 13, "-" * 9, "-" * 12, "-" * 9, "-" * 10, "-" * 14, "-" * 13,
                         "-" * 17]) + "|")
    tps, tpc = {}, {}
    for name, r in results.items():
        st = r["steps"]
        n = len(st)
        tok_ = sum(s["tokens"] for s in st) / n
        sec = sum(s["seconds"] for s in st) / n
        gen = sum(s["generate"] for s in st) / n
        train = sum(s["train"] for s in st) / n
        loss = sum(s["loss"] for s in st) / n
        per_tok = sum(s["per_token_loss"] for s in st) / n
        tps[name] = tok_ / sec
        tpc[name] = tok_ / (sum(s["cpu"] for s in st) / n)
        print(f"| {name:<8} | {tok_:>11.1f} | {sec:>7.2f} | {gen:>10.2f} | {train:>7.2f} | {tps[name]:>8.1f} | "
              f"{tpc[name]:>12.1f} | {loss:>11.4f} | {per_tok:>15.4f} |")
    if not args.trl_python:
        skip("opd_step_rock_vs_trl", "no --trl-python (a venv with trl): rock side timed only")
    for name in ("gkd", "distill"):
        if name in tps and "rock" in tps:
            emit(f"opd_step_tokens_per_cpu_s_vs_trl_{name}", tpc["rock"] / tpc[name], 1.2, unit="x",
                 note=f"rock / TRL {name}, tokens per CPU second")
            print(f"rock / {name}: tokens/s ratio {tps['rock'] / tps[name]:.2f}, per CPU second "
                  f"{tpc['rock'] / tpc[name]:.2f} (target >= 1.2; CPU time is less sensitive to other "
                  "processes on a shared host)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
