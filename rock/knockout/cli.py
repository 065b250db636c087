"""I/O edge of ``rock knockout``: parse flags and config, read inputs, write outputs atomically.

See :mod:`rock.knockout` for the four subcommands. Library code below this layer gets dataclasses
and dataframes, never the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd

from rock.atomic import atomic_path, save_figure, write_json, write_text
from rock.errors import ConfigError, DataError, OutputError
from rock.knockout import config as kconfig
from rock.knockout.pool import BASELINE_ID

log = logging.getLogger(__name__)

PLAN_VERSION = 1


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pool", help="screening pool, window sets and the shard plan [D.3]")
    _config_args(p)
    p.add_argument("--candidates", required=True, help="detection's ranked candidate table (parquet/csv)")
    p.add_argument("--windows", required=True, help="detection's window table W(v) (parquet/csv)")
    p.add_argument("--tokens", help="post-OPD token statistics of the detection trajectories "
                   "(rock stats: trajectory, position, token_id, reverse_kl, entropies): window "
                   "contents and the Table 1 predictors")
    p.add_argument("--tokens-pre", help="pre-OPD token statistics of the same trajectories "
                   "(pre-OPD KL and student entropy for Table 1)")
    p.add_argument("--model", required=True, help="the post-OPD student (HF dir or hub id): its "
                   "stop, pad, special and chat-template tokens never enter the pool; its "
                   "tokenizer decodes the window-set table")
    p.add_argument("--pool-out", required=True, help="screening pool (parquet)")
    p.add_argument("--sets-out", help="window sets: size and decoded members per candidate (csv); "
                   "default: window_sets.csv next to --pool-out")
    p.add_argument("--plan-out", required=True, help="plan (json)")

    p = sub.add_parser("shard", help="decode one shard of the plan (one model load)")
    _config_args(p)
    p.add_argument("--plan", required=True)
    p.add_argument("--shard", required=True, type=int)
    p.add_argument("--model", required=True, help="post-OPD student: hub id or HF directory")
    p.add_argument("--benchmark-files", required=True, nargs="+",
                   help="local benchmark jsonl of every knockout task, named <task>.jsonl (rock data)")
    p.add_argument("--out", required=True, help="per-problem table of the shard (parquet)")
    p.add_argument("--threads", type=int, help="torch CPU threads (the rule's threads)")

    p = sub.add_parser("gather", help="combine the shard tables, check the plan is complete")
    p.add_argument("--plan", required=True)
    p.add_argument("--shards", required=True, nargs="+")
    p.add_argument("--out", required=True, help="gathered per-problem table (parquet)")

    p = sub.add_parser("analyze", help="Delta, bootstrap, Eq. 22 census, D.2, Table 1, Figures 4/6")
    _config_args(p)
    p.add_argument("--pool", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--per-problem", required=True)
    p.add_argument("--out-dir", required=True)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="config file; its 'knockout' section is used")
    p.add_argument("--n-shards", type=int, help="override knockout.n_shards")
    p.add_argument("--n-resamples", type=int, help="override knockout.n_resamples")


def _knockout_config(args) -> kconfig.KnockoutConfig:
    from rock.config import stage_config

    return kconfig.from_config(stage_config(args), {"n_shards": args.n_shards,
                                                    "n_resamples": args.n_resamples},
                               source=str(args.config))


def run(args: argparse.Namespace) -> int:
    return {"pool": cmd_pool, "shard": cmd_shard, "gather": cmd_gather,
            "analyze": cmd_analyze}[args.command](args)


# --------------------------------------------------------------------------------------------
# table I/O
# --------------------------------------------------------------------------------------------

def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path), fix="run the stage that writes it first")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=path.suffix == ".jsonl")
    return pd.read_parquet(path)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_plan(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError("plan not found", file=str(path), fix="run 'rock knockout pool' first")
    plan = json.loads(path.read_text())
    if plan.get("version") != PLAN_VERSION:
        raise DataError(f"plan version {plan.get('version')} != {PLAN_VERSION}", file=str(path),
                        field="version", fix="rebuild the plan with 'rock knockout pool'")
    return plan


def plan_frames(plan: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(plan["sets"]), pd.DataFrame(plan["mapping"])


# --------------------------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------------------------

def _read_tokens(path: str | None) -> pd.DataFrame | None:
    """A token-statistics table with only the columns the knockout uses."""
    if not path:
        return None
    from rock.knockout.pool import TOKEN_COLUMNS, TOKEN_PREDICTORS

    if not str(path).endswith(".parquet"):
        return read_table(path)
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise DataError("file not found", file=str(path), fix="run rock stats score first")
    have = set(pq.read_schema(path).names)
    want = [c for c in (*TOKEN_COLUMNS, *{c for _, c in TOKEN_PREDICTORS}) if c in have]
    return pd.read_parquet(path, columns=want)


def cmd_pool(args) -> int:
    from rock.knockout import pool as kpool
    from rock.knockout.specials import load_excluded_ids

    cfg = _knockout_config(args)
    cands = read_table(args.candidates)
    excluded, tokenizer = load_excluded_ids(args.model)
    pool = kpool.screening_pool(cands, exclude=excluded, source=args.candidates)
    post, pre = _read_tokens(args.tokens), _read_tokens(args.tokens_pre)
    if "window" in cfg.levels:
        pool = pool.merge(_window_sets(args, cfg, pool, post), on="token_id", how="left")
    preds = kpool.type_predictors(pool["token_id"], post, pre)
    pool = pool.drop(columns=[c for c in preds.columns if c != "token_id" and c in pool.columns])
    pool = pool.merge(preds, on="token_id", how="left")
    sets, mapping = kpool.build_plan(pool, levels=cfg.levels, n_shards=cfg.n_shards)
    plan = {"version": PLAN_VERSION, "baseline_id": BASELINE_ID, "tasks": cfg.tasks,
            "seeds": cfg.seeds, "n_shards": cfg.n_shards, "config": dataclasses.asdict(cfg),
            "excluded_token_ids": {str(k): v for k, v in sorted(excluded.items())},
            "sets": sets.to_dict(orient="records"), "mapping": mapping.to_dict(orient="records")}
    write_parquet(pool, args.pool_out)
    if "window_set" in pool.columns:
        table = kpool.window_set_table(pool, lambda i: tokenizer.decode([i]))
        write_csv(table, args.sets_out or Path(args.pool_out).with_name("window_sets.csv"))
    write_json(args.plan_out, json.loads(json.dumps(plan, default=int)))
    log.info("pool: %d candidates; plan: %d suppression sets (%d token, %d window, 1 baseline) over "
             "%d shards; %d tasks x %d runs each", len(pool), len(sets),
             int((sets["kind"] == "token").sum()), int((sets["kind"] == "window").sum()),
             cfg.n_shards, len(cfg.tasks), cfg.n_runs)
    return 0


def _window_sets(args, cfg: kconfig.KnockoutConfig, pool: pd.DataFrame, post) -> pd.DataFrame:
    """S_W(v) of every pool candidate (Eq. 21, :func:`rock.knockout.pool.window_sets`)."""
    from rock.knockout import pool as kpool

    windows = read_table(args.windows)
    if cfg.window_rule == "any_occurrence" and "token_ids" not in windows.columns and post is None:
        raise DataError("the window table has no token_ids column", file=args.windows,
                        field="token_ids", fix="pass --tokens with the token statistics")
    core = pool.loc[pool["in_core"], "token_id"]
    members = pool["token_id"] if cfg.window_members == "pool" else core
    return kpool.window_sets(pool, windows, post, members=members.tolist(),
                             min_share=cfg.window_min_share, rule=cfg.window_rule)


def cmd_shard(args) -> int:
    from rock.knockout import runner

    cfg = _knockout_config(args)
    plan = read_plan(args.plan)
    sets, _ = plan_frames(plan)
    if not 0 <= args.shard < plan["n_shards"]:
        raise DataError(f"shard {args.shard} outside 0..{plan['n_shards'] - 1}", file=args.plan,
                        field="n_shards", fix="rebuild the plan or pick an existing shard")
    if plan["seeds"] != cfg.seeds or plan["tasks"] != cfg.tasks:
        raise DataError("the plan's seeds/tasks differ from the config's knockout section",
                        file=args.plan, field="seeds", fix="rebuild the plan with 'rock knockout pool'")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    files = {Path(f).name.removesuffix(".jsonl"): Path(f) for f in args.benchmark_files}
    missing = [t for t in cfg.tasks if t not in files]
    if missing:
        raise DataError(f"no benchmark file for task(s) {missing} among {args.benchmark_files}",
                        field="benchmark-files", fix="pass data/<task>.jsonl for every knockout task")
    from rock.config import stage_config

    evaluate = make_evaluator(stage_config(args), cfg, model=args.model,
                              data_files={t: files[t] for t in cfg.tasks}, source=str(args.config))
    table = runner.run_shard(sets, args.shard, evaluate, tasks=cfg.tasks, seeds=cfg.seeds)
    write_parquet(table, args.out)
    log.info("shard %d: %d rows -> %s", args.shard, len(table), args.out)
    return 0


def cmd_gather(args) -> int:
    from rock.knockout import runner

    plan = read_plan(args.plan)
    sets, _ = plan_frames(plan)
    table = runner.gather(sets, [read_table(p) for p in args.shards])
    write_parquet(table, args.out)
    return 0


def cmd_analyze(args) -> int:
    from rock.knockout import analysis, figures
    from rock.paths import KNOCKOUT_RESULTS

    cfg = _knockout_config(args)
    plan = read_plan(args.plan)
    _, mapping = plan_frames(plan)
    pool = read_table(args.pool)
    per_problem = read_table(args.per_problem)
    res = analysis.analyze(per_problem, pool, mapping, cfg)
    out = Path(args.out_dir)
    tasks = [t for t in cfg.tasks if t in set(per_problem["task"])]
    cands = res.candidates.copy()
    write_csv(res.deltas, out / "deltas.csv")
    write_csv(cands, out / "candidates.csv")
    write_csv(res.correlations, out / "table1.csv")
    write_text(out / "table1.md", figures.table1_markdown(res.correlations, tasks))
    write_csv(res.census, out / "table2.csv")
    write_csv(res.agreement, out / "table2_agreement.csv")
    sizes = res.deltas.groupby("task")[["n_problems", "n_runs"]].first()
    note = ("Per benchmark: " + "; ".join(f"{figures.task_label(t)} {int(sizes.loc[t, 'n_problems'])} "
                                          f"problems x {int(sizes.loc[t, 'n_runs'])} runs" for t in tasks)
            + f"; sampling T = {cfg.temperature:g}, top-p = {cfg.top_p:g}; Eq. 22 with epsilon = "
            f"{cfg.epsilon:g}, paired bootstrap over problems ({cfg.n_resamples:,} resamples, "
            f"alpha = {cfg.alpha:g}); categories use the token- and window-level knockouts"
            + ("; each candidate's p-values are Bonferroni-corrected over its distinct perturbations."
               if cfg.level_correction == "bonferroni" else " (uncorrected minimum p)."))
    write_text(out / "table2.md", figures.table2_markdown(res.census, res.agreement, note))
    write_json(out / "multiple_testing.json", _jsonable(res.multiple_testing))
    write_text(out / "multiple_testing.md", figures.multiple_testing_markdown(res.multiple_testing, tasks))
    fig = figures.figure4(res.candidates, tasks, epsilon=cfg.epsilon, alpha=cfg.alpha,
                          n_resamples=cfg.n_resamples)
    save_figure(fig, [out / "figure4.png", out / "figure4.pdf"])
    fig = figures.figure6(res.candidates, res.predictors, tasks[0], analysis.FIGURE6_PREDICTORS)
    save_figure(fig, [out / "figure6.png", out / "figure6.pdf"])
    missing = [n for n in KNOCKOUT_RESULTS if not (out / n).is_file()]
    if missing:  # the Snakemake rule lists KNOCKOUT_RESULTS as outputs
        raise OutputError(f"{out}: analyze did not write {missing} (a bug: rock.paths.KNOCKOUT_RESULTS "
                          "and cmd_analyze disagree)")
    return 0


def _jsonable(obj):
    """NaN -> None so the json is standard."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


# --------------------------------------------------------------------------------------------
# the evaluation seam
# --------------------------------------------------------------------------------------------

def make_evaluator(config: dict, cfg: kconfig.KnockoutConfig, *, model: str,
                   data_files: dict[str, Path], source: str = "config"):
    """Bind :data:`rock.knockout.runner.Evaluator` to :class:`rock.evaluate.runner.Evaluator`.

    Loads the model and builds the lm-eval tasks once (here), then every call evaluates a list of
    suppression sets with that one model. Evaluation settings (backend, prompt format, devices,
    IFEval metric, vLLM suppression mode) come from the config's ``evaluation`` section; the
    ``knockout`` section overrides sampling (T = 1.0 [D.3]), runs, seeds, generation budget and
    limit; ``config`` is the validated config (``source`` names its file). ``data_files`` maps
    each task to the local jsonl the data stage writes at both scales (``rock.paths.benchmark``),
    so every shard decodes exactly the same problems.
    """
    from rock.evaluate.benchmarks import build_tasks
    from rock.evaluate.config import from_section
    from rock.evaluate.models import make_lm
    from rock.evaluate.runner import Evaluator

    section = dict(config["evaluation"])
    section["seed"] = cfg.seed                       # run r -> seed + r, as the plan says
    ecfg = from_section(section, enable_thinking=config["models"]["enable_thinking"],
                        dataset_source="local", n_runs=cfg.n_runs, temperature=cfg.temperature,
                        top_p=cfg.top_p, max_gen_toks=cfg.max_gen_toks, limit=cfg.limit)
    if ecfg.seeds != cfg.seeds:
        raise ConfigError(f"{source}: evaluation seeds {ecfg.seeds} != knockout seeds {cfg.seeds}")
    for t, f in data_files.items():
        if not f.is_file():
            raise DataError("benchmark file not found", file=str(f), field=t,
                            fix="run the data stage (rock data) for this run directory")
    taskset = build_tasks(list(cfg.tasks), prompt_format=ecfg.prompt_format, data_files=data_files,
                          generation_kwargs=ecfg.generation_kwargs())
    evaluator = Evaluator(make_lm(ecfg, model), taskset, ecfg, model_name="student")

    def evaluate(sets):
        return evaluator.run({s.set_id: list(s.token_ids) for s in sets})

    return evaluate
