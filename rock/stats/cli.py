"""``rock stats decode | score | hidden``: reads the validated config, runs :mod:`rock.stats.core`,
writes the artifacts of :mod:`rock.paths` [Sec. 2.1, 2.3]."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from rock import paths
from rock.atomic import atomic_path, write_jsonl
from rock.errors import ConfigError, DataError
from rock.stats.core import (StatsConfig, build_trajectory_prompts, decode, detection_problems,
                             hidden_states, load_models, make_generator, read_trajectories,
                             resolve_checkpoint, score)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("decode", "score", "hidden"))
    parser.add_argument("--config", required=True, help="config YAML (run_dir, models, stats)")
    parser.add_argument("--checkpoint", help="score/hidden: checkpoint name of stats.checkpoints (pre, post, ...)")
    parser.add_argument("--run-dir", default=None, help="override the config's run_dir")
    parser.add_argument("--benchmark", default=None, help="decode: detection-set jsonl (default: data stage file)")
    parser.add_argument("--trajectories", default=None,
                        help="score/hidden: trajectories jsonl (default: rock.paths.trajectories)")
    parser.add_argument("--out", default=None, help="output file (default: the rock.paths artifact)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _load(args):
    from rock.config import stage_config

    config = stage_config(args)
    return config, args.run_dir or config["run_dir"], StatsConfig.from_dict(config["stats"]), dict(config["models"])


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config, run_dir, cfg, models = _load(args)
    torch.manual_seed(cfg.seed)
    if args.action == "decode":
        return _decode(args, config, run_dir, cfg, models)
    if not args.checkpoint:
        raise ConfigError(f"rock stats {args.action} needs --checkpoint NAME (one of stats.checkpoints)")
    if args.checkpoint not in cfg.checkpoints:
        raise ConfigError(f"--checkpoint {args.checkpoint}: not in stats.checkpoints {sorted(cfg.checkpoints)}")
    student_path = resolve_checkpoint(cfg.checkpoints[args.checkpoint], run_dir, models)
    trajectories = read_trajectories(args.trajectories or paths.trajectories(run_dir))
    if args.action == "hidden":
        from rock.distill.trainer import load_causal_lm, make_runtime

        runtime = make_runtime(cfg.device, models["dtype"], env={})
        student = load_causal_lm(student_path, runtime, trainable=False)
        hidden = hidden_states(student, trajectories, dim=cfg.hidden_dim, seed=cfg.seed, device=runtime.device)
        out = args.out or paths.hidden_states(run_dir, args.checkpoint)
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, hidden)
        log.info("%s: hidden states %s", args.checkpoint, hidden.shape)
        return 0
    teacher_path = str(models["teacher"])
    if not teacher_path:
        raise ConfigError(f"{args.config}: models.teacher missing")
    student, teacher, _, vocab, runtime = load_models(student_path, teacher_path, models, cfg)
    log.info("scoring %d trajectories with %s (%s) against %s", len(trajectories), args.checkpoint,
             student_path, teacher_path)
    table = score(student, teacher, trajectories, checkpoint=args.checkpoint, vocab=vocab,
                  chunk_size=cfg.chunk_size, device=runtime.device)
    with atomic_path(args.out or paths.token_stats(run_dir, args.checkpoint)) as tmp:
        table.to_parquet(tmp, index=False)
    log.info("%s: %d token rows, mean reverse KL %.4f, mean l_t %.4f", args.checkpoint, len(table),
             table["reverse_kl"].mean(), table["log_ratio"].mean())
    return 0


def _decode(args, config, run_dir, cfg: StatsConfig, models: dict) -> int:
    from transformers import AutoTokenizer

    from rock.data import read_jsonl

    bench = Path(args.benchmark) if args.benchmark else paths.benchmark(run_dir, cfg.dataset)
    if not bench.is_file():
        raise DataError("detection set not found", file=str(bench), fix="run rock data for this benchmark")
    rows = [row for _, row in read_jsonl(bench)]
    problems = detection_problems(rows, cfg, file=str(bench))
    model_path = resolve_checkpoint(cfg.checkpoints[cfg.decode_checkpoint], run_dir, models)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompts = build_trajectory_prompts(problems, tokenizer, cfg, enable_thinking=models["enable_thinking"],
                                       system_prompts=list(models["teacher_system_prompts"]),
                                       seed=int(config["seed"]))
    generator = make_generator(model_path, tokenizer, cfg, models)
    out = decode(prompts, generator, cfg, tokenizer)
    for r in out:
        r["decoded_with"] = f"{cfg.decode_checkpoint}:{model_path}"
    write_jsonl(args.out or paths.trajectories(run_dir), out)
    n_tok = sum(len(r["response_ids"]) for r in out)
    trunc = sum(r["finish_reason"] == "length" for r in out)
    log.info("decoded %d trajectories (%d tokens, %d hit max_new_tokens=%d) with %s", len(out), n_tok, trunc,
             cfg.max_new_tokens, model_path)
    return 0
