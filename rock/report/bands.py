"""Agreement bands: how a measured value is judged against an expected (paper or golden) value.

A band is a short string in the ``band`` column of an expected table (``results/expected/*/``):

==================  ===========================================================================
``abs_tol:x``       ``|measured - expected| <= x``
``rel_tol:x``       ``|measured - expected| <= x * |expected|``
``eq``              equal: numbers within 1e-9 (relative), strings and booleans exactly
``lt:x`` ``le:x``   ``measured < x`` / ``<= x``
``gt:x`` ``ge:x``   ``measured > x`` / ``>= x``
``abs_lt:x``        ``|measured| < x`` (e.g. "no correlation reaches |r| > 0.075", Table 1)
``direction:<0``    sign of the measured value: ``<0``, ``<=0``, ``>0``, ``>=0``
``p_below:x``       a p-value: ``measured < x`` (significant at level x)
``p_above:x``       a p-value: ``measured > x`` (not significant)
``range:[a,b]``     ``a <= measured <= b``
``info``            recorded with both values, never judged (the paper's inconsistencies,
                    qualitative statements)
==================  ===========================================================================

An expected value may list several alternatives separated by ``;`` (the paper contradicts itself:
"1.7;1.4" for the speedup of Sec. 4.3 vs the take-away). Tolerance and equality bands then agree
when the measurement matches ANY alternative and the verdict names which one; threshold bands
(``lt``, ``p_below``, ...) do not use the expected value at all.

Everything here is pure: strings and numbers in, a :class:`Verdict` out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: bands whose verdict depends on the expected value (the others carry their own threshold)
_NEEDS_EXPECTED = ("abs_tol", "rel_tol", "eq")
_KINDS = ("abs_tol", "rel_tol", "eq", "lt", "le", "gt", "ge", "abs_lt", "direction",
          "p_below", "p_above", "range", "info")
_DIRECTIONS = {"<0": lambda m: m < 0, "<=0": lambda m: m <= 0,
               ">0": lambda m: m > 0, ">=0": lambda m: m >= 0}
#: relative tolerance of ``eq`` on floats (values written by different code paths round
#: differently; anything larger is a real difference)
EQ_REL_TOL = 1e-9


class BandError(ValueError):
    """A band string cannot be parsed. The caller adds file, line and field."""


@dataclass(frozen=True)
class Band:
    kind: str
    arg: float | str | tuple[float, float] | None = None

    def __str__(self) -> str:
        if self.kind in ("eq", "info"):
            return self.kind
        if self.kind == "range":
            lo, hi = self.arg
            return f"range:[{_fmt(lo)},{_fmt(hi)}]"
        if self.kind == "direction":
            return f"direction:{self.arg}"
        return f"{self.kind}:{_fmt(self.arg)}"

    @property
    def needs_expected(self) -> bool:
        return self.kind in _NEEDS_EXPECTED


@dataclass(frozen=True)
class Verdict:
    """``agrees`` is None for ``info`` bands (recorded, not judged)."""

    agrees: bool | None
    detail: str


def parse_band(text: str) -> Band:
    """Parse a band string (see the module docstring); raise :class:`BandError` when malformed."""
    s = str(text).strip()
    if not s:
        raise BandError("empty band")
    kind, _, arg = s.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if kind not in _KINDS:
        raise BandError(f"unknown band kind {kind!r}; known: {', '.join(_KINDS)}")
    if kind in ("eq", "info"):
        if arg:
            raise BandError(f"band {kind!r} takes no argument, got {arg!r}")
        return Band(kind)
    if not arg:
        raise BandError(f"band {kind!r} needs an argument, e.g. {kind}:0.05")
    if kind == "direction":
        if arg not in _DIRECTIONS:
            raise BandError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {arg!r}")
        return Band(kind, arg)
    if kind == "range":
        m = re.fullmatch(r"\[\s*([^,\]]+)\s*,\s*([^,\]]+)\s*\]", arg)
        if not m:
            raise BandError(f"range must look like [a,b], got {arg!r}")
        lo, hi = _number(m.group(1)), _number(m.group(2))
        if lo > hi:
            raise BandError(f"range [{lo},{hi}] is empty")
        return Band(kind, (lo, hi))
    x = _number(arg)
    if kind in ("abs_tol", "rel_tol", "abs_lt") and x < 0:
        raise BandError(f"{kind} must be >= 0, got {x}")
    return Band(kind, x)


def parse_expected(text: str) -> list[float | str]:
    """Split an expected value into alternatives (``"1.7;1.4"`` -> ``[1.7, 1.4]``).

    Numbers (including ``2.5e-4`` and percentages ``18%`` -> 0.18) become floats, ``true``/``false``
    become 1.0/0.0, anything else stays a string. Empty text gives ``[]``.
    """
    out: list[float | str] = []
    for part in str(text).split(";"):
        part = part.strip()
        if part:
            out.append(to_value(part))
    return out


def to_value(x) -> float | str:
    """A measured or expected scalar as float when it is numeric, else as a stripped string."""
    if isinstance(x, bool):
        return 1.0 if x else 0.0
    if isinstance(x, (int, float)):
        return float(x)
    if hasattr(x, "item") and not isinstance(x, str):  # numpy / torch scalars
        return to_value(x.item())
    s = str(x).strip()
    if s.lower() in ("true", "false"):
        return 1.0 if s.lower() == "true" else 0.0
    try:
        if s.endswith("%"):
            return float(s[:-1]) / 100.0
        return float(s)
    except ValueError:
        return s


def judge(measured, expected: str, band: Band | str) -> Verdict:
    """Judge ``measured`` against the expected text under ``band``; never raises on values."""
    if isinstance(band, str):
        band = parse_band(band)
    alts = parse_expected(expected)
    m = to_value(measured)
    if band.kind == "info":
        return Verdict(None, "recorded (not judged)")
    if band.kind == "eq":
        hits = [a for a in alts if _equal(m, a)]
        return _alternatives(hits, alts, m, "equal to")
    if isinstance(m, str):
        return Verdict(False, f"measured {m!r} is not a number (band {band})")
    if math.isnan(m):
        return Verdict(False, f"measured NaN (band {band})")
    if band.kind in ("abs_tol", "rel_tol"):
        nums = [a for a in alts if isinstance(a, float)]
        if not nums:
            return Verdict(False, f"expected value {expected!r} has no number for band {band}")
        tol = band.arg
        hits = [a for a in nums
                if abs(m - a) <= (tol if band.kind == "abs_tol" else tol * abs(a)) + 1e-12]
        return _alternatives(hits, nums, m, f"within {band} of")
    x = band.arg
    if band.kind == "direction":
        ok = _DIRECTIONS[x](m)
        return Verdict(ok, f"{_fmt(m)} {'is' if ok else 'is not'} {x}")
    if band.kind == "range":
        lo, hi = x
        ok = lo <= m <= hi
        return Verdict(ok, f"{_fmt(m)} {'in' if ok else 'outside'} [{_fmt(lo)}, {_fmt(hi)}]")
    ops = {"lt": (m < x, "<"), "le": (m <= x, "<="), "gt": (m > x, ">"), "ge": (m >= x, ">="),
           "p_below": (m < x, "<"), "p_above": (m > x, ">"), "abs_lt": (abs(m) < x, "|.| <")}
    ok, sym = ops[band.kind]
    shown = f"|{_fmt(m)}|" if band.kind == "abs_lt" else _fmt(m)
    sym = sym.replace("|.| ", "")
    return Verdict(ok, f"{shown} {sym} {_fmt(x)}" if ok else f"{shown} not {sym} {_fmt(x)}")


def _alternatives(hits, alts, m, what: str) -> Verdict:
    if not alts:
        return Verdict(False, "no expected value to compare with")
    if hits:
        if isinstance(m, float) and all(isinstance(h, float) for h in hits):
            hits = sorted(hits, key=lambda a: abs(m - a))  # name the closest alternative
        which = ""
        if len(alts) > 1:
            which = f" (alternative {_fmt(hits[0])} of {'/'.join(_fmt(a) for a in alts)}"
            which += f"; also within band of {', '.join(_fmt(h) for h in hits[1:])})" \
                if len(hits) > 1 else ")"
        return Verdict(True, f"{_fmt(m)} {what} {_fmt(hits[0])}{which}")
    return Verdict(False, f"{_fmt(m)} not {what} {' or '.join(_fmt(a) for a in alts)}")


def _equal(m, a) -> bool:
    if isinstance(m, float) and isinstance(a, float):
        return m == a or abs(m - a) <= EQ_REL_TOL * max(abs(m), abs(a))
    return str(m) == str(a)


def _number(s: str) -> float:
    v = to_value(s)
    if not isinstance(v, float):
        raise BandError(f"{s!r} is not a number")
    return v


def _fmt(x) -> str:
    """Short, lossless-enough display of a number (4 significant digits) or a string."""
    if isinstance(x, float):
        if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.4g}"
    return str(x)


fmt_value = _fmt


def fmt_value_exact(x) -> str:
    """Lossless text of a value for recording (integers without ``.0``, floats by ``repr``)."""
    v = to_value(x)
    if isinstance(v, float):
        if isinstance(x, (bool, int)) or (math.isfinite(v) and v == int(v) and abs(v) < 1e15):
            return str(int(v))
        return repr(v)
    return v
