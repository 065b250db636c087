"""``rock toy``: the embedded toy world (DESIGN.md, "The toy world").

    rock toy build --config tests/config_toy/config.yaml
    rock toy build --config tests/config_toy/config.yaml --out /tmp/world --seed 1 \\
        --set teacher.steps=5 --set student.steps=5 --set eval.min_margin=-1

builds, on CPU and offline, a byte-level BPE tokenizer with a ChatML template, a small
Qwen3ForCausalLM teacher and a smaller student pretrained on synthetic multi-step arithmetic in two
styles (plus toy instruction following), and the datasets the pipeline reads, in the real formats.
It reads ``run_dir``, ``seed``, ``models.teacher_system_prompts`` and the ``toy:`` section
(:class:`rock.toy.config.ToyConfig`) of the config file; ``--out`` defaults to
``rock.paths.world_dir(run_dir)``. Modules:

- :mod:`rock.toy.problems`: arithmetic problems and the teacher/student solution styles
- :mod:`rock.toy.instructions`: toy IFEval instructions (real lm-eval ids) and responses
- :mod:`rock.toy.corpus`: the two pretraining mixtures (hidden system message for the teacher)
- :mod:`rock.toy.tokenizer`: byte-level BPE + chat template in Hugging Face format
- :mod:`rock.toy.models`: Qwen3 configs and the pretraining loop
- :mod:`rock.toy.benchmarks`: OpenThoughts3/MATH-500/IFEval/AIME/HMMT rows
- :mod:`rock.toy.accuracy`: greedy accuracy check on toy MATH-500
- :mod:`rock.toy.build`: the orchestration
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rock.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build tokenizer, teacher, student, datasets, world.json")
    build.add_argument("--config", required=True,
                       help="config YAML (run_dir, seed, models.teacher_system_prompts, toy:)")
    build.add_argument("--out", default=None,
                       help="world directory (default: rock.paths.world_dir(run_dir))")
    build.add_argument("--seed", type=int, default=None, help="override the config's seed")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a toy: key, e.g. teacher.steps=5 (value parsed as YAML)")


def load_settings(config_file: str | Path, overrides: list[str] = ()) -> dict:
    """Read what the toy build needs from the validated ``config_file``: run_dir, seed, system
    prompts and the parsed :class:`~rock.toy.config.ToyConfig` (with ``KEY=VALUE`` overrides of
    ``toy:`` keys)."""
    import yaml

    from rock.config import load_config
    from rock.toy.config import ToyConfig

    path = Path(config_file)
    data = load_config(path)
    prompts = data["models"]["teacher_system_prompts"]
    section = dict(data.get("toy") or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. teacher.steps=5")
        node = section
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: toy.{part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    try:
        cfg = ToyConfig.from_dict(section)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return {"run_dir": data["run_dir"], "seed": data["seed"], "system_prompts": prompts,
            "toy": cfg}


def run(args: argparse.Namespace) -> int:
    from rock import paths
    from rock.toy.build import build_world

    settings = load_settings(args.config, args.set)
    seed = settings["seed"] if args.seed is None else args.seed
    out = Path(args.out) if args.out else paths.world_dir(settings["run_dir"])
    info = build_world(out, settings["toy"], seed, settings["system_prompts"])
    log.info("world.json: %s", {k: info[k] for k in ("accuracy_math500", "tokenizer", "parameters")})
    return 0
