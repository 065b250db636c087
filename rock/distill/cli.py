"""``rock distill teacher-samples | stage1 | stage2``: the validated config's stage section plus flag
overrides, then :mod:`rock.distill.stage1` / :mod:`rock.distill.stage2` / teacher sampling.

The stage itself is described in :mod:`rock.distill`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from rock import paths
from rock.errors import ConfigError

log = logging.getLogger(__name__)

SUBCOMMANDS = ("teacher-samples", "stage1", "stage2")


def _config_classes():
    from rock.distill.config import Stage1Config, Stage2Config, TeacherSamplesConfig

    return {"teacher-samples": ("teacher_samples", TeacherSamplesConfig),
            "stage1": ("stage1", Stage1Config), "stage2": ("stage2", Stage2Config)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    helps = {"teacher-samples": "teacher answers to the stage-1 prompts [C]",
             "stage1": "off-policy KD on teacher samples [5.1, C]",
             "stage2": "on-policy KD on student rollouts [5.1, C]"}
    for name, (section, cls) in _config_classes().items():
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        p.add_argument("--config", required=True, help="config.yaml (paper) or tests/config_toy/config.yaml")
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (the rule's threads); default: torch's own choice")
        p.add_argument("--run-dir", help="override the config's run_dir")
        p.add_argument("--teacher", help="teacher model (default: models.teacher)")
        if name == "teacher-samples":
            p.add_argument("--prompts", help="prompts jsonl (default: data/prompts_stage1.jsonl)")
            p.add_argument("--out", help="output jsonl (default: distill/teacher_samples.jsonl)")
            p.add_argument("--summary", help="counts and timing (default: distill/teacher_samples.summary.json)")
        else:
            p.add_argument("--student", help="student to start from (stage1: models.student; "
                                             "stage2: the stage-1 model)")
            p.add_argument("--out-dir", help=f"run directory (default: distill/{section})")
            if name == "stage1":
                p.add_argument("--samples", help="teacher samples (default: distill/teacher_samples.jsonl)")
            else:
                p.add_argument("--prompts", help="prompts jsonl (default: data/prompts_stage2.jsonl)")
        group = p.add_argument_group(f"{section} overrides (config section '{section}')")
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if isinstance(default, list) or f.name == "seed":
                continue
            kind = _bool if isinstance(default, bool) else type(default)
            group.add_argument(_flag(f.name), dest=f"override_{f.name}", type=kind, default=None,
                               metavar=type(default).__name__.upper())


def configs_from(args: argparse.Namespace, data: dict):
    """``(run_dir, models, stage_cfg)`` from the validated config plus command-line overrides."""
    from rock.config import from_dict
    from rock.distill.config import ModelsConfig

    section, cls = _config_classes()[args.command]
    models = from_dict(ModelsConfig, data["models"], "models")
    overrides = {k[len("override_"):]: v for k, v in vars(args).items()
                 if k.startswith("override_") and v is not None}
    extra = {"seed": int(data["seed"])} if "seed" in {f.name for f in dataclasses.fields(cls)} else {}
    cfg = from_dict(cls, {**data[section], **overrides}, section, **extra)
    return Path(args.run_dir or data["run_dir"]), models, cfg


def run(args: argparse.Namespace) -> int:
    if args.threads:
        import os

        import torch

        # under torchrun the job's threads are shared by the ranks of this node
        torch.set_num_threads(max(1, args.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    from rock.config import stage_config

    data = stage_config(args)
    run_dir, models, cfg = configs_from(args, data)
    teacher = args.teacher or models.teacher
    if not teacher:
        raise ConfigError(f"{args.config}: models.teacher is empty; give a hub id or model directory")
    if args.command == "teacher-samples":
        return _teacher_samples(args, cfg, models, run_dir, teacher, seed=int(data["seed"]))
    if args.command == "stage1":
        from rock.distill.stage1 import run_stage1

        student = args.student or models.student
        run_stage1(cfg, models, samples_path=args.samples or paths.teacher_samples(run_dir),
                   student=str(student), teacher=str(teacher),
                   out_dir=args.out_dir or paths.stage_dir(run_dir, 1))
        return 0
    from rock.distill.stage2 import run_stage2

    student = args.student or paths.stage_model(run_dir, 1)
    run_stage2(cfg, models, prompts_path=args.prompts or paths.prompts(run_dir, 2),
               student=str(student), teacher=str(teacher), out_dir=args.out_dir or paths.stage_dir(run_dir, 2))
    return 0


def _teacher_samples(args, cfg, models, run_dir: Path, teacher: str, *, seed: int) -> int:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from rock.atomic import write_json
    from rock.distill.sampling import HfGenerator, read_prompts, sample_teacher, stop_token_ids
    from rock.distill.vllm_generator import VllmGenerator
    from rock.distill.trainer import load_causal_lm, make_runtime

    out = Path(args.out or paths.teacher_samples(run_dir))
    rows = read_prompts(args.prompts or paths.prompts(run_dir, 1))
    tok = AutoTokenizer.from_pretrained(teacher)
    stops = stop_token_ids(tok, AutoConfig.from_pretrained(teacher))
    if cfg.backend == "vllm":
        gen = VllmGenerator(teacher, tensor_parallel_size=cfg.tensor_parallel_size, seed=seed,
                            dtype=models.dtype, gpu_memory_utilization=cfg.gpu_memory_utilization,
                            stop_ids=stops)
    else:
        torch.manual_seed(seed)
        rt = make_runtime(cfg.device, models.dtype)
        model = load_causal_lm(teacher, rt, trainable=False)
        gen = HfGenerator(model, tok, batch_size=cfg.batch_size, stop_ids=stops, show_progress=True,
                          vocab_limit=len(tok))  # padding rows past the tokenizer cannot be decoded
    summary = sample_teacher(rows, tok, gen, out_path=out, temperature=cfg.temperature, top_p=cfg.top_p,
                             max_new_tokens=cfg.max_new_tokens, seed=seed,
                             system_prompts=models.teacher_system_prompts,
                             enable_thinking=models.enable_thinking, max_prompt_len=cfg.max_prompt_len,
                             shard_size=cfg.shard_size)
    summary_path = args.summary or paths.teacher_samples_summary(run_dir)
    write_json(summary_path, {**summary, "config": dataclasses.asdict(cfg), "teacher": teacher})
    return 0

