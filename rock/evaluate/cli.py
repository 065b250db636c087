"""``rock evaluate`` (usage in :mod:`rock.evaluate`): the validated config's ``evaluation`` section
plus flag overrides, then one :class:`rock.evaluate.runner.Evaluator` per model.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config YAML (uses run_dir, seed, models, evaluation)")
    parser.add_argument("--model", action="append", required=True,
                        help="hub id or local HF model directory; repeat (with --model-name, --table and "
                             "--summary each time) to score several models one after another in one process")
    parser.add_argument("--model-name", action="append", required=True,
                        help="name in the table (teacher, student, stage1, ...)")
    parser.add_argument("--benchmark", action="append", required=True,
                        help="benchmark to evaluate (repeat for several): math500 ifeval aime24 aime25 hmmt25")
    parser.add_argument("--table", action="append", required=True,
                        help="output per-problem parquet; with {bench} in the path, one file per benchmark")
    parser.add_argument("--summary", action="append", required=True,
                        help="output summary json; with {bench} in the path, one file per benchmark")
    parser.add_argument("--suppress-sets", help='json {"set_id": [token ids], ...}; default {"none": []}')
    parser.add_argument("--run-dir", help="override config run_dir (local benchmark files live under it)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    over = parser.add_argument_group("overrides of the config's evaluation section")
    over.add_argument("--backend", choices=["hf", "vllm"])
    over.add_argument("--prompt-format", choices=["question_answer", "chat_boxed"])
    over.add_argument("--dataset-source", choices=["hub", "local"])
    over.add_argument("--n-runs", type=int)
    over.add_argument("--temperature", type=float)
    over.add_argument("--max-gen-toks", type=int)
    over.add_argument("--limit", type=int)
    over.add_argument("--device")


def load_suppression_sets(path: str | None) -> dict[str, list[int]]:
    """Read ``{"set_id": [ids]}``; ids are checked against the model's vocabulary later."""
    from rock.errors import DataError
    from rock.evaluate.runner import BASELINE_SET

    if not path:
        return {BASELINE_SET: []}
    try:
        sets = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise DataError("suppression-set file not found", file=path) from err
    except json.JSONDecodeError as err:
        raise DataError(f"not valid json ({err.msg})", file=path, line=err.lineno) from err
    if not isinstance(sets, dict) or not all(isinstance(v, list) for v in sets.values()):
        raise DataError('expected an object {"set_id": [token ids], ...}', file=path,
                        fix='e.g. {"none": [], "rock_17": [1723]}')
    return {str(k): v for k, v in sets.items()}


BENCH_PLACEHOLDER = "{bench}"


def split_outputs(table_path: str, summary_path: str, table, summary: dict):
    """Where the table and summary go: ``[(table_path, summary_path, table, summary)]``.

    Without ``{bench}`` in the paths, one table and one summary for every benchmark; with it (in
    both paths), one pair per benchmark, each holding that benchmark's rows and Pass@1 (the
    workflow's layout ``eval/<model>/<bench>/``, written by one job per model so that the model is
    loaded once).
    """
    from rock.errors import ConfigError

    split = [BENCH_PLACEHOLDER in p for p in (table_path, summary_path)]
    if not any(split):
        return [(table_path, summary_path, table, summary)]
    if not all(split):
        raise ConfigError(f"--table and --summary must both contain {BENCH_PLACEHOLDER} or neither "
                          f"(got {table_path!r}, {summary_path!r})")
    return [(table_path.replace(BENCH_PLACEHOLDER, bench), summary_path.replace(BENCH_PLACEHOLDER, bench),
             table[table["task"] == bench].reset_index(drop=True),
             {"pass_at_1": {bench: by_set}, "provenance": summary["provenance"]})
            for bench, by_set in summary["pass_at_1"].items()]


def _one_process_per_model(args: argparse.Namespace, jobs: list[tuple[str, str, str, str]]) -> int:
    """vLLM: each model in a child process of its own, one after another. Deleting a vLLM engine
    does not reliably hand its GPU memory back (vllm#32714, NeMo-RL#223 with TP > 1), while a
    process that exits does; the hf backend keeps every model in one process."""
    import multiprocessing

    from rock.errors import RockError

    ctx = multiprocessing.get_context("spawn")
    for model, model_name, table, summary in jobs:
        one = argparse.Namespace(**{**vars(args), "model": [model], "model_name": [model_name],
                                    "table": [table], "summary": [summary]})
        child = ctx.Process(target=_run_child, args=(one,), name=f"evaluate-{model_name}")
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RockError(f"evaluation of {model_name} ({model}) failed in its process "
                            f"(exit code {child.exitcode}; see the log above)")
    return 0


def _run_child(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(run(args))


def run(args: argparse.Namespace) -> int:
    from rock import paths
    from rock.atomic import atomic_path, write_json
    from rock.config import stage_config
    from rock.errors import ConfigError
    from rock.evaluate.benchmarks import build_tasks
    from rock.evaluate.config import check_benchmarks, from_section
    from rock.evaluate.models import make_lm
    from rock.evaluate.runner import Evaluator, provenance, summarise

    config = stage_config(args)  # schema-validated: names file and key path on error
    cfg = from_section(config["evaluation"], seed=config["seed"],
                       enable_thinking=config["models"]["enable_thinking"],
                       backend=args.backend, prompt_format=args.prompt_format,
                       dataset_source=args.dataset_source, n_runs=args.n_runs, temperature=args.temperature,
                       max_gen_toks=args.max_gen_toks, limit=args.limit, device=args.device)
    benchmarks = check_benchmarks(args.benchmark)
    run_dir = args.run_dir or config.get("run_dir")
    if cfg.dataset_source == "local" and not run_dir:
        raise ConfigError(f"{args.config}: dataset_source 'local' needs run_dir")
    data_files = ({b: paths.benchmark(run_dir, b) for b in benchmarks}
                  if cfg.dataset_source == "local" else {})
    sets = load_suppression_sets(args.suppress_sets)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    if len({len(args.model), len(args.model_name), len(args.table), len(args.summary)}) != 1:
        raise ConfigError("give --model, --model-name, --table and --summary the same number of times "
                          f"(got {len(args.model)}, {len(args.model_name)}, {len(args.table)}, {len(args.summary)})")
    jobs = list(zip(args.model, args.model_name, args.table, args.summary))
    if cfg.backend == "vllm" and len(jobs) > 1:
        return _one_process_per_model(args, jobs)
    taskset = build_tasks(benchmarks, prompt_format=cfg.prompt_format, data_files=data_files,
                          generation_kwargs=cfg.generation_kwargs())
    for model, model_name, table_out, summary_out in jobs:  # tasks built once, one model at a time
        log.info("evaluating %s (%s) on %s with %s", model_name, model, benchmarks, cfg)
        lm = make_lm(cfg, model)
        table = Evaluator(lm, taskset, cfg, model_name=model_name).run(sets)
        del lm
        prov = provenance(cfg, taskset, model=model, model_name=model_name, suppression_sets=sets,
                          data_files={k: str(v) for k, v in data_files.items()})
        summary = {"pass_at_1": summarise(table), "provenance": prov}
        for table_path, summary_path, part, part_summary in split_outputs(table_out, summary_out, table, summary):
            with atomic_path(table_path) as tmp:
                part.to_parquet(tmp, index=False)
            write_json(summary_path, part_summary)
        for task, by_set in summary["pass_at_1"].items():
            for sid, s in by_set.items():
                log.info("%s %s [%s]: Pass@1 %.4f over %d runs %s", model_name, task, sid, s["pass_at_1"],
                         s["n_runs"], [round(v, 4) for v in s["pass_at_1_per_run"]])
    return 0
