"""``rock data prompts | benchmark | all``: sources from flags or the validated config, then
:mod:`rock.data.core` (the stage itself is described in :mod:`rock.data`)."""

from __future__ import annotations

import argparse
import logging
import sys

from rock import paths
from rock.data.core import PoolConfig, Source, make_benchmark, make_prompts
from rock.errors import ConfigError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# CLI edge: `rock data prompts|benchmark|all`
# ------------------------------------------------------------------------------------------------

def _add_source_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--hub", metavar="ID", help="hub dataset id (datasets.load_dataset)")
    src.add_argument("--jsonl", metavar="PATH", help="local jsonl file in the hub's field names")
    p.add_argument("--split", help="hub split (default: from --config, else train)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # the usage examples of the stage docstring (rock.data, always imported before this module)
    parser.epilog = sys.modules["rock.data"].__doc__.split("Run it as::")[1]
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prompts", help="slice the prompt pool into prompts_stage{1,2}.jsonl")
    p.add_argument("--config", help="config file: fills every option not given (data section)")
    p.add_argument("--run-dir", help="output root (default: run_dir of --config)")
    p.add_argument("--out1", help="stage-1 output (default: <run-dir>/data/prompts_stage1.jsonl)")
    p.add_argument("--out2", help="stage-2 output (default: <run-dir>/data/prompts_stage2.jsonl)")
    _add_source_args(p)
    p.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=None,
                   help="stream the hub pool (default: data.prompt_pool.streaming, else off)")
    p.add_argument("--prompt-field", help="conversation field (default conversations)")
    p.add_argument("--domain-field", help="domain field (default domain; '' keeps every row)")
    p.add_argument("--domain", help="kept domain (default math)")
    p.add_argument("--stage1", nargs=2, type=int, metavar=("START", "END"))
    p.add_argument("--stage2", nargs=2, type=int, metavar=("START", "END"))

    b = sub.add_parser("benchmark", help="materialize one benchmark as data/<name>.jsonl")
    b.add_argument("name", choices=paths.BENCHMARKS)
    b.add_argument("--config", help="config file: fills every option not given (data section)")
    b.add_argument("--run-dir", help="output root (default: run_dir of --config)")
    b.add_argument("--out", help="output file (default: <run-dir>/data/<name>.jsonl)")
    _add_source_args(b)

    a = sub.add_parser("all", help="prompts and every benchmark of data.benchmarks of a config")
    a.add_argument("--config", required=True)


def _require(value, option: str):
    if value is None:
        raise ConfigError(f"{option} is required (or give --config FILE)")
    return value


def pool_from_args(args: argparse.Namespace, cfg: dict | None) -> tuple[PoolConfig, str | None]:
    """Build the :class:`PoolConfig` and run_dir (None if not given) from flags, falling back on
    ``cfg``."""
    data = (cfg or {}).get("data", {})
    pool = data.get("prompt_pool", {})
    run_dir = args.run_dir or (cfg or {}).get("run_dir")
    hub, jsonl = args.hub, args.jsonl
    if hub is None and jsonl is None and cfg is not None:
        if data["source"] == "toy":
            jsonl = str(paths.world_raw(run_dir, "openthoughts"))
        else:
            hub = pool["dataset"]
    streaming = args.streaming if args.streaming is not None else pool.get("streaming", False)
    source = Source(hub=hub, jsonl=jsonl, split=args.split or pool.get("split", "train"),
                    streaming=bool(streaming and hub is not None))
    domain_field = args.domain_field if args.domain_field is not None else \
        pool.get("domain_field", "domain")
    domain = args.domain if args.domain is not None else pool.get("domain", "math")
    if domain_field == "":
        domain_field, domain = None, None
    pool_cfg = PoolConfig(
        source=source,
        stage1=_require(args.stage1 or data.get("stage1_slice"), "--stage1"),
        stage2=_require(args.stage2 or data.get("stage2_slice"), "--stage2"),
        prompt_field=args.prompt_field or pool.get("prompt_field", "conversations"),
        domain_field=domain_field, domain=domain)
    return pool_cfg, run_dir


def benchmark_source(name: str, cfg: dict | None, run_dir: str, *, hub: str | None = None,
                     jsonl: str | None = None, split: str | None = None) -> Source:
    """The source of benchmark ``name``: flags first, else the config's data section."""
    entry = (cfg or {}).get("data", {}).get("benchmarks", {}).get(name, {})
    if hub is None and jsonl is None and cfg is not None:
        if cfg["data"]["source"] == "toy":
            jsonl = str(paths.world_raw(run_dir, name))
        elif entry:
            hub = entry["dataset"]
        else:
            raise ConfigError(f"data.benchmarks has no entry '{name}'")
    return Source(hub=hub, jsonl=jsonl, split=split or entry.get("split", "train"))


def run(args: argparse.Namespace) -> int:
    from rock.config import stage_config

    cfg = stage_config(args)
    if args.command == "prompts":
        pool_cfg, run_dir = pool_from_args(args, cfg)
        if args.out1 is None or args.out2 is None:
            run_dir = _require(run_dir, "--run-dir or --out1/--out2")
        make_prompts(pool_cfg, {1: args.out1 or paths.prompts(run_dir, 1),
                                2: args.out2 or paths.prompts(run_dir, 2)})
    elif args.command == "benchmark":
        run_dir = args.run_dir or (cfg or {}).get("run_dir")
        if args.out is None:
            run_dir = _require(run_dir, "--run-dir or --out")
        source = benchmark_source(args.name, cfg, run_dir, hub=args.hub, jsonl=args.jsonl,
                                  split=args.split)
        make_benchmark(args.name, source, args.out or paths.benchmark(run_dir, args.name))
    else:  # all
        none = argparse.Namespace(run_dir=None, hub=None, jsonl=None, split=None, streaming=None,
                                  prompt_field=None, domain_field=None, domain=None, stage1=None,
                                  stage2=None)
        pool_cfg, run_dir = pool_from_args(none, cfg)
        make_prompts(pool_cfg, {stage: paths.prompts(run_dir, stage) for stage in (1, 2)})
        for name in cfg["data"]["benchmarks"]:
            make_benchmark(name, benchmark_source(name, cfg, run_dir),
                           paths.benchmark(run_dir, name))
    return 0
