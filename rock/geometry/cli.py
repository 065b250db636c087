"""``rock geometry gradients|analyze`` (:mod:`rock.geometry`): reads the token tables and the Rock
set, writes the geometry tables, summary and Figure 3."""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pandas as pd
import torch

from rock import job_files, paths
from rock.atomic import atomic_path, write_json
from rock.errors import DataError
from rock.geometry.core import (GROUPS, SUMMARY_KEY, GeometryConfig, GradientAccumulator,
                                define_groups, geometry_summary, group_tests, per_type_geometry,
                                persistence, reverse_kl_logit_grad, type_kl)
from rock.geometry.figure import figure3
from rock.persistence import SELECTION_CHECKPOINTS, check_late_is_other_weights, describe, restrict, split_trajectories

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("gradients", "analyze"))
    parser.add_argument("--config", required=True, help="config YAML (run_dir, models, stats, detection, geometry)")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)
    job_files.add_arguments(parser)  # --in tokens= rocks= trajectories= per_type= early= late= pre=


def run(args: argparse.Namespace) -> int:
    from rock.config import stage_config
    from rock.stats import StatsConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = stage_config(args)
    run_dir = args.run_dir or config["run_dir"]
    gcfg = GeometryConfig.from_dict(config["geometry"])
    mode = gcfg.detection_mode or config["detection"]["downstream_mode"]
    spec = gcfg.groups
    files = job_files.JobFiles.from_args(args)
    post = pd.read_parquet(_need(files.path("tokens", paths.token_stats(run_dir, gcfg.checkpoint))))
    rocks_json = _need(files.path("rocks", paths.detection_file(run_dir, mode, "rocks.json")))
    rocks = json.loads(rocks_json.read_text())["rocks"]
    types = type_kl(post)
    groups = define_groups(types, rocks, spec)
    if args.action == "gradients":
        return _gradients(config, run_dir, gcfg, StatsConfig.from_dict(config["stats"]), post, types, groups,
                          files)
    return _analyze(config, run_dir, gcfg, groups, mode, files)


def _need(path):
    if not path.is_file():
        raise DataError("input not found", file=str(path), fix="run the stage that writes it (rock stats / detect)")
    return path


def _gradients(config, run_dir, gcfg: GeometryConfig, scfg, post, types, groups,
               files=job_files.JobFiles()) -> int:
    import time

    from rock.stats import iter_scored_chunks, load_models, read_trajectories, resolve_checkpoint
    from rock.distill.losses import chunk_rows

    models = dict(config["models"])
    student_path = resolve_checkpoint(scfg.checkpoints[gcfg.checkpoint], run_dir, models)
    student, teacher, _, vocab, runtime = load_models(student_path, str(models["teacher"]), models, scfg)
    counts = {int(t): int(n) for t, n in zip(types["token_id"], types["freq"])}
    members = [m for g in GROUPS for m in groups[g]]
    acc = GradientAccumulator(counts, members, vocab, device=runtime.device,
                              dtype=getattr(torch, gcfg.accumulate_dtype))
    log.info("gradient pass: %d member types, accumulator %.1f MiB", len(members), acc.nbytes() / 2**20)
    t0 = time.time()
    rows = chunk_rows(vocab, scfg.chunk_size)
    trajectories = read_trajectories(files.path("trajectories", paths.trajectories(run_dir)))
    for ch in iter_scored_chunks(student, teacher, trajectories, vocab=vocab, chunk_size=rows,
                                 device=runtime.device):
        acc.update(reverse_kl_logit_grad(ch.student_logits, ch.teacher_logits), ch.tokens)
    g_bal, means = acc.finalize()
    per = per_type_geometry(g_bal, means, members, counts)
    group_of = {m: g for g in GROUPS for m in groups[g]}
    per.insert(1, "group", [group_of[int(m)] for m in per["token_id"]])
    per = per.merge(types[["token_id", "mean_kl"]], on="token_id", how="left")
    with atomic_path(paths.geometry_file(run_dir, "per_type.csv")) as tmp:
        per.to_csv(tmp, index=False)
    write_json(paths.geometry_file(run_dir, "gradients.json"),
               {"checkpoint": gcfg.checkpoint, "model": student_path, "g_balanced_norm": float(np.linalg.norm(g_bal)),
                "n_types": len(counts), "n_positions": int(sum(counts.values())), "members": len(members),
                "accumulator_mib": acc.nbytes() / 2**20, "seconds": time.time() - t0})
    return 0


def late_is_other_weights(config, run_dir, gcfg: GeometryConfig) -> None:
    """The late checkpoint's weights differ from every selection model's (rock.persistence)."""
    from rock.stats import StatsConfig, resolve_checkpoint

    specs = StatsConfig.from_dict(config.get("stats")).checkpoints
    models = dict(config.get("models") or {})
    where = lambda name: resolve_checkpoint(specs[name], run_dir, models)  # noqa: E731
    check_late_is_other_weights((gcfg.late, where(gcfg.late)),
                                {n: where(n) for n in SELECTION_CHECKPOINTS if n in specs})


def persistence_groups(config, run_dir, gcfg: GeometryConfig, rocks, mode, early, late,
                       files=job_files.JobFiles()):
    """``(groups, early, late, selection info)`` of Fig. 3c-d (rock.persistence): groups on the
    pre model over all trajectories, or on half A (rocks re-detected there) with early/late
    restricted to half B."""
    spec = gcfg.groups
    pre = pd.read_parquet(_need(files.path("pre", paths.token_stats(run_dir, "pre"))))
    if gcfg.persistence_selection == "pre":
        return define_groups(type_kl(pre), rocks, spec), early, late, describe("pre", 0, None)
    from rock.detect.occurrences import load_occurrences
    from rock.detect.config import DetectionSettings
    from rock.detect.core import select_scores

    halves = split_trajectories(pre["trajectory"], gcfg.holdout_seed)
    settings = DetectionSettings.from_dict(config.get("detection"))
    occ = load_occurrences(run_dir, settings, mode).subset(halves[0])
    ranking = select_scores(occ, settings.modes[mode], settings.context)
    rocks_a = [int(v) for v in ranking.loc[ranking["is_rock"], "token_id"]]
    log.info("persistence: holdout selection on %d trajectories (%d rocks re-detected), measured on %d",
             len(halves[0]), len(rocks_a), len(halves[1]))
    groups = define_groups(type_kl(restrict(pre, halves[0])), rocks_a, spec)
    return (groups, restrict(early, halves[1]), restrict(late, halves[1]),
            describe("holdout", gcfg.holdout_seed, halves))


def _analyze(config, run_dir, gcfg: GeometryConfig, groups, mode, files=job_files.JobFiles()) -> int:
    per = pd.read_csv(_need(files.path("per_type", paths.geometry_file(run_dir, "per_type.csv"))))
    late_is_other_weights(config, run_dir, gcfg)
    early = pd.read_parquet(_need(files.path("early", paths.token_stats(run_dir, gcfg.early))))
    late = pd.read_parquet(_need(files.path("late", paths.token_stats(run_dir, gcfg.late))))
    pgroups, early, late, selection = persistence_groups(config, run_dir, gcfg, groups["rock"], mode,
                                                         early, late, files)
    persist, ptests = persistence(early, late, pgroups)
    tests = pd.concat([group_tests(per), ptests], ignore_index=True)
    with atomic_path(paths.geometry_file(run_dir, "tests.csv")) as tmp:
        tests.to_csv(tmp, index=False)
    with atomic_path(paths.geometry_file(run_dir, "persistence.csv")) as tmp:
        persist.to_csv(tmp, index=False)
    summary = geometry_summary(per, tests, ptests)
    summary.update({"detection_mode": mode, "groups": {SUMMARY_KEY[g]: len(v) for g, v in groups.items()},
                    "persistence_groups": {SUMMARY_KEY[g]: len(v) for g, v in pgroups.items()},
                    "persistence_selection": selection, "early": gcfg.early, "late": gcfg.late})
    write_json(paths.geometry_file(run_dir, "summary.json"), summary)
    figure3(per, persist, title=f"Figure 3 ({run_dir}, rocks from {mode} detection; persistence groups "
                                f"selected on {selection['selection']}, {gcfg.early} vs {gcfg.late})",
            outputs=[paths.figure3(run_dir, "png"), paths.figure3(run_dir, "pdf")])
    return 0
