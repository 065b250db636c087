"""``rock detect``: Rock Token detection, cutoff stability, clusters, comparison [2.2-2.5, B, E].

    rock detect select    --config config.yaml --mode context     # ranking, windows W(v), density
    rock detect stability --config config.yaml --mode context     # Jaccard vs n and K, coverage
    rock detect figure    --config config.yaml --mode context     # Figure 2 (png + pdf)
    rock detect clusters  --config config.yaml --mode context     # decoded rocks/controls by cluster
    rock detect compare   --config config.yaml                    # Jaccard with the authors' ids

Inputs are the token tables of ``rock stats score`` (``stats/tokens_{post,pre}.parquet``) and, for
``representation: hidden``, the post-OPD student's hidden states. Outputs go under
``{run_dir}/detect/{mode}/`` (names in :mod:`rock.paths`). The config is read here only; the
library functions get dataclasses. Dense products use numpy's BLAS, whose thread count follows
``OMP_NUM_THREADS`` (Snakemake sets it to the job's threads) or ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rock import job_files, paths
from rock.atomic import atomic_path, write_json
from rock.detect.occurrences import load_occurrences  # noqa: F401  (the stage reader; also used by geometry)
from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ACTIONS = ("select", "stability", "figure", "clusters", "compare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to compute (module docstring)")
    parser.add_argument("--config", required=True, help="config YAML (sections run_dir, detection, models)")
    parser.add_argument("--mode", choices=paths.DETECTION_MODES, default=None,
                        help="detection mode (default: detection.downstream_mode)")
    parser.add_argument("--run-dir", default=None, help="override the config's run_dir")
    for table, what in (("post", "post-OPD token table"), ("pre", "pre-OPD token table (context mode)"),
                        ("hidden", "hidden states (context mode, representation hidden)")):
        parser.add_argument(f"--{table}", default=None, help=f"select/stability: {what} (default: rock.paths)")
    parser.add_argument("--tokenizer", default=None,
                        help="clusters: tokenizer dir or hub id (default: models.student)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (default: OMP_NUM_THREADS, which Snakemake sets to the job's threads)")
    job_files.add_arguments(parser)  # --in ranking=... density= sweep= summary= rankings= tokenizer=


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def run(args: argparse.Namespace) -> int:
    from rock.config import stage_config
    from rock.detect.config import DetectionSettings

    if args.threads:
        _limit_blas_threads(args.threads)
    config = stage_config(args)
    run_dir = args.run_dir or config["run_dir"]
    settings = DetectionSettings.from_dict(config["detection"])
    mode = args.mode or settings.downstream_mode
    tables = {"post": args.post, "pre": args.pre, "hidden": args.hidden}
    files = job_files.JobFiles.from_args(args)
    if args.action == "select":
        return _select(run_dir, settings, mode, tables)
    if args.action == "stability":
        return _stability(run_dir, settings, mode, tables, files)
    if args.action == "figure":
        return _figure(run_dir, settings, mode, files)
    if args.action == "clusters":
        tokenizer = args.tokenizer or next(map(str, files.paths("tokenizer", [])), config["models"]["student"])
        return _clusters(run_dir, settings, mode, tokenizer, files)
    return _compare(run_dir, settings, config, files)


def _limit_blas_threads(n: int) -> None:
    """Cap numpy's BLAS pool (threadpoolctl when installed; else OMP_NUM_THREADS decides)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.info("threadpoolctl not installed: BLAS threads follow OMP_NUM_THREADS")
        return
    threadpool_limits(limits=n)


def _select(run_dir, settings, mode, tables: dict | None = None) -> int:
    from rock.detect.core import detect

    occ = load_occurrences(run_dir, settings, mode, tables)
    cfg = settings.modes[mode]
    ranking, windows, density, info = detect(occ, cfg, settings.context, progress=True)
    info.update({"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                 "context": {k: getattr(settings.context, k) for k in settings.context.__dataclass_fields__}})
    _write_parquet(ranking, paths.detection_file(run_dir, mode, "ranking.parquet"))
    _write_csv(ranking, paths.detection_file(run_dir, mode, "ranking.csv"))
    _write_parquet(windows, paths.detection_file(run_dir, mode, "windows.parquet"))
    _write_csv(density, paths.detection_file(run_dir, mode, "density.csv"))
    ids = lambda col: [int(v) for v in ranking.loc[ranking[col], "token_id"]]  # noqa: E731
    write_json(paths.detection_file(run_dir, mode, "rocks.json"),
               {"mode": mode, "rocks": ids("is_rock"), "controls": ids("is_control"),
                "screen": [int(v) for v in ranking.loc[ranking["is_screen"]].sort_values("rank")["token_id"]],
                "window_radius": settings.context.radius})
    write_json(paths.detection_file(run_dir, mode, "info.json"), info)
    log.info("detect %s: %d rocks, %d windows, median density %.3f", mode, info["n_rocks"], len(windows),
             info["median_density"])
    return 0


def _stability(run_dir, settings, mode, tables: dict | None = None, files=job_files.JobFiles()) -> int:
    from rock.detect.stability import coverage_curve, stability_summary, stability_sweep

    occ = load_occurrences(run_dir, settings, mode, tables)
    ranking = pd.read_parquet(files.path("ranking", paths.detection_file(run_dir, mode, "ranking.parquet")))
    st = settings.stability
    sweep = stability_sweep(occ, settings.modes[mode], settings.context, sizes=st.sizes, k_grid=st.k_grid,
                            n_repeats=st.n_repeats, seed=settings.modes[mode].seed, full_ranking=ranking)
    coverage = coverage_curve(ranking, float(occ.loss_post.sum()), st.k_grid)
    _write_csv(sweep, paths.detection_file(run_dir, mode, "stability.csv"))
    _write_csv(stability_summary(sweep, coverage), paths.detection_file(run_dir, mode, "stability_summary.csv"))
    return 0


def _figure(run_dir, settings, mode, files=job_files.JobFiles()) -> int:
    from rock.detect.figures import figure2

    f = lambda key, name: files.path(key, paths.detection_file(run_dir, mode, name))  # noqa: E731
    figure2(pd.read_parquet(f("ranking", "ranking.parquet")), pd.read_csv(f("density", "density.csv")),
            pd.read_csv(f("sweep", "stability.csv")), pd.read_csv(f("summary", "stability_summary.csv")),
            top_k=settings.modes[mode].top_k,
            title=f"Figure 2 ({mode} detection, {run_dir})",
            outputs=[paths.figure2(run_dir, mode, "png"), paths.figure2(run_dir, mode, "pdf")])
    return 0


def _clusters(run_dir, settings, mode, tokenizer_src, files=job_files.JobFiles()) -> int:
    from rock.detect.clusters import cluster_summary, cluster_table, matching_quality

    if not tokenizer_src:
        raise ConfigError("clusters need a tokenizer (fix: set models.student or pass --tokenizer)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    ranking = pd.read_parquet(files.path("ranking", paths.detection_file(run_dir, mode, "ranking.parquet")))
    table = cluster_table(ranking, lambda i: tok.decode([i]), settings.discourse_markers)
    _write_csv(table, paths.detection_file(run_dir, mode, "clusters.csv"))
    _write_csv(cluster_summary(table), paths.detection_file(run_dir, mode, "clusters_summary.csv"))
    q = matching_quality(ranking.loc[ranking["is_rock"], "freq"], ranking.loc[ranking["is_control"], "freq"])
    q["mode"] = mode
    q["control_method"] = settings.modes[mode].controls
    _write_csv(pd.DataFrame([q]), paths.detection_file(run_dir, mode, "control_matching.csv"))
    return 0


def _compare(run_dir, settings, config, files=job_files.JobFiles()) -> int:
    """Jaccard of our top-K (K = top_k) sets with the authors' ids; 'not applicable' off paper scale."""
    from rock.detect.stability import jaccard, top_k

    rows = []
    applicable = config["scale"] == "paper" and settings.reference_rock_ids
    ref_rocks = ref_ctrl = None
    if applicable:
        for attr in ("reference_rock_ids", "reference_control_ids"):
            p = getattr(settings, attr)
            if p and not Path(p).is_file():
                raise DataError("reference ids not found", file=str(p),
                                fix="restore results/expected/paper/reference/ from git")
        ref_rocks = json.loads(Path(settings.reference_rock_ids).read_text())
        if settings.reference_control_ids:
            ref_ctrl = json.loads(Path(settings.reference_control_ids).read_text())
    rankings = files.paths("rankings", [paths.detection_file(run_dir, m, "ranking.parquet")
                                        for m in paths.DETECTION_MODES])
    for mode, rp in zip(paths.DETECTION_MODES, rankings, strict=True):
        k = settings.modes[mode].top_k
        if not applicable:
            rows.append({"mode": mode, "reference": "authors_rocks", "k": k, "jaccard": None,
                         "n_ours": None, "n_reference": None, "n_common": None,
                         "note": "not applicable: different model and vocabulary (toy scale)"})
            continue
        ranking = pd.read_parquet(rp)
        ours = top_k(ranking, k)
        for name, ref in (("authors_rocks", ref_rocks), ("authors_controls", ref_ctrl)):
            if ref is None:
                continue
            theirs = set(int(v) for v in ref)
            mine = ours if name == "authors_rocks" else set(
                ranking.loc[ranking["is_control"], "token_id"].astype(int))
            rows.append({"mode": mode, "reference": name, "k": len(theirs), "jaccard": jaccard(mine, theirs),
                         "n_ours": len(mine), "n_reference": len(theirs), "n_common": len(mine & theirs),
                         "note": ""})
    _write_csv(pd.DataFrame(rows), paths.detection_comparison(run_dir))
    return 0
