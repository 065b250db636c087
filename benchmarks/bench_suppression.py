"""Benchmark: 10 suppression sets in one process vs 10 separate ``lm_eval`` command-line runs.

The knockout (paper Section 3.2, Appendix D.3) evaluates 200 candidates at token and window level,
i.e. hundreds of suppression sets on the same model and tasks. ``rock.evaluate`` loads the model and
builds the tasks once and then only swaps the suppression set (``Evaluator.run``); the naive way is
one ``lm_eval`` process per set, each paying imports, lm-eval's full task index and the model load.

Both sides run the same task definition (``rock/evaluate/tasks/rock_math500.yaml`` reading the same
local jsonl), the same problems, generation settings and batch size, one CPU thread each. The
command line cannot carry a list-valued suppression argument, so its runs evaluate without
suppression: the comparison is of cost, and is, if anything, in the command line's favour.

    python benchmarks/bench_suppression.py                 # toy world if built, else a tiny random Qwen3
    python benchmarks/bench_suppression.py --cli-runs 3    # quicker: time 3 CLI runs, scale to 10

Prints a table and the ratios of wall-clock and CPU time (target >= 10x). On a shared machine the CPU
time ratio is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rock import paths  # noqa: E402


def _model_and_data(work: Path, run_dir: Path) -> tuple[Path, Path, str]:
    """The toy student and its MATH-500 rows when ``rock toy build`` has run, else a tiny model."""
    student = paths.world_model(run_dir, "student")
    for data in (paths.benchmark(run_dir, "math500"), paths.world_raw(run_dir, "math500")):
        if (student / "config.json").is_file() and data.is_file():
            return student, data, f"toy student ({student})"
    from rock.evaluate.tiny import build_tiny_model

    model = build_tiny_model(work / "tiny", seed=0)
    rows = [{"id": f"p{i}", "problem": f"What is $({a}+{b})*{c}$?", "answer": str((a + b) * c)}
            for i, (a, b, c) in enumerate((a, b, c) for a in range(1, 10) for b in range(1, 4) for c in (2, 3))]
    data = work / "math500.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model, data, "tiny random Qwen3 (toy world not built)"


def _suppression_sets(model: Path, n: int) -> dict[str, list[int]]:
    """n single-token sets: the digits 0-9 (frequent in math answers), as the knockout's token level."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    sets = {}
    for d in "0123456789":
        ids = tok.encode(d, add_special_tokens=False)
        if len(ids) == 1:
            sets[f"digit_{d}"] = ids
    return dict(list(sets.items())[:n])


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes (robust to a busy shared machine)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def inner(args) -> None:
    """Runs in a fresh process: time setup (imports, tasks, model) and each suppression set."""
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from rock.evaluate.benchmarks import build_tasks
    from rock.evaluate.config import EvaluationConfig
    from rock.evaluate.models import make_lm
    from rock.evaluate.runner import Evaluator

    cfg = EvaluationConfig(backend="hf", dataset_source="local", n_runs=1, temperature=1.0, top_p=1.0,
                           max_gen_toks=args.max_gen_toks, limit=args.limit, batch_size=args.batch_size,
                           device="cpu", dtype="float32")
    ts = build_tasks(["math500"], prompt_format="question_answer", data_files={"math500": Path(args.data)},
                     generation_kwargs=cfg.generation_kwargs())
    ev = Evaluator(make_lm(cfg, args.model), ts, cfg, model_name="bench")
    ev.evaluate_once((), seed=0)  # warm-up (verifier worker start), counted in setup
    setup = time.perf_counter() - t0
    per_set = []
    for ids in json.loads(args.sets).values():
        t = time.perf_counter()
        ev.run({"s": ids})
        per_set.append(time.perf_counter() - t)
    print(json.dumps({"setup_s": setup, "per_set_s": per_set}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default=str(REPO / "results" / "toy"), help="toy run_dir (world/student)")
    p.add_argument("--sets", type=int, default=10, help="number of suppression sets")
    p.add_argument("--cli-runs", type=int, default=10, help="lm_eval runs actually timed (scaled to --sets)")
    p.add_argument("--limit", type=int, default=16, help="problems per evaluation")
    p.add_argument("--max-gen-toks", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--sets-json", dest="sets_json", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        args.sets = args.sets_json
        inner(args)
        return

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-suppression-") as tmp:
        work = Path(tmp)
        model, data, what = _model_and_data(work, Path(args.run_dir))
        sets = _suppression_sets(model, args.sets)
        print(f"model: {what}; {len(sets)} suppression sets; {args.limit} problems, max_gen_toks "
              f"{args.max_gen_toks}, batch {args.batch_size}, T=1.0, 1 CPU thread", flush=True)

        t, c = time.perf_counter(), _children_cpu()
        proc = subprocess.run([sys.executable, __file__, "--inner", "--model", str(model), "--data", str(data),
                               "--sets-json", json.dumps(sets), "--limit", str(args.limit),
                               "--max-gen-toks", str(args.max_gen_toks), "--batch-size", str(args.batch_size)],
                              env=env, capture_output=True, text=True, check=True)
        ours_total, ours_cpu = time.perf_counter() - t, _children_cpu() - c
        ours = json.loads(proc.stdout.strip().splitlines()[-1])

        from rock.evaluate.benchmarks import local_task_yaml

        local_task_yaml("math500", "question_answer", data, work, name="bench_math500")
        cli = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
               "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu", "--tasks", "bench_math500",
               "--include_path", str(work), "--limit", str(args.limit), "--batch_size", str(args.batch_size),
               "--gen_kwargs", f"do_sample=True,temperature=1.0,top_p=1.0,max_gen_toks={args.max_gen_toks}",
               "--seed", "0"]
        cli_times, cli_cpus = [], []
        for i in range(min(args.cli_runs, len(sets))):
            t, c = time.perf_counter(), _children_cpu()
            subprocess.run(cli, env=env, capture_output=True, text=True, check=True, cwd=work)
            cli_times.append(time.perf_counter() - t)
            cli_cpus.append(_children_cpu() - c)
            print(f"  lm_eval run {i + 1}: {cli_times[-1]:.1f} s wall, {cli_cpus[-1]:.1f} s CPU", flush=True)
    n = len(sets)
    cli_per, cli_cpu_per = sum(cli_times) / len(cli_times), sum(cli_cpus) / len(cli_cpus)
    per_set = sum(ours["per_set_s"]) / len(ours["per_set_s"])
    scaled = "" if len(cli_times) == n else f", scaled to {n}"
    rows = [
        ("lm_eval CLI, one process per set", cli_per * n, cli_cpu_per * n, f"{len(cli_times)} run(s) timed{scaled}"),
        ("rock Evaluator, one process", ours_total, ours_cpu,
         f"setup {ours['setup_s']:.1f} s + {per_set:.2f} s/set (wall)"),
    ]
    print(f"\n{'method':<34} {'wall s':>8} {'CPU s':>8}  notes")
    for name, wall, cpu, note in rows:
        print(f"{name:<34} {wall:>8.1f} {cpu:>8.1f}  {note}")
    print(f"\nratio, {n} sets, wall-clock: {cli_per * n / ours_total:.1f}x   CPU time: "
          f"{cli_cpu_per * n / ours_cpu:.1f}x   (target >= 10x)")
    print(f"ratio, marginal cost of one more set (wall): {cli_per / per_set:.1f}x")
    from protocol import emit

    note = f"{n} sets ({len(cli_times)} lm_eval runs timed), {args.limit} problems, {what}"
    emit("suppression_sets_vs_cli_runs_wall", cli_per * n / ours_total, 10, unit="x", note=note)
    emit("suppression_sets_vs_cli_runs_cpu", cli_cpu_per * n / ours_cpu, 10, unit="x", note=note)


if __name__ == "__main__":
    main()
