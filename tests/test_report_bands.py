"""Agreement bands (rock.report.bands): parsing and verdicts on hand-checkable numbers."""

import math

import pytest

from rock.report.bands import (Band, BandError, fmt_value_exact, judge, parse_band, parse_expected,
                               to_value)


@pytest.mark.parametrize("text,band", [
    ("abs_tol:0.05", Band("abs_tol", 0.05)), ("rel_tol:0.2", Band("rel_tol", 0.2)),
    ("eq", Band("eq")), ("info", Band("info")), ("direction:<0", Band("direction", "<0")),
    ("p_below:1e-30", Band("p_below", 1e-30)), ("range:[0.1, 0.3]", Band("range", (0.1, 0.3))),
    ("abs_lt:0.075", Band("abs_lt", 0.075)), ("gt:0.70", Band("gt", 0.70)),
])
def test_parse_roundtrip(text, band):
    assert parse_band(text) == band
    assert parse_band(str(band)) == band


@pytest.mark.parametrize("bad", ["", "tol:0.1", "abs_tol", "abs_tol:x", "eq:3", "range:[3,1]",
                                 "range:0,1", "direction:<<0", "rel_tol:-0.1"])
def test_parse_rejects(bad):
    with pytest.raises(BandError):
        parse_band(bad)


def test_expected_alternatives_and_percent():
    assert parse_expected("1.7;1.4") == [1.7, 1.4]
    assert parse_expected("18%") == [0.18]
    assert parse_expected("Qwen/Qwen3-4B") == ["Qwen/Qwen3-4B"]
    assert parse_expected("") == []
    assert to_value(True) == 1.0 and to_value("false") == 0.0


def test_abs_and_rel_tol():
    assert judge(0.62, "0.60", "abs_tol:0.05").agrees
    assert not judge(0.66, "0.60", "abs_tol:0.05").agrees
    assert judge(0.65, "0.60", "abs_tol:0.05").agrees          # boundary is inside
    assert judge(1.9, "1.7", "rel_tol:0.2").agrees              # |1.9-1.7| = 0.2 <= 0.34
    assert not judge(2.1, "1.7", "rel_tol:0.2").agrees          # 0.4 > 0.34


def test_inconsistent_paper_values_name_the_alternative():
    v = judge(1.45, "1.7;1.4", "rel_tol:0.2")
    assert v.agrees and "alternative 1.4" in v.detail
    v = judge(1.75, "1.7;1.4", "rel_tol:0.05")
    assert v.agrees and "1.7" in v.detail
    v = judge(3.0, "1.7;1.4", "rel_tol:0.2")
    assert not v.agrees and "1.7 or 1.4" in v.detail


def test_thresholds_and_directions():
    assert judge(-0.06, "", "abs_lt:0.075").agrees
    assert not judge(-0.08, "-0.06", "abs_lt:0.075").agrees
    assert judge(1e-33, "1e-30", "p_below:1e-30").agrees
    assert not judge(1e-20, "1e-30", "p_below:1e-30").agrees
    assert judge(0.33, "0.3", "p_above:0.30").agrees
    assert judge(-0.02, "<0", "direction:<0").agrees
    assert not judge(0.0, "<0", "direction:<0").agrees
    assert judge(0.0, "", "direction:<=0").agrees
    assert judge(0.2, "", "range:[0.1,0.3]").agrees and not judge(0.31, "", "range:[0.1,0.3]").agrees


def test_eq_numbers_strings_booleans():
    assert judge(2e-5, "2e-5", "eq").agrees
    assert judge(16384, "16384", "eq").agrees
    assert not judge(1024, "16384", "eq").agrees
    assert judge(False, "false", "eq").agrees
    assert judge("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Instruct-2507", "eq").agrees
    assert not judge("Qwen/Qwen3-4B", "Qwen/Qwen3-8B", "eq").agrees
    assert judge("0.05,0.1,0.2", "0.05,0.1,0.2", "eq").agrees


def test_info_is_never_judged_and_bad_measurements_disagree():
    assert judge(123, "anything", "info").agrees is None
    assert judge("n/a", "0.5", "abs_tol:0.1").agrees is False
    assert judge(math.nan, "0.5", "abs_tol:0.1").agrees is False


def test_exact_formatting_is_lossless():
    assert fmt_value_exact(0.1 + 0.2) == repr(0.1 + 0.2)
    assert fmt_value_exact(7) == "7" and fmt_value_exact(True) == "1"
    assert float(fmt_value_exact(1 / 3)) == 1 / 3
