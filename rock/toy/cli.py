"""``rock toy build``: the toy world from the validated config's ``toy`` section.

The stage itself is described in :mod:`rock.toy`.
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


def settings_from(data: dict, overrides: list[str] = (), path: str | Path = "config") -> dict:
    """What the toy build needs from the validated config ``data`` (read from ``path``): run_dir,
    seed, system prompts and the parsed :class:`~rock.toy.config.ToyConfig` (with ``KEY=VALUE``
    overrides of ``toy:`` keys)."""
    import yaml

    from rock.toy.config import ToyConfig

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

    from rock.config import stage_config

    settings = settings_from(stage_config(args), args.set, args.config)
    seed = settings["seed"] if args.seed is None else args.seed
    out = Path(args.out) if args.out else paths.world_dir(settings["run_dir"])
    info = build_world(out, settings["toy"], seed, settings["system_prompts"])
    log.info("world.json: %s", {k: info[k] for k in ("accuracy_math500", "tokenizer", "parameters")})
    return 0
