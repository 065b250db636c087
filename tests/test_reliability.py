"""Reliability of the whole run (issue 8, item 4): each kind of bad input gives ONE clear error that
names the file, the key/line/field and the fix, and leaves no half-written output behind.

Cases here (each a test): config of wrong type, out of range, with an unknown key, with a missing
key, with a duplicate key, with an unknown benchmark name, a bad report section; a malformed dataset
row (file, line, field), invalid JSON in a dataset, a missing dataset file; a model directory
without weights; a teacher/student vocabulary mismatch; a full disk and a read-only directory for
an output (nothing half-written, nothing already written lost); a malformed expected table; a
missing claim-check table; a bad knockout config and a per-problem table without its columns; a
freeze config without baseline; an unknown performance-benchmark name.

Still to come once the toy workflow runs end to end (issue 8, item 4): kill-and-resume of each
long stage ending with the same tables as an uninterrupted run, and two clean runs giving
identical tables; both compare ``rock report golden`` tables of the runs.
"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rock.cli import main as rock_main
from rock.errors import ConfigError, DataError, ModelError, OutputError

ROOT = Path(__file__).resolve().parents[1]
TOY_CONFIG = ROOT / "tests" / "config_toy" / "config.yaml"


def one_line_error(capsys, stage: str) -> str:
    """The CLI printed exactly one error line for ``stage``; return it."""
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    errors = [ln for ln in err if ln.startswith(f"rock {stage}: error:")]
    assert len(errors) == 1, err
    return errors[0]


def no_leftovers(directory: Path) -> None:
    """No temporary files of rock.atomic (``.<name>.*.tmp``) remain."""
    left = [p.name for p in directory.rglob(".*.tmp*")] if directory.exists() else []
    assert not left, left


# ---- config (rock.config.validate_config, run by the Snakefile before any job) -------------------

def _config_with(tmp_path, edit) -> Path:
    cfg = yaml.safe_load(TOY_CONFIG.read_text())
    edit(cfg)
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _config_error(tmp_path, edit, *, lines: int = 1) -> str:
    from rock.config import load_config

    p = _config_with(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    problems = [ln for ln in msg.splitlines() if ln.startswith(str(p))]
    assert len(problems) == lines, msg                 # one problem line per mistake, naming the file
    return msg


def test_config_wrong_type(tmp_path):
    msg = _config_error(tmp_path, lambda c: c["stage2"].__setitem__("lr", "fast"))
    assert "stage2.lr" in msg and "number" in msg


def test_config_out_of_range(tmp_path):
    msg = _config_error(tmp_path, lambda c: c["knockout"].__setitem__("alpha", 1.5))
    assert "knockout.alpha" in msg


def test_config_unknown_key(tmp_path):
    msg = _config_error(tmp_path, lambda c: c["stage2"].__setitem__("lrr", 1e-6))
    assert "stage2.lrr" in msg and "allowed" in msg


def test_config_missing_key(tmp_path):
    msg = _config_error(tmp_path, lambda c: c["models"].pop("teacher"))
    assert "models.teacher" in msg and "missing" in msg


def test_config_unknown_benchmark_name(tmp_path):
    # one mistake, reported by the schema (not an allowed name) and by the cross-reference check
    # (no data.benchmarks entry): both lines name the file, the key and the value
    msg = _config_error(tmp_path, lambda c: c["evaluation"].__setitem__("benchmarks", ["math501"]),
                        lines=2)
    assert all("evaluation.benchmarks" in ln and "math501" in ln for ln in msg.splitlines()[1:])


def test_config_bad_report_section(tmp_path):
    msg = _config_error(tmp_path, lambda c: c["report"].__setitem__("fail_on_regression", "yes"))
    assert "report.fail_on_regression" in msg and "boolean" in msg


def test_config_duplicate_key_names_the_line(tmp_path):
    from rock.config import load_yaml

    p = tmp_path / "dup.yaml"
    p.write_text("seed: 0\nscale: toy\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3: duplicate key 'seed' \(first defined on line 1\)"):
        load_yaml(p)


# ---- datasets (rock data) ---------------------------------------------------------------------

def _math_row(i, **kw):
    row = {"problem": f"What is {i}+1?", "solution": "x", "answer": str(i + 1), "subject": "Algebra",
           "level": 1, "unique_id": f"test/{i}.json"}
    row.update(kw)
    return row


def test_malformed_dataset_row_names_file_line_field(tmp_path, capsys):
    src = tmp_path / "math500.jsonl"
    rows = [_math_row(0), _math_row(1), {k: v for k, v in _math_row(2).items() if k != "problem"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "data" / "math500.jsonl"
    rc = rock_main(["data", "benchmark", "math500", "--jsonl", str(src), "--out", str(out)])
    line = one_line_error(capsys, "data")
    assert rc == 2 and f"{src}:3" in line and "problem" in line
    assert not out.exists()
    no_leftovers(out.parent)


def test_invalid_json_row_and_missing_dataset(tmp_path, capsys):
    src = tmp_path / "aime24.jsonl"
    src.write_text('{"id": "1", "problem": "p", "answer": "3"}\n{"id": "2", "problem": \n')
    out = tmp_path / "out.jsonl"
    assert rock_main(["data", "benchmark", "aime24", "--jsonl", str(src), "--out", str(out)]) == 2
    line = one_line_error(capsys, "data")
    assert f"{src}:2" in line and "not valid JSON" in line and not out.exists()
    assert rock_main(["data", "benchmark", "aime24", "--jsonl", str(tmp_path / "nope.jsonl"),
                      "--out", str(out)]) == 2
    line = one_line_error(capsys, "data")
    assert "nope.jsonl" in line and "file not found" in line and not out.exists()


# ---- models -------------------------------------------------------------------------------------

def test_model_directory_without_weights(tmp_path):
    from transformers import Qwen3Config

    from rock.distill.trainer import Runtime, load_causal_lm
    import torch

    d = tmp_path / "student"
    Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, head_dim=8).save_pretrained(d)
    runtime = Runtime(torch.device("cpu"), torch.float32)
    with pytest.raises(ModelError) as info:
        load_causal_lm(str(d), runtime, trainable=False)
    msg = str(info.value)
    assert str(d) in msg and "cannot load a causal LM" in msg and "\n" not in msg.split(" (")[0]


def test_missing_local_model_at_toy_scale():
    from rock.config import resolve_model

    cfg = {"models": {"teacher": "results/toy/world/nowhere"}, "scale": "toy", "run_dir": "results/toy"}
    with pytest.raises(ConfigError, match=r"c.yaml: models.teacher: local model directory "
                                          r"'results/toy/world/nowhere' does not exist"):
        resolve_model(cfg, "teacher", "c.yaml")


class _Tok:
    def __init__(self, vocab):
        self.vocab, self.name_or_path = vocab, "tok"

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)


def test_teacher_student_vocabulary_mismatch():
    from rock.distill.losses import shared_vocab

    s = _Tok({"a": 0, "b": 1, "So": 2})
    t = _Tok({"a": 0, "b": 1, "Thus": 2})
    with pytest.raises(ModelError, match=r"student and teacher tokenizers differ .*only in student "
                                         r"\['So'\], only in teacher \['Thus'\]"):
        shared_vocab(s, t, 3, 3)


# ---- outputs: full disk, read-only directory (rock.atomic) ---------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_full_or_readonly_output_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, code):
    from rock import atomic

    out = tmp_path / "results" / "summary.json"
    atomic.write_json(out, {"v": 1})

    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OutputError, match=rf"summary.json: cannot write output \({os.strerror(code)}\)"):
        atomic.write_json(out, {"v": 2})
    assert json.loads(out.read_text()) == {"v": 1}       # nothing already written is lost
    no_leftovers(out.parent)


def test_full_disk_during_the_claim_check(tmp_path, monkeypatch, capsys):
    """A real stage CLI under ENOSPC: exit 2, one error line, no claims_check.csv."""
    from rock import atomic

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "replace", full)
    out = tmp_path / "report" / "claims_check.csv"
    rc = rock_main(["report", "check", "--run-dir", str(tmp_path), "--out", str(out),
                    "--expected", str(ROOT / "results" / "expected" / "paper")])
    line = one_line_error(capsys, "report")
    assert rc == 2 and "No space left on device" in line and "free space" in line
    assert not out.exists() and not out.with_suffix(".md").exists()
    no_leftovers(out.parent)


# ---- report inputs ---------------------------------------------------------------------------------

def test_malformed_expected_table(tmp_path, capsys):
    bad = tmp_path / "claims.csv"
    bad.write_text("id,section_or_figure,metric,paper_value,band,artifact,scale,note\n"
                   "A1,Sec. 2,detect.coverage_at_k100,0.6,within:0.1,,any,\n")
    out = tmp_path / "check.csv"
    assert rock_main(["report", "check", "--run-dir", str(tmp_path), "--out", str(out),
                      "--expected", str(bad)]) == 2
    line = one_line_error(capsys, "report")
    assert f"{bad}:2: field 'band'" in line and "unknown band kind 'within'" in line
    assert not out.exists()


def test_missing_check_table_for_the_report(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert rock_main(["report", "render", "--run-dir", str(tmp_path), "--check",
                      str(tmp_path / "claims_check.csv"), "--out", str(out)]) == 2
    line = one_line_error(capsys, "report")
    assert "claims_check.csv" in line and "rock report check" in line and not out.exists()


# ---- stage configs parsed at the CLI edge ------------------------------------------------------------

def test_knockout_config_out_of_range():
    from rock.knockout.config import from_dict

    with pytest.raises(ConfigError, match=r"cfg.yaml: knockout.n_runs: must be an integer >= 1 \(got 0\)"):
        from_dict({"n_runs": 0}, source="cfg.yaml")
    with pytest.raises(ConfigError, match=r"cfg.yaml: knockout: unknown key\(s\) \[.n_run.\]"):
        from_dict({"n_run": 4}, source="cfg.yaml")


def test_knockout_per_problem_table_without_its_columns():
    import pandas as pd

    from rock.knockout.stats import check_per_problem

    t = pd.DataFrame({"set_id": ["a"], "task": ["math500"], "problem_id": ["1"], "run": [0], "seed": [0]})
    with pytest.raises(DataError, match=r"per_problem.parquet: field 'correct': missing columns"):
        check_per_problem(t, source="per_problem.parquet")


def test_freeze_config_without_baseline():
    from rock.freeze.config import from_section

    with pytest.raises(ConfigError, match="exactly one regime must be the baseline"):
        from_section({"regimes": [{"name": "rock_freeze", "selection": "rock", "lambda": 0.0}]})


# ---- benchmarks summary ----------------------------------------------------------------------------

def test_unknown_performance_benchmark_name():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "bench_nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "unknown benchmark 'bench_nope'" in err[0] and "known:" in err[0]
