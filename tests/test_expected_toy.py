"""The toy run's golden numbers (results/expected/toy/): well-formed, documented, and reproduced
by the toy run when one exists in results/toy."""

from pathlib import Path

import pytest

from rock import paths
from rock.report.check import run_check
from rock.report.expected import GOLDEN_COLUMNS, load_table
from rock.report.extract import Context

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "results" / "expected" / "toy"
RUN = ROOT / "results" / "toy"


def test_golden_table_is_well_formed_and_documented():
    golden = TOY / "golden.csv"
    assert golden.read_text().splitlines()[0] == ",".join(GOLDEN_COLUMNS)
    rows = load_table(golden)                      # metric keys, bands and ids are validated here
    assert all(r.kind == "golden" and r.expected for r in rows)
    readme = (TOY / "README.md").read_text()
    for piece in ("rock report golden", "recorded:", "git commit:", "run directory:"):
        assert piece in readme


@pytest.mark.skipif(not (paths.world_dir(RUN) / "world.json").is_file(),
                    reason="no toy run in results/toy (run the toy workflow first)")
def test_the_toy_run_reproduces_its_golden_numbers():
    rows = load_table(TOY / "golden.csv")
    table = run_check(rows, Context(run_dir=RUN), "toy")
    bad = table[table["status"] == "disagrees"]
    assert bad.empty, bad[["id", "metric", "expected", "measured", "band"]].to_string()


def test_golden_rows_never_hold_run_to_run_bookkeeping():
    """A resumed run (resumed_from_step) and wall-clock speedups differ between identical runs."""
    from rock.report.extract import REGISTRY
    from rock.report.golden import VOLATILE

    assert VOLATILE.search("resumed_from_step") and VOLATILE.search("timings.total.wall_s")
    assert not VOLATILE.search("pass_at_1.math500.none.pass_at_1")
    assert not REGISTRY["freeze.speedup_throughput"].golden and not REGISTRY["freeze.speedup_tta"].golden
    metrics = {r.metric for r in load_table(TOY / "golden.csv")}
    assert not any("resumed_from" in m or "speedup" in m for m in metrics)
