"""Per-step records of the freeze hook: resume deduplication, rank sums, engine-log parsing."""

import json

import pytest

from rock.freeze.control import MatchAccumulator
from rock.freeze.train import StepRecorder, freeze_log, merge_histograms, read_step_records


def _stats(frozen, resp=10):
    return {"freeze_response_tokens": resp, "freeze_frozen_tokens": frozen,
            "freeze_weight_sum": resp - frozen, "freeze_frozen_windows": 1,
            "freeze_frozen_fraction": frozen / resp}


def test_resumed_steps_replace_earlier_records_and_ranks_are_summed(tmp_path):
    r0, r1 = StepRecorder(tmp_path / "r0.jsonl", 0), StepRecorder(tmp_path / "r1.jsonl", 1)
    acc = MatchAccumulator()
    acc.target["length"][3] += 1
    r0(0, _stats(2), acc)
    r0(1, _stats(9), None)        # step 1 before a kill ...
    r0(1, _stats(4), None)        # ... redone after the resume: this one counts
    r1(0, _stats(1), None)
    r1(1, _stats(3), None)
    r0(2, _stats(5), None)        # beyond the planned steps: ignored
    with open(tmp_path / "r1.jsonl", "a") as fh:
        fh.write('{"step": 1, "rank": 1, "sta')  # a line cut by a kill
    recs = read_step_records([tmp_path / "r0.jsonl", tmp_path / "r1.jsonl"], total_steps=2)
    df = freeze_log(recs).set_index("step")
    assert list(df.index) == [1, 2]  # engine numbering: after optimizer step 1, 2
    assert df.loc[1, "freeze_frozen_tokens"] == 3 and df.loc[1, "freeze_response_tokens"] == 20
    assert df.loc[2, "freeze_frozen_tokens"] == 7
    assert df.loc[2, "freeze_frozen_fraction"] == pytest.approx(7 / 20)
    assert merge_histograms(recs, 2.0).target["length"][3] == 1


def test_engine_log_with_more_fields_than_header(tmp_path):
    from rock.freeze.runreport import read_engine_log

    p = tmp_path / "log.csv"
    p.write_text("step,generate_seconds,train_seconds,step_seconds,wall_clock,n_response_tokens\n"
                 "1,0.5,0.25,0.75,0.75,40,6,42\n2,0.5,0.5,1.0,1.75,41,3,45\n")
    df = read_engine_log(p)
    assert df["step_seconds"].tolist() == [0.75, 1.0]
    assert df["n_response_tokens"].tolist() == [40, 41]


def test_rock_set_and_frequencies_from_detection(tmp_path):
    import pandas as pd

    from rock import paths
    from rock.errors import DataError
    from rock.freeze.train import load_rock_set

    with pytest.raises(DataError, match="rock detect select"):
        load_rock_set(tmp_path, "context")
    det = paths.detection_dir(tmp_path, "context")
    det.mkdir(parents=True)
    (det / "rocks.json").write_text(json.dumps({"rocks": [7, 3], "window_radius": 2}))
    pd.DataFrame({"token_id": [3, 7, 9], "freq": [10, 40, 1]}).to_parquet(det / "ranking.parquet")
    rocks, radius, freq = load_rock_set(tmp_path, "context")
    assert rocks == [7, 3] and radius == 2
    assert freq.tolist() == [0, 0, 0, 10, 0, 0, 0, 40, 0, 1]
