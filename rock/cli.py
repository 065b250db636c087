"""The ``rock`` command line: one subcommand per paper stage.

    rock toy build --out results/toy/world --seed 0
    rock data ...
    rock <stage> --help

Only the chosen stage's module is imported, so ``rock --help`` stays fast and a stage that needs
GPU-only libraries never slows down the others. A stage module provides

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int

Errors derived from :class:`rock.errors.RockError` are printed as one clear line (file, field, fix)
and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# stage name -> (module, one-line help). Order follows the paper's pipeline (DESIGN.md).
STAGES: dict[str, tuple[str, str]] = {
    "toy": ("rock.toy", "build the embedded toy world (tokenizer, teacher, student, datasets)"),
    "download": ("rock.download", "hub models into HF_HOME on the submit host (offline compute nodes)"),
    "data": ("rock.data", "slice the prompt pool and materialize benchmarks as jsonl [5.1, C]"),
    "distill": ("rock.distill", "teacher sampling, stage-1 off-policy KD, stage-2 on-policy KD [5.1, C]"),
    "evaluate": ("rock.evaluate", "lm-eval evaluation with token suppression and Pass@1 [5.2, D.3]"),
    "stats": ("rock.stats", "per-token-occurrence statistics of trajectories [2.1, 2.3]"),
    "detect": ("rock.detect", "Rock Token detection, cutoff/stability, clusters [2.2-2.5, B, E]"),
    "geometry": ("rock.geometry", "gradient geometry and persistence [2.6]"),
    "knockout": ("rock.knockout", "inference-time knockout and its statistics [3, D]"),
    "freeze": ("rock.freeze", "freeze-training regimes and masks [4]"),
    "report": ("rock.report", "expected tables, claim check and report [all]"),
    "launch": ("rock.launch", "torchrun a training stage on one node or, through srun, on several"),
    "gpus": ("rock.gpu_slots", "run a command on GPUs of its own (CUDA_VISIBLE_DEVICES, file locks)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rock",
        description="rock-repro: the Rock Tokens paper (arXiv 2605.09253) as one pipeline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stages:\n" + "\n".join(f"  {k:<10} {h}" for k, (_, h) in STAGES.items()),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("stage", choices=list(STAGES), help="pipeline stage to run")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # Split "rock [-v] <stage> rest..." without importing every stage.
    head = []
    while argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        head.append(argv.pop(0))
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    ns = top.parse_args(head + argv[:1])
    stage, rest = ns.stage, argv[1:]
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(STAGES[stage][0])
    parser = argparse.ArgumentParser(prog=f"rock {stage}", description=STAGES[stage][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)

    from rock.errors import RockError

    try:
        return int(module.run(args) or 0)
    except RockError as err:
        print(f"rock {stage}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
