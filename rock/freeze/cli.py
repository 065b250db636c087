"""``rock freeze train | report``: the validated config's ``freeze`` section, then
:mod:`rock.freeze.train` / :mod:`rock.freeze.report`.

The stage itself is described in :mod:`rock.freeze`.
"""

from __future__ import annotations

import argparse
import json
import logging

from rock import job_files

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["train", "report", "steps"],
                        help="train one regime, report all regimes, or print the evaluated steps")
    parser.add_argument("--config", required=True, help="config YAML (sections freeze, stage2, models, data)")
    parser.add_argument("--regime", help="train: the regime name (config freeze.regimes)")
    parser.add_argument("--run-dir", help="override config run_dir")
    parser.add_argument("--student", help="train: start model (default: the stage-1 model under run_dir)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    job_files.add_arguments(parser)  # train: student= prompts= rocks= ranking= info=; report: evals= logs=
    # counts= control= (rock.freeze.plan.report_files)


def run(args: argparse.Namespace) -> int:
    from rock.config import stage_config
    from rock.errors import ConfigError
    from rock.freeze.config import from_section

    config = stage_config(args)
    if "freeze" not in config:
        raise ConfigError(f"{args.config}: no 'freeze' section (fix: copy it from config.yaml)")
    fcfg = from_section(config["freeze"])
    run_dir = args.run_dir or config["run_dir"]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.action == "steps":
        from rock.freeze.plan import planned_eval_steps, regime_total_steps

        print(json.dumps({"total_steps": regime_total_steps(config),
                          "eval_steps": planned_eval_steps(config), "regimes": fcfg.regime_names}))
        return 0
    if args.action == "train":
        if not args.regime:
            raise ConfigError("rock freeze train: --regime is required "
                              f"(one of {', '.join(fcfg.regime_names)})")
        import os

        from rock.freeze.train import train_regime

        train_regime(config, fcfg, fcfg.regime(args.regime), run_dir=run_dir, student=args.student,
                     source=args.config, rank=int(os.environ.get("RANK", "0")),
                     files=job_files.JobFiles.from_args(args))
        return 0
    from rock.freeze.plan import report_files
    from rock.freeze.runreport import write_report

    given = job_files.JobFiles.from_args(args)
    files = {name: job_files.keyed_paths(given, name, by_key)
             for name, by_key in report_files(config, run_dir).items()}
    write_report(config, fcfg, run_dir=run_dir, files=files)
    return 0
