"""The analysis stages end to end through the CLI on a tiny fake run directory:
rock stats decode/score/hidden -> rock detect select/stability/figure/clusters/compare (both modes)
-> rock geometry gradients/analyze. Checks the artifacts exist, are consistent with one another and
carry the columns the knockout, freeze and report stages read."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_fixtures import tiny_pair  # noqa: E402,F401  (pytest fixture)

from rock import paths  # noqa: E402
from rock.cli import main  # noqa: E402

TOY_CONFIG = Path(__file__).parent / "config_toy" / "config.yaml"
#: the module fixture runs every analysis stage on tiny models: ~30 s on 2 shared cores
pytestmark = pytest.mark.slow


def _perturbed_copy(src: Path, dst: Path, scale: float, seed: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)


def _resample_responses(traj_path: Path, model_dir: Path):
    """A random model's greedy output repeats one token; sample (T = 1, seeded) instead so that the
    corpus has many token types. The decode CLI itself is exercised just before."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rock.distill.sampling import HfGenerator

    rows = [json.loads(line) for line in traj_path.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(model_dir)
    gen = HfGenerator(AutoModelForCausalLM.from_pretrained(model_dir), tok, batch_size=8, vocab_limit=len(tok))
    comps = gen.generate([r["student_prompt_ids"] for r in rows], n=1, temperature=1.0, max_new_tokens=24, seed=0)
    for r, (cmp,) in zip(rows, comps):
        r["response_ids"] = cmp.token_ids
    traj_path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def run(tiny_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis_run")
    run_dir = root / "results"
    shutil.copytree(tiny_pair["student"], paths.stage_model(run_dir, 1))
    _perturbed_copy(tiny_pair["student"], paths.stage_model(run_dir, 2), 0.02, seed=1)
    for step, scale in ((2, 0.01), (4, 0.02)):
        _perturbed_copy(tiny_pair["student"], paths.train_checkpoint(paths.stage_dir(run_dir, 2), step), scale, seed=step)
    bench = paths.benchmark(run_dir, "math500")
    bench.parent.mkdir(parents=True, exist_ok=True)
    with open(bench, "w") as fh:
        for i in range(16):
            fh.write(json.dumps({"problem": f"Compute ({i % 5 + 1}+{i % 3 + 2})*{i % 2 + 2}.", "solution": "",
                                 "answer": "0", "subject": "x", "level": 1, "unique_id": f"t{i}"}) + "\n")
    cfg = yaml.safe_load(TOY_CONFIG.read_text())
    cfg["run_dir"] = str(run_dir)
    cfg["models"].update(teacher=str(tiny_pair["teacher"]), student=str(tiny_pair["student"]))
    cfg["stats"].update(n_problems=16, max_new_tokens=16, batch_size=8, instruction_suffix="")
    det = cfg["detection"]
    det.update(top_k=3, k_screen=5, n_controls=3)
    det["context"].update(tau_pre=0.5, tau_post=0.5, eta=0.0, radius=2, gamma=0.3)
    det["stability"].update(sizes=[4, 8], k_grid=[1, 2, 3, 5], n_repeats=2)
    cfg["geometry"]["groups"] = {"high_kl_n": 3, "high_kl_min_freq": 2, "random_n": 4, "random_min_freq": 2,
                                 "random_seed": 0}
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    torch.set_num_threads(1)
    c = str(config)
    assert main(["stats", "decode", "--config", c]) == 0
    _resample_responses(paths.trajectories(run_dir), tiny_pair["student"])
    for ck in ("pre", "post", "early", "late"):
        assert main(["stats", "score", "--config", c, "--checkpoint", ck]) == 0
    assert main(["stats", "hidden", "--config", c, "--checkpoint", "post"]) == 0
    for mode in paths.DETECTION_MODES:
        for action in ("select", "stability", "figure", "clusters"):
            assert main(["detect", action, "--config", c, "--mode", mode]) == 0, (mode, action)
    assert main(["detect", "compare", "--config", c]) == 0
    assert main(["geometry", "gradients", "--config", c]) == 0
    assert main(["geometry", "analyze", "--config", c]) == 0
    return {"run_dir": run_dir, "config": config, "cfg": cfg}


def test_token_tables_align_across_checkpoints(run):
    rd = run["run_dir"]
    tables = {ck: pd.read_parquet(paths.token_stats(rd, ck)) for ck in ("pre", "post", "early", "late")}
    traj = [json.loads(line) for line in paths.trajectories(rd).read_text().splitlines()]
    assert len(traj) == 16 and all(r["decoded_with"].startswith("post:") for r in traj)
    n = sum(len(r["response_ids"]) for r in traj)
    for ck, t in tables.items():
        assert len(t) == n and (t["checkpoint"] == ck).all()
        assert t[["trajectory", "position", "token_id"]].equals(tables["post"][["trajectory", "position", "token_id"]])
    # different checkpoints give different losses on the same tokens
    assert not np.allclose(tables["pre"]["reverse_kl"], tables["post"]["reverse_kl"])
    hidden = np.load(paths.hidden_states(rd, "post"))
    assert hidden.shape[0] == n


def test_detection_outputs_are_consistent(run):
    rd = run["run_dir"]
    post = pd.read_parquet(paths.token_stats(rd, "post"))
    for mode in paths.DETECTION_MODES:
        f = lambda name: paths.detection_file(rd, mode, name)  # noqa: E731
        ranking = pd.read_parquet(f("ranking.parquet"))
        assert ranking["token_id"].is_unique and ranking["freq"].sum() == len(post)
        np.testing.assert_allclose(ranking["rock_score"].sum(), post["reverse_kl"].sum(), rtol=1e-6)
        rocks = json.loads(f("rocks.json").read_text())
        assert rocks["rocks"] == ranking.loc[ranking["is_rock"]].sort_values("rank")["token_id"].tolist() \
            or sorted(rocks["rocks"]) == sorted(ranking.loc[ranking["is_rock"], "token_id"])
        assert rocks["window_radius"] == 2
        windows = pd.read_parquet(f("windows.parquet"))
        assert {"token_id", "trajectory", "start", "end", "position", "rank"} <= set(windows.columns)
        assert set(windows["token_id"]) <= set(ranking.loc[ranking["is_screen"], "token_id"])
        assert ((windows["start"] <= windows["position"]) & (windows["position"] <= windows["end"])).all()
        assert ((windows["end"] - windows["start"]) <= 4).all()
        summary = pd.read_csv(f("stability_summary.csv"))
        assert {"k", "coverage", "jaccard_mean"} <= set(summary.columns)
        assert (summary["coverage"].diff().dropna() >= -1e-12).all()   # cumulative
        clusters = pd.read_csv(f("clusters_summary.csv"))
        assert set(clusters["group"]) == {"rock", "control"}
        assert clusters.groupby("group")["n"].sum()["rock"] == len(rocks["rocks"])
        match = pd.read_csv(f("control_matching.csv"))
        assert {"ks_statistic", "ks_pvalue", "sum_ratio"} <= set(match.columns)
        assert paths.figure2(rd, mode, "png").stat().st_size > 10_000
        assert paths.figure2(rd, mode, "pdf").is_file()
        info = json.loads(f("info.json").read_text())
        assert info["n_occurrences"] == len(post) and info["mode"] == mode
    comparison = pd.read_csv(paths.detection_comparison(rd))
    assert comparison["note"].str.contains("not applicable").all()   # toy scale


def test_geometry_outputs(run):
    rd = run["run_dir"]
    per = pd.read_csv(paths.geometry_file(rd, "per_type.csv"))
    rocks = json.loads(paths.detection_file(rd, "context", "rocks.json").read_text())["rocks"]
    assert sorted(per.loc[per["group"] == "rock", "token_id"]) == sorted(rocks)
    assert (per["grad_norm"] > 0).all() and per["cos_balanced"].between(-1, 1).all()
    np.testing.assert_allclose(per["contrib"], per["n"] * per["grad_norm"] * per["cos_balanced"], rtol=1e-9)
    summary = json.loads(paths.geometry_file(rd, "summary.json").read_text())
    assert set(summary["median_grad_norm"]) <= {"rock", "highkl", "random"}
    assert "wilcoxon_p" in summary and "mannwhitney_p" in summary
    assert paths.figure3(rd, "png").stat().st_size > 10_000


def test_analysis_is_deterministic(run, tmp_path):
    """Re-running detection gives byte-identical tables."""
    rd = run["run_dir"]
    before = paths.detection_file(rd, "context", "ranking.csv").read_bytes()
    assert main(["detect", "select", "--config", str(run["config"]), "--mode", "context"]) == 0
    assert paths.detection_file(rd, "context", "ranking.csv").read_bytes() == before


def test_stage_commands_take_the_rules_input_and_output_paths(run, tmp_path):
    """The rules give `rock stats` / `rock detect` their input and output files (--trajectories,
    --out, --post, --pre): a run directory without token tables, fed the tables from elsewhere,
    reproduces the same ranking."""
    rd, c = run["run_dir"], str(run["config"])
    elsewhere = tmp_path / "elsewhere"
    tables = {}
    for ck in ("pre", "post"):
        tables[ck] = elsewhere / f"{ck}.parquet"
        tables[ck].parent.mkdir(parents=True, exist_ok=True)
        tables[ck].write_bytes(paths.token_stats(rd, ck).read_bytes())
    other = tmp_path / "other_run"
    assert main(["detect", "select", "--config", c, "--mode", "context", "--run-dir", str(other)]) == 2
    assert main(["detect", "select", "--config", c, "--mode", "context", "--run-dir", str(other),
                 "--post", str(tables["post"]), "--pre", str(tables["pre"]),
                 "--hidden", str(paths.hidden_states(rd, "post"))]) == 0
    mine = pd.read_parquet(paths.detection_file(other, "context", "ranking.parquet"))
    pd.testing.assert_frame_equal(mine, pd.read_parquet(paths.detection_file(rd, "context", "ranking.parquet")))
    out, trajectories = tmp_path / "hidden.npy", elsewhere / "trajectories.jsonl"
    trajectories.write_bytes(paths.trajectories(rd).read_bytes())
    assert main(["stats", "hidden", "--config", c, "--checkpoint", "post",
                 "--trajectories", str(trajectories), "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(paths.hidden_states(rd, "post")))
