"""Benchmark: chunked full-vocabulary reverse KL (rock.distill.losses) against the naive computation.

The naive computation is what KDFlow / the authors' ``reverse_kl_div`` do: ``log_softmax`` of both
full logit matrices in fp32, ``exp``, product, sum, then autograd's backward. The chunked one is
:func:`rock.distill.losses.distill_loss` (custom autograd function, gradient built chunk by chunk
in the logits' dtype). Both run forward + backward (the training case) and forward only (the
token-statistics case, :func:`rock.distill.losses.token_statistics` vs naive) on the same inputs.

Peak memory is the peak *above the inputs* (the two logit matrices, which exist in both cases):
on CPU the process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) minus its RSS
after the inputs are built, each method in a fresh subprocess; on GPU
``torch.cuda.max_memory_allocated`` minus the allocation after the inputs. The gradient w.r.t.
the student logits (one [positions x vocab] tensor in the logits' dtype, returned by
``torch.autograd.grad`` as the lm_head's backward would receive it in a model) is part of both
peaks: it is the function's output. Time is the best of ``--repeats`` runs.

    python benchmarks/bench_kl.py                                 # V = 151,936, 4,096 positions, bf16
    python benchmarks/bench_kl.py --positions 1024 --dtype float32
    python benchmarks/bench_kl.py --device cuda

Targets: peak memory ratio <= 1/8 (issue 3); time ratio <= 1.3 on CPU (issue 3), <= 1.0 on a GPU
(issue 17). The ratios go to ``benchmarks/run_all.py`` through ``protocol.emit``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        fh.write("5")


def naive_reverse_kl(s, t, mask):
    ls = torch.log_softmax(s, -1, dtype=torch.float32)
    lt = torch.log_softmax(t, -1, dtype=torch.float32)
    kl = (ls.exp() * (ls - lt)).sum(-1)
    return (kl * mask).sum() / mask.sum()


def naive_stats(s, t, y):
    """The same six per-position statistics as rock.distill.losses.token_statistics."""
    ls = torch.log_softmax(s, -1, dtype=torch.float32)
    lt = torch.log_softmax(t, -1, dtype=torch.float32)
    ps, pt = ls.exp(), lt.exp()
    lps, lpt = ls.gather(-1, y[:, None])[:, 0], lt.gather(-1, y[:, None])[:, 0]
    return (ps * (ls - lt)).sum(-1), -(ps * ls).sum(-1), -(pt * lt).sum(-1), lps, lpt, lps - lpt


def worker(args) -> dict:
    from rock.distill.losses import LossSpec, distill_loss, token_statistics

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator(device="cpu").manual_seed(0)
    s = (torch.randn(args.positions, args.vocab, generator=g) * 2).to(dev, dtype)
    t = (torch.randn(args.positions, args.vocab, generator=g) * 2).to(dev, dtype)
    y = torch.randint(0, args.vocab, (args.positions,), generator=g).to(dev)
    mask = torch.ones(args.positions, device=dev)
    spec = LossSpec("reverse_kl", chunk_size=args.chunk_size or None)

    def run_once():
        # train: the gradient w.r.t. the logits is returned (torch.autograd.grad), as it is handed
        # on to the lm_head's backward in a model; both methods hold it at their peak
        if args.method == "naive":
            x = s.detach().requires_grad_(args.mode == "train")
            if args.mode == "train":
                loss = naive_reverse_kl(x, t, mask)
                (g,) = torch.autograd.grad(loss, x)
                return float(loss)
            with torch.no_grad():
                return float(naive_stats(x, t, y)[0].mean())
        x = s.detach().requires_grad_(args.mode == "train")
        if args.mode == "train":
            loss, _ = distill_loss(x, t, y, mask, spec)
            (g,) = torch.autograd.grad(loss, x)
            return float(loss)
        return float(token_statistics(x, t, y, chunk_size=args.chunk_size or None)["reverse_kl"].mean())

    times, value = [], None
    peak = 0
    for _ in range(args.repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_kib("VmRSS") * 1024
            _reset_peak()
        t0 = time.perf_counter()
        value = run_once()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
        else:
            peak = max(peak, _rss_kib("VmHWM") * 1024 - base)
        times.append(time.perf_counter() - t0)
    return {"method": args.method, "mode": args.mode, "seconds": min(times), "peak_bytes": peak,
            "value": value}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--positions", type=int, default=4096)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=0, help="positions per chunk; 0 = library default")
    p.add_argument("--modes", nargs="+", default=["train", "forward"], choices=["train", "forward"])
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.method:  # subprocess
        print(json.dumps(worker(args)))
        return 0
    from protocol import emit

    from rock.distill.losses import chunk_rows

    rows = chunk_rows(args.vocab, args.chunk_size or None, args.device)
    print(f"reverse KL over the full vocabulary: V={args.vocab:,}, positions={args.positions:,}, "
          f"logits {args.dtype} on {args.device}, {args.threads} threads, chunk={rows} positions, "
          f"best of {args.repeats}")
    print(f"inputs (not counted below): 2 x {args.positions * args.vocab * (2 if args.dtype == 'bfloat16' else 4) / 2**30:.2f} GiB")
    header = f"| {'mode':<8} | {'method':<8} | {'peak above inputs':>17} | {'time (s)':>9} | {'value':>10} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    results = {}
    for mode in args.modes:
        for method in ("naive", "chunked"):
            cmd = [sys.executable, __file__, "--method", method, "--mode", mode] + \
                [a for a in (argv if argv is not None else sys.argv[1:])]
            out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[(mode, method)] = r
            print(f"| {mode:<8} | {method:<8} | {r['peak_bytes'] / 2**30:>13.2f} GiB | {r['seconds']:>9.2f} "
                  f"| {r['value']:>10.5f} |")
    print()
    print(f"| {'mode':<8} | {'memory ratio (chunked/naive)':>28} | {'time ratio (chunked/naive)':>26} |")
    print(f"|{'-' * 10}|{'-' * 30}|{'-' * 28}|")
    for mode in args.modes:
        n, c = results[(mode, "naive")], results[(mode, "chunked")]
        print(f"| {mode:<8} | {c['peak_bytes'] / max(n['peak_bytes'], 1):>28.3f} | "
              f"{c['seconds'] / n['seconds']:>26.2f} |")
    time_target = 1.0 if args.device.startswith("cuda") else 1.3
    print(f"targets: memory ratio <= 0.125 (1/8), time ratio <= {time_target}")
    note = (f"V={args.vocab:,}, {args.positions:,} positions, {args.dtype} on {args.device}, "
            f"chunk {rows} positions")
    for mode in args.modes:
        n, c = results[(mode, "naive")], results[(mode, "chunked")]
        emit(f"kl_{mode}_peak_memory", c["peak_bytes"] / max(n["peak_bytes"], 1), 0.125,
             direction="<=", unit="x", note=f"chunked / naive peak above the inputs; {note}")
        emit(f"kl_{mode}_time", c["seconds"] / n["seconds"], time_target, direction="<=", unit="x",
             note=f"chunked / naive, best of {args.repeats}; {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
