"""Expected tables (``results/expected/``): the paper's claims and the toy run's golden numbers.

Two kinds of table, one row per checked number:

``results/expected/paper/claims.csv`` (kind ``claim``), columns :data:`CLAIM_COLUMNS`:
    id, section_or_figure, metric, paper_value, band, artifact, scale, note
    and optionally :data:`TOY_COLUMNS`: toy, toy_band, toy_reason (issue 14). ``toy`` is
    ``direction`` (must hold on the toy, judged with ``toy_band``: a disagreement fails the check),
    ``magnitude`` (paper scale only: shown on the toy, never gating; the default) or ``n/a`` (with
    the reason in ``toy_reason``).
``results/expected/toy/golden.csv`` (kind ``golden``), columns :data:`GOLDEN_COLUMNS`:
    id, metric, value, band, artifact, note

``metric`` is a key of :data:`rock.report.extract.REGISTRY` (or a generic ``json:`` key);
``band`` is a :mod:`rock.report.bands` string; ``paper_value`` may hold alternatives separated by
``;`` where the paper contradicts itself; ``scale`` is ``any`` (checked on every run, the toy
included) or ``paper`` (a hyperparameter or data size: only meaningful on the paper-scale run).

Claims never fail a run (they are the reproduction's findings); golden rows do (a toy regression).
A malformed table is a :class:`rock.errors.DataError` naming the file, line and field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from rock.errors import DataError
from rock.report import bands
from rock.report.extract import resolve

CLAIM_COLUMNS = ("id", "section_or_figure", "metric", "paper_value", "band", "artifact", "scale", "note")
GOLDEN_COLUMNS = ("id", "metric", "value", "band", "artifact", "note")
TOY_COLUMNS = ("toy", "toy_band", "toy_reason")
TOY_KINDS = ("direction", "magnitude", "n/a")
CLAIMS_FILE, GOLDEN_FILE = "claims.csv", "golden.csv"
SCALES = ("any", "paper")


@dataclass(frozen=True)
class ExpectedRow:
    id: str
    kind: str             # "claim" or "golden"
    section: str
    metric: str
    expected: str         # paper_value (claims) or value (golden), as written
    band: bands.Band
    artifact: str
    scale: str
    note: str
    file: str
    line: int
    toy: str = "magnitude"
    """claims: ``direction``, ``magnitude`` or ``n/a`` (:data:`TOY_KINDS`); golden rows: ``magnitude``"""
    toy_band: bands.Band | None = None
    """the band a ``direction`` claim is judged with on the toy"""
    toy_reason: str = ""


def table_files(path: str | Path) -> list[Path]:
    """``path`` is a table file or a directory holding ``claims.csv`` and/or ``golden.csv``."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        found = [p / n for n in (CLAIMS_FILE, GOLDEN_FILE) if (p / n).is_file()]
        if found:
            return found
        raise DataError(f"no {CLAIMS_FILE} or {GOLDEN_FILE} in this directory", file=str(p),
                        fix="pass results/expected/paper or results/expected/toy")
    raise DataError("expected table not found", file=str(p),
                    fix="pass an existing expected-table file or directory")


def load_table(path: str | Path) -> list[ExpectedRow]:
    """Read one expected table; validate columns, ids, bands, scales and metric keys."""
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        if set(CLAIM_COLUMNS) <= set(header):
            kind, value_col = "claim", "paper_value"
        elif set(GOLDEN_COLUMNS) <= set(header):
            kind, value_col = "golden", "value"
        else:
            missing_c = [c for c in CLAIM_COLUMNS if c not in header]
            missing_g = [c for c in GOLDEN_COLUMNS if c not in header]
            missing = missing_c if len(missing_c) <= len(missing_g) else missing_g
            raise DataError(f"header lacks column(s) {missing}", file=str(path), line=1,
                            field=missing[0], fix=f"claims tables need {', '.join(CLAIM_COLUMNS)}; "
                            f"golden tables need {', '.join(GOLDEN_COLUMNS)}")
        rows: list[ExpectedRow] = []
        seen: dict[str, int] = {}
        for rec in reader:
            line = reader.line_num
            if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                continue
            rid = (rec["id"] or "").strip()
            if not rid:
                raise DataError("empty id", file=str(path), line=line, field="id",
                                fix="give every row a unique id")
            if rid in seen:
                raise DataError(f"duplicate id {rid!r} (first on line {seen[rid]})", file=str(path),
                                line=line, field="id", fix="make ids unique")
            seen[rid] = line
            metric = (rec["metric"] or "").strip()
            try:
                resolve(metric)
            except KeyError:
                raise DataError(f"unknown metric {metric!r}", file=str(path), line=line,
                                field="metric", fix="use a key of rock.report.extract.REGISTRY "
                                "(`rock report contract` lists them) or json:<relpath>#<key>") from None
            try:
                band = bands.parse_band(rec["band"] or "")
            except bands.BandError as err:
                raise DataError(str(err), file=str(path), line=line, field="band",
                                fix="see rock/report/bands.py for the band syntax") from None
            expected = (rec[value_col] or "").strip()
            if band.needs_expected and not bands.parse_expected(expected):
                raise DataError(f"band {band} needs a value", file=str(path), line=line,
                                field=value_col, fix="fill in the expected value")
            scale = (rec.get("scale") or "any").strip() if kind == "claim" else "any"
            if scale not in SCALES:
                raise DataError(f"scale {scale!r} is not one of {SCALES}", file=str(path), line=line,
                                field="scale", fix="use 'any' or 'paper'")
            toy, toy_band, reason = _toy_columns(rec, kind, path, line)
            rows.append(ExpectedRow(
                id=rid, kind=kind, section=(rec.get("section_or_figure") or "").strip(),
                metric=metric, expected=expected, band=band,
                artifact=(rec["artifact"] or "").strip(), scale=scale,
                note=(rec["note"] or "").strip(), file=str(path), line=line,
                toy=toy, toy_band=toy_band, toy_reason=reason))
    return rows


def _toy_columns(rec: dict, kind: str, path: Path, line: int) -> tuple[str, bands.Band | None, str]:
    """``(toy, toy_band, toy_reason)`` of a claims row (defaults: magnitude, none, '')."""
    toy = (rec.get("toy") or "magnitude").strip() if kind == "claim" else "magnitude"
    reason = (rec.get("toy_reason") or "").strip()
    if toy not in TOY_KINDS:
        raise DataError(f"toy kind {toy!r} is not one of {TOY_KINDS}", file=str(path), line=line,
                        field="toy", fix="direction (gates the toy), magnitude or n/a")
    if toy == "n/a" and not reason:
        raise DataError("an n/a claim needs its reason", file=str(path), line=line,
                        field="toy_reason", fix="say why the toy cannot test this claim")
    text = (rec.get("toy_band") or "").strip()
    if toy != "direction":
        return toy, None, reason
    try:
        band = bands.parse_band(text)
    except bands.BandError as err:
        raise DataError(f"direction claim: {err}", file=str(path), line=line, field="toy_band",
                        fix="give the band the toy is judged with (rock/report/bands.py)") from None
    if band.kind == "info":
        raise DataError("a direction claim cannot have an 'info' toy band", file=str(path),
                        line=line, field="toy_band", fix="use a judging band or toy kind magnitude")
    return toy, band, reason


def load_expected(paths: list[str | Path]) -> list[ExpectedRow]:
    """All rows of every table under ``paths`` (files or directories), in order."""
    rows: list[ExpectedRow] = []
    ids: dict[tuple[str, str], str] = {}
    for p in paths:
        for f in table_files(p):
            for r in load_table(f):
                key = (r.kind, r.id)
                if key in ids:
                    raise DataError(f"id {r.id!r} also in {ids[key]}", file=r.file, line=r.line,
                                    field="id", fix="ids must be unique across tables of one kind")
                ids[key] = r.file
                rows.append(r)
    return rows


def write_golden(path: str | Path, rows: list[dict]) -> None:
    """Write a golden table atomically (columns :data:`GOLDEN_COLUMNS`)."""
    from rock.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(GOLDEN_COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in GOLDEN_COLUMNS})
