"""A constructed run directory for the report tests: every artifact the report reads, written in
the stages' real formats (file names from rock.paths, columns of rock.detect / rock.knockout /
rock.freeze) with hand-chosen numbers, so that each check row has a known answer.

``PAPERLIKE`` holds numbers that agree with the paper; tests override single values to make a row
disagree, and delete files to make rows "not run".
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rock import paths

#: Table 1 of the paper (App. D.1): predictor label -> (r, p) on MATH-500 and IFEval
PAPER_TABLE1 = {
    "Frequency": (0.015, 0.832, 0.030, 0.677),
    "Rock count": (0.013, 0.855, 0.023, 0.751),
    "Rock rate": (-0.022, 0.760, -0.047, 0.512),
    "Pre-OPD KL": (-0.017, 0.808, -0.015, 0.833),
    "Post-OPD KL": (0.010, 0.883, -0.048, 0.503),
    "KL improvement": (-0.062, 0.386, 0.071, 0.320),
    "Teacher entropy": (0.063, 0.378, -0.036, 0.611),
    "Pre-OPD student entropy": (0.059, 0.406, -0.069, 0.331),
    "Post-OPD student entropy": (0.056, 0.432, -0.037, 0.604),
}

GEOMETRY = {
    "median_grad_norm": {"rock": 0.016, "highkl": 0.54, "random": 0.05},
    "median_cos": {"rock": 0.040, "highkl": 0.025, "random": 0.006},
    "max_cos": {"rock": 0.35},
    "median_kl_early": {"rock": 0.21, "highkl": 2.02, "random": 0.1},
    "median_kl_late": {"rock": 0.19, "highkl": 0.85, "random": 0.1},
    "median_delta_kl": {"rock": -0.01, "highkl": -1.17, "random": 0.0},
    "wilcoxon_p": {"rock": 0.4, "highkl": 1e-9, "random": 0.6},
    "contrib_sum": {"rock": 5.0, "highkl": 1.0, "random": 0.2},
    "mannwhitney_p": {"grad_norm_rock_vs_highkl": 1e-33},
}


def write_png(path: Path, color: str = "C0") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot([0, 1, 2], [0, 1, 0], color=color)
    fig.savefig(path)
    plt.close(fig)


def make_fake_run(root: Path, *, figures: bool = True) -> Path:
    """Write a complete fake run under ``root`` (returned)."""
    root = Path(root)
    # toy world: the layout of rock.toy.build's world.json
    w = paths.world_info(root)
    w.parent.mkdir(parents=True, exist_ok=True)
    w.write_text(json.dumps({
        "seed": 0, "teacher_system_prompts": ["style: so", "style: then"],
        "accuracy_math500": {"teacher": 0.89, "student": 0.19}, "accuracy_margin": 0.7,
        "tokenizer": {"size": 1024, "embedding_rows": 1024},
        "parameters": {"teacher": 831000, "student": 120000},
        "pretraining": {"teacher": {"parameters": 831000, "steps": 350, "loss_first10": 6.1,
                                    "loss_last10": 0.61}},
        "sizes": {"math500": 100, "openthoughts": 3000},
        "config": {"teacher": {"lr": 0.004}},
        "versions": {"torch": "2.13.0"},
        "timings": {"corpus": {"wall_s": 6.5, "cpu_s": 1.4}, "total": {"wall_s": 300.2}}}))
    # detection (context mode and official mode)
    for mode in paths.DETECTION_MODES:
        d = paths.detection_dir(root, mode)
        d.mkdir(parents=True, exist_ok=True)
        (d / "info.json").write_text(json.dumps({"mode": mode, "median_density": 0.185,
                                                 "n_rocks": 100, "n_types": 4000}))
        pd.DataFrame({"trajectory": [0, 1, 2], "length": [100, 100, 100],
                      "n_rock_tokens": [18, 18, 19], "density": [0.18, 0.18, 0.19],
                      "n_rock_occ": [17, 18, 20], "density_occ": [0.17, 0.18, 0.20]}
                     ).to_csv(d / "density.csv", index=False)
        pd.DataFrame({"k": [50, 100, 150, 200], "n_selected": [50, 100, 150, 200],
                      "coverage": [0.49, 0.60, 0.66, 0.70],
                      "jaccard_n50": [0.7, 0.65, 0.5, 0.5], "jaccard_n400": [0.92, 0.85, 0.64, 0.62],
                      "jaccard_mean": [0.81, 0.75, 0.57, 0.56]}).to_csv(d / "stability_summary.csv", index=False)
        cats = ["latex_math", "markdown_whitespace", "discourse", "digits", "other"]
        pd.DataFrame({"group": ["rock"] * 5 + ["control"] * 5, "category": cats * 2,
                      "n": [30, 20, 15, 10, 25, 5, 5, 5, 5, 80],
                      "share": [.3, .2, .15, .1, .25, .05, .05, .05, .05, .8],
                      "freq_sum": [1] * 10}).to_csv(d / "clusters_summary.csv", index=False)
        pd.DataFrame([{"n_rocks": 100, "n_controls": 100, "ks_statistic": 0.05, "ks_pvalue": 0.9,
                       "sum_freq_rocks": 85000.0, "sum_freq_controls": 17000.0, "sum_ratio": 0.2,
                       "median_ratio": 0.2}]).to_csv(d / "control_matching.csv", index=False)
    # geometry
    g = paths.geometry_dir(root)
    g.mkdir(parents=True, exist_ok=True)
    (g / "summary.json").write_text(json.dumps(GEOMETRY))
    # knockout results (rock.knockout.cli analyze)
    k = paths.knockout_result(root, "x").parent
    k.mkdir(parents=True, exist_ok=True)
    cols = {"freq": "Frequency", "rock_count": "Rock count", "rock_rate": "Rock rate",
            "kl_pre": "Pre-OPD KL", "kl_post": "Post-OPD KL", "kl_improvement": "KL improvement",
            "ent_teacher": "Teacher entropy", "ent_student_pre": "Pre-OPD student entropy",
            "ent_student_post": "Post-OPD student entropy"}
    pd.DataFrame([{"predictor": lab, "column": col, "math500_r": PAPER_TABLE1[lab][0],
                   "math500_p": PAPER_TABLE1[lab][1], "math500_n": 200,
                   "ifeval_r": PAPER_TABLE1[lab][2], "ifeval_p": PAPER_TABLE1[lab][3], "ifeval_n": 200}
                  for col, lab in cols.items()]).to_csv(k / "table1.csv", index=False)
    pd.DataFrame([
        {"benchmark": "math500", "n_candidates": 200, "pillar": 7, "pillar_pct": 3.5, "neutral": 193,
         "neutral_pct": 96.5, "stumbling": 0, "stumbling_pct": 0.0, "baseline_acc": 0.75},
        {"benchmark": "ifeval", "n_candidates": 200, "pillar": 3, "pillar_pct": 1.5, "neutral": 197,
         "neutral_pct": 98.5, "stumbling": 0, "stumbling_pct": 0.0, "baseline_acc": 0.752},
    ]).to_csv(k / "table2.csv", index=False)
    pd.DataFrame({"label": ["N||N", "P||N", "N||P", "P||P"], "count": [190, 7, 3, 0],
                  "pct": [95.0, 3.5, 1.5, 0.0]}).to_csv(k / "table2_agreement.csv", index=False)
    per_task = {b: {"m": 200, "min_p": p, "bonferroni_threshold": 2.5e-4, "bonferroni_rejections": 0,
                    "bh_rejections": {"0.05": 0, "0.1": 0, "0.2": 0}, "sign_negative": n,
                    "sign_positive": 0, "sign_p": sp}
                for b, p, n, sp in (("math500", 0.0038, 7, 0.015625), ("ifeval", 0.0016, 3, 0.25))}
    (k / "multiple_testing.json").write_text(json.dumps({
        "alpha": 0.05, "per_task": per_task,
        "combined": {"sign_negative": 10, "sign_positive": 0, "sign_p": 0.001953125,
                     "core_negative": 6, "core_positive": 0, "core_sign_p": 0.03125}}))
    # freeze (rock.freeze.report regime table)
    f = paths.freeze_result(root, "x").parent
    f.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"quantity": "window_length", "n_rock": 500, "n_control": 500, "ks_D": 0.02, "ks_p": 0.9},
                  {"quantity": "token_log2_freq", "n_rock": 900, "n_control": 900, "ks_D": 0.04, "ks_p": 0.5}]
                 ).to_csv(f / "control_match.csv", index=False)
    pd.DataFrame([
        {"regime": "baseline", "selection": "none", "lambda": 1.0, "final_average": 0.30,
         "frozen_fraction": 0.0, "throughput_speedup": 1.0, "tta_speedup": 1.0},
        {"regime": "rock_freeze", "selection": "rock", "lambda": 0.0, "final_average": 0.28,
         "frozen_fraction": 0.19, "throughput_speedup": 1.05, "tta_speedup": 1.45},
        {"regime": "random_freeze", "selection": "random", "lambda": 0.0, "final_average": 0.20,
         "frozen_fraction": 0.19, "throughput_speedup": 1.04, "tta_speedup": 0.8},
    ]).to_csv(f / "regimes.csv", index=False)
    # data sizes (paper scale rows)
    for b, n in (("math500", 500), ("aime24", 30)):
        p = paths.benchmark(root, b)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps({"id": str(i)}) + "\n" for i in range(n)))
    # wall-clock (snakemake benchmark files) and a log
    bd = paths.benchmarks_dir(root)
    bd.mkdir(parents=True, exist_ok=True)
    (bd / "toy_world.tsv").write_text("s\th:m:s\tmax_rss\n301.5\t0:05:01\t812.3\n")
    lg = paths.log_file(root, "toy_world")
    lg.parent.mkdir(parents=True, exist_ok=True)
    lg.write_text("built\n")
    if figures:
        write_png(paths.figure2(root, "context", "png"), "C3")
        write_png(paths.figure3(root, "png"), "C1")
        write_png(paths.knockout_result(root, "figure4.png"), "C2")
        write_png(paths.freeze_result(root, "figure5.png"), "C4")
        write_png(paths.knockout_result(root, "figure6.png"), "C5")
    return root
