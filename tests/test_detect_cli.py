"""rock detect: config parsing and the comparison with the authors' ids (hand-made rankings)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rock import paths
from rock.cli import main
from rock.detect.config import DetectionSettings
from rock.errors import ConfigError


TOY_CONFIG = Path(__file__).parent / "config_toy" / "config.yaml"


def _config(path, *, scale, run_dir, reference):
    """The toy config (the CLI reads a whole, schema-checked config) with ``detection.reference``."""
    cfg = yaml.safe_load(TOY_CONFIG.read_text())
    cfg.update(scale=scale, run_dir=str(run_dir))
    cfg["detection"].update(top_k=4, k_screen=4, n_controls=2, reference=reference)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _ranking(ids, rocks, controls):
    return pd.DataFrame({"token_id": ids, "rank": pd.array(range(1, len(ids) + 1), dtype="Int64"),
                         "is_rock": [i in rocks for i in ids], "is_control": [i in controls for i in ids]})


def test_compare_at_paper_scale(tmp_path):
    run_dir = tmp_path / "run"
    ref_rocks, ref_ctrl = tmp_path / "rocks.json", tmp_path / "ctrl.json"
    ref_rocks.write_text(json.dumps([1, 2, 3, 4]))
    ref_ctrl.write_text(json.dumps([7, 8]))
    for mode, rocks, ctrl in (("official", [1, 2, 3, 5], [7, 9]), ("context", [1, 6, 10, 11], [8])):
        p = paths.detection_file(run_dir, mode, "ranking.parquet")
        p.parent.mkdir(parents=True, exist_ok=True)
        ids = rocks + [i for i in range(1, 20) if i not in rocks]
        _ranking(ids, set(rocks), set(ctrl)).to_parquet(p)
    reference = {"rock_ids": str(ref_rocks), "control_ids": str(ref_ctrl)}
    config = _config(tmp_path / "c.yaml", scale="paper", run_dir=run_dir, reference=reference)
    assert main(["detect", "compare", "--config", str(config)]) == 0
    out = pd.read_csv(paths.detection_comparison(run_dir)).set_index(["mode", "reference"])
    assert out.loc[("official", "authors_rocks"), "jaccard"] == pytest.approx(3 / 5)
    assert out.loc[("context", "authors_rocks"), "jaccard"] == pytest.approx(1 / 7)
    assert out.loc[("official", "authors_controls"), "jaccard"] == pytest.approx(1 / 3)
    assert out.loc[("context", "authors_controls"), "n_common"] == 1
    # toy scale: "not applicable" rows, no reference needed
    _config(config, scale="toy", run_dir=run_dir, reference=reference)
    assert main(["detect", "compare", "--config", str(config)]) == 0
    toy = pd.read_csv(paths.detection_comparison(run_dir))
    assert toy["jaccard"].isna().all() and toy["note"].str.startswith("not applicable").all()


def test_missing_reference_is_a_clear_error(tmp_path, capsys):
    config = _config(tmp_path / "c.yaml", scale="paper", run_dir=tmp_path,
                     reference={"rock_ids": str(tmp_path / "nope.json"), "control_ids": None})
    assert main(["detect", "compare", "--config", str(config)]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_settings_build_both_modes():
    """(Unknown keys of the detection section: the schema, tests/test_config.py.)"""
    s = DetectionSettings.from_dict({"top_k": 7, "k_screen": 9, "context": {"radius": 2, "gamma": 0.4},
                                     "official": {"drop_top_frequent": 3}})
    assert s.modes["context"].top_k == 7 and s.context.radius == 2 and s.context.gamma == 0.4
    assert s.modes["official"].drop_top_frequent == 3 and s.modes["official"].controls == "ranks"
    with pytest.raises(ConfigError, match="downstream_mode"):
        DetectionSettings.from_dict({"downstream_mode": "both"})


def test_compare_reads_the_rankings_its_rule_gives(tmp_path):
    """Issue 16: a job reads the files its rule names (`--in NAME=PATH`), not paths recomputed from
    run_dir: rankings outside the run directory are compared; without --in, the run directory's
    (absent here) are read."""
    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    ref_rocks = tmp_path / "rocks.json"
    ref_rocks.write_text(json.dumps([1, 2, 3, 4]))
    given, planted = [], {"official": [1, 2, 3, 5], "context": [1, 2, 3, 4]}
    for mode in paths.DETECTION_MODES:   # the rule's order
        rocks = planted[mode]
        p = elsewhere / mode / "ranking.parquet"
        p.parent.mkdir(parents=True)
        _ranking(rocks + [9, 10], set(rocks), set()).to_parquet(p)
        given += ["--in", f"rankings={p}"]
    config = _config(tmp_path / "c.yaml", scale="paper", run_dir=run_dir,
                     reference={"rock_ids": str(ref_rocks), "control_ids": None})
    assert main(["detect", "compare", "--config", str(config), *given]) == 0
    out = pd.read_csv(paths.detection_comparison(run_dir)).set_index("mode")
    assert out.loc["official", "jaccard"] == pytest.approx(3 / 5) and out.loc["context", "jaccard"] == 1.0
    with pytest.raises(FileNotFoundError, match=str(run_dir)):
        main(["detect", "compare", "--config", str(config)])


def test_job_files_parse_names_lists_and_defaults():
    from rock.job_files import JobFiles

    files = JobFiles(["a=/x/1.csv", "b=/y/2", "b=/y/3", "c=p=q"])
    assert files.path("a", "/default") == Path("/x/1.csv") and files.path("z", "/d") == Path("/d")
    assert files.paths("b", []) == [Path("/y/2"), Path("/y/3")] and files.path("c", "") == Path("p=q")
    assert "a" in files and "z" not in files
    with pytest.raises(ConfigError, match="one path expected"):
        files.path("b", "/d")
    with pytest.raises(ConfigError, match="NAME=PATH"):
        JobFiles(["no-equals-sign"])
