"""The data stage's library (:mod:`rock.data`): sources, row readers, prompt-pool slicing and
benchmark normalisation; pure functions over rows, I/O only in ``make_*`` and the readers."""


from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rock import paths
from rock.atomic import write_json, write_jsonl
from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: normalised field -> source field names tried in order (hub names first; the toy world writes
#: the hub's names). Maxwell-Jia/AIME_2024 capitalises its fields; MathArena numbers problems.
BENCHMARK_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "math500": {"problem": ("problem",), "solution": ("solution",), "answer": ("answer",),
                "subject": ("subject",), "level": ("level",), "unique_id": ("unique_id",)},
    "ifeval": {"key": ("key",), "prompt": ("prompt",),
               "instruction_id_list": ("instruction_id_list",), "kwargs": ("kwargs",)},
    "aime24": {"id": ("ID", "id"), "problem": ("Problem", "problem"), "answer": ("Answer", "answer")},
    "aime25": {"id": ("id",), "problem": ("problem",), "answer": ("answer",)},
    "hmmt25": {"id": ("problem_idx", "id"), "problem": ("problem",), "answer": ("answer",)},
}
#: the field that identifies a row (must be unique within a benchmark)
ID_FIELD = {"math500": "unique_id", "ifeval": "key", "aime24": "id", "aime25": "id", "hmmt25": "id"}
#: lm-eval IFEval instruction ids look like "group:name" (e.g. "keywords:existence")
INSTRUCTION_ID = re.compile(r"^[a-z_]+:[a-z0-9_]+$")
#: the slice report written beside prompts_stage1.jsonl (:func:`slice_report`)
PROMPTS_REPORT = "prompts_report.json"
#: speakers that count as the user in a conversation turn ({"from", "value"} or {"role", "content"})
HUMAN_SPEAKERS = ("human", "user")

assert set(BENCHMARK_FIELDS) == set(paths.BENCHMARKS)


# ------------------------------------------------------------------------------------------------
# Config dataclasses (built at the CLI edge)
# ------------------------------------------------------------------------------------------------

@dataclass
class Source:
    """Where rows come from: a hub dataset (``hub`` id + ``split``) or a local ``jsonl`` file."""

    hub: str | None = None
    split: str = "train"
    jsonl: str | None = None
    streaming: bool = False
    """hub only: iterate lazily (``load_dataset(..., streaming=True)``) instead of downloading"""

    def __post_init__(self) -> None:
        if (self.hub is None) == (self.jsonl is None):
            raise ConfigError("give exactly one source: a hub dataset id or a local jsonl file")

    @property
    def label(self) -> str:
        """Names the source in errors: the file, or ``hub:<id>[<split>]``."""
        return self.jsonl if self.jsonl is not None else f"hub:{self.hub}[{self.split}]"


@dataclass
class PoolConfig:
    """The prompt pool and the two stage slices (paper App. C)."""

    source: Source
    stage1: tuple[int, int]
    stage2: tuple[int, int]
    prompt_field: str = "conversations"
    domain_field: str | None = "domain"
    domain: str | None = "math"

    def __post_init__(self) -> None:
        self.stage1, self.stage2 = tuple(self.stage1), tuple(self.stage2)
        for name, (start, end) in (("stage1", self.stage1), ("stage2", self.stage2)):
            if not 0 <= start < end:
                raise ConfigError(f"{name} slice [{start}, {end}): need 0 <= start < end")
        if self.stage1[0] < self.stage2[1] and self.stage2[0] < self.stage1[1]:
            raise ConfigError(f"stage1 slice {list(self.stage1)} and stage2 slice "
                              f"{list(self.stage2)} overlap; stage 2 uses separate prompts")
        if (self.domain_field is None) != (self.domain is None):
            raise ConfigError("domain_field and domain go together (both set or both null)")

    @property
    def needed(self) -> int:
        """How many domain rows must be read: the largest slice end."""
        return max(self.stage1[1], self.stage2[1])


# ------------------------------------------------------------------------------------------------
# Reading rows (I/O edge)
# ------------------------------------------------------------------------------------------------

def missing_file_fix(path: str | Path) -> str:
    """How to make a missing input file (toy world files come from rule toy_world)."""
    if "/world/raw/" in str(path).replace("\\", "/"):
        return ("build the toy world first: `snakemake --profile workflow/profiles/toy` "
                "or `rock toy build --config tests/config_toy/config.yaml`")
    return "check the path, or use data.source: hub"


def read_jsonl(path: str | Path, *, missing_fix: str | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, row)`` for each non-blank line; bad JSON is a :class:`DataError`.
    ``missing_fix`` says how to make the file if it does not exist."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=str(path), fix=missing_fix or missing_file_fix(path))
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON ({err.msg})", file=str(path), line=lineno) from None
            if not isinstance(row, dict):
                raise DataError(f"a row must be a JSON object, got {type(row).__name__}",
                                file=str(path), line=lineno)
            yield lineno, row


def read_string_rows(path: str | Path, fields: Sequence[str], *, fix: str,
                     missing_fix: str | None = None) -> list[dict]:
    """Every row of a jsonl whose ``fields`` must all be strings (the pipeline's own files:
    prompts, teacher samples); a row lacking one is a :class:`DataError` naming file, line and
    field, with ``fix``."""
    rows = []
    for lineno, row in read_jsonl(path, missing_fix=missing_fix):
        for key in fields:
            if not isinstance(row.get(key), str):
                raise DataError("missing or not a string", file=str(path), line=lineno, field=key, fix=fix)
        rows.append(row)
    return rows


def load_hub(dataset: str, split: str, *, streaming: bool = False) -> Iterable[Mapping]:
    """``datasets.load_dataset(dataset, split=split)``; imported here so that the toy run and the
    CLI's ``--help`` never import ``datasets``."""
    import datasets

    log.info("loading %s (split %s%s) from the hub", dataset, split,
             ", streaming" if streaming else "")
    return datasets.load_dataset(dataset, split=split, streaming=streaming)


def iter_rows(source: Source) -> Iterator[tuple[int, Mapping]]:
    """``(line, row)`` pairs of a source: jsonl line numbers, or 1-based hub row numbers."""
    if source.jsonl is not None:
        yield from read_jsonl(source.jsonl)
    else:
        for index, row in enumerate(load_hub(source.hub, source.split, streaming=source.streaming)):
            yield index + 1, row


# ------------------------------------------------------------------------------------------------
# Prompt pool (pure)
# ------------------------------------------------------------------------------------------------

def first_human_turn(conversation: Any, *, file: str, line: int, field: str) -> str:
    """The first user turn of an OpenThoughts-style conversation.

    Turns are ``{"from": "human", "value": ...}`` (OpenThoughts3) or ``{"role": "user",
    "content": ...}``; a plain string is taken as the prompt itself.
    """
    if isinstance(conversation, str):
        text = conversation
    elif isinstance(conversation, list):
        text = None
        for turn in conversation:
            if not isinstance(turn, Mapping):
                raise DataError("conversation turns must be objects", file=file, line=line,
                                field=field)
            speaker = turn.get("from", turn.get("role"))
            if speaker in HUMAN_SPEAKERS:
                text = turn.get("value", turn.get("content"))
                break
        if text is None:
            raise DataError(f"no turn from {' or '.join(HUMAN_SPEAKERS)}", file=file, line=line,
                            field=field)
    else:
        raise DataError(f"expected a conversation (list of turns) or a string, got "
                        f"{type(conversation).__name__}", file=file, line=line, field=field)
    if not isinstance(text, str) or not text.strip():
        raise DataError("the first human turn is empty", file=file, line=line, field=field)
    return text


def pool_prompts(rows: Iterable[tuple[int, Mapping]], cfg: PoolConfig, *, file: str) -> list[str]:
    """Prompts of the domain-filtered pool in order, up to position ``cfg.needed`` (exclusive).

    Rows of other domains are skipped without further checks; a kept row must have a usable
    prompt. Stops reading as soon as enough prompts are collected (the pool has 1.2M rows).
    """
    prompts: list[str] = []
    progress = tqdm(total=cfg.needed, desc="prompt pool", unit="prompt", mininterval=5)
    with progress:
        for line, row in rows:
            if not isinstance(row, Mapping):
                raise DataError("a row must be an object", file=file, line=line)
            if cfg.domain_field is not None:
                if cfg.domain_field not in row:
                    raise DataError("missing", file=file, line=line, field=cfg.domain_field)
                if row[cfg.domain_field] != cfg.domain:
                    continue
            if cfg.prompt_field not in row:
                raise DataError("missing", file=file, line=line, field=cfg.prompt_field)
            prompts.append(first_human_turn(row[cfg.prompt_field], file=file, line=line,
                                            field=cfg.prompt_field))
            progress.update(1)
            if len(prompts) >= cfg.needed:
                break
    if len(prompts) < cfg.needed:
        kept = f"rows with {cfg.domain_field} == {cfg.domain!r}" if cfg.domain_field else "rows"
        raise DataError(f"only {len(prompts)} {kept}; the slices need {cfg.needed}", file=file,
                        fix="lower data.stage1_slice / data.stage2_slice or use a larger pool")
    return prompts


def slice_rows(prompts: list[str], start: int, end: int) -> list[dict]:
    """``{"id": "prompt-<position>", "prompt"}`` rows for positions [start, end)."""
    if not 0 <= start < end <= len(prompts):
        raise ValueError(f"slice [{start}, {end}) outside a pool of {len(prompts)} prompts")
    return [{"id": f"prompt-{pos}", "prompt": prompts[pos]} for pos in range(start, end)]


def slice_report(prompts: list[str], stage1: tuple[int, int], stage2: tuple[int, int]) -> dict:
    """Unique prompts per slice and the overlap of the two slices (identical prompt text)."""
    slices = {name: prompts[a:b] for name, (a, b) in (("stage1", stage1), ("stage2", stage2))}
    unique = {name: set(rows) for name, rows in slices.items()}
    report = {name: {"positions": list(span), "rows": len(slices[name]), "unique_prompts": len(unique[name]),
                     "repeated_rows": len(slices[name]) - len(unique[name])}
              for name, span in (("stage1", stage1), ("stage2", stage2))}
    shared = unique["stage1"] & unique["stage2"]
    report["overlap_unique_prompts"] = len(shared)
    report["stage2_rows_in_stage1"] = sum(p in shared for p in slices["stage2"])
    report["separate"] = not shared
    return report


# ------------------------------------------------------------------------------------------------
# Benchmarks (pure)
# ------------------------------------------------------------------------------------------------

def _pick(row: Mapping, names: tuple[str, ...], *, file: str, line: int) -> tuple[str, Any]:
    for name in names:
        if name in row:
            return name, row[name]
    raise DataError("missing", file=file, line=line, field=names[0])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any, *, file: str, line: int, field: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line,
                        field=field)
    if not allow_empty and not value.strip():
        raise DataError("is empty", file=file, line=line, field=field)
    return value


def _answer(value: Any, *, file: str, line: int, field: str) -> str:
    """Competition answers are strings; integer answers (AIME on the hub) become strings."""
    if _is_int(value):
        return str(value)
    return _text(value, file=file, line=line, field=field)


def _row_id(value: Any, *, file: str, line: int, field: str) -> str:
    if _is_int(value):
        return str(value)
    return _text(value, file=file, line=line, field=field)


def normalise_row(name: str, row: Mapping, *, file: str, line: int) -> dict:
    """One benchmark row in the normalised format of ``name``; :class:`DataError` if malformed."""
    if name not in BENCHMARK_FIELDS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARK_FIELDS)}")
    if not isinstance(row, Mapping):
        raise DataError("a row must be an object", file=file, line=line)
    got = {out: _pick(row, names, file=file, line=line)
           for out, names in BENCHMARK_FIELDS[name].items()}
    where = dict(file=file, line=line)

    if name == "math500":
        out = {}
        for key in ("problem", "answer", "subject", "unique_id"):
            field, value = got[key]
            out[key] = _text(value, field=field, **where)
        field, value = got["solution"]
        out["solution"] = _text(value, field=field, allow_empty=True, **where)
        field, value = got["level"]
        if not _is_int(value) or value < 1:
            raise DataError(f"expected a positive integer, got {value!r}", field=field, **where)
        out["level"] = value
        return {k: out[k] for k in BENCHMARK_FIELDS[name]}

    if name == "ifeval":
        field, key = got["key"]
        if not _is_int(key):
            raise DataError(f"expected an integer, got {key!r}", field=field, **where)
        field, prompt = got["prompt"]
        prompt = _text(prompt, field=field, **where)
        field, ids = got["instruction_id_list"]
        if not isinstance(ids, list) or not ids:
            raise DataError("expected a non-empty list of instruction ids", field=field, **where)
        for item in ids:
            if not isinstance(item, str) or not INSTRUCTION_ID.match(item):
                raise DataError(f"{item!r} is not an lm-eval instruction id (group:name)",
                                field=field, **where)
        field, kwargs = got["kwargs"]
        if (not isinstance(kwargs, list) or len(kwargs) != len(ids)
                or not all(isinstance(k, Mapping) for k in kwargs)):
            raise DataError(f"expected a list of {len(ids)} objects, one per instruction id",
                            field=field, **where)
        return {"key": key, "prompt": prompt, "instruction_id_list": list(ids),
                "kwargs": [dict(k) for k in kwargs]}

    # aime24, aime25, hmmt25
    field, value = got["id"]
    row_id = _row_id(value, field=field, **where)
    field, value = got["problem"]
    problem = _text(value, field=field, **where)
    field, value = got["answer"]
    answer = _answer(value, field=field, **where)
    return {"id": row_id, "problem": problem, "answer": answer}


def normalise_benchmark(name: str, rows: Iterable[tuple[int, Mapping]], *, file: str) -> list[dict]:
    """Normalise every row; ids must be unique; an empty benchmark is an error."""
    out: list[dict] = []
    seen: dict[Any, int] = {}
    id_field = ID_FIELD[name]
    for line, row in rows:
        norm = normalise_row(name, row, file=file, line=line)
        key = norm[id_field]
        if key in seen:
            raise DataError(f"duplicate {id_field} {key!r} (first on line {seen[key]})", file=file,
                            line=line, field=BENCHMARK_FIELDS[name][id_field][0])
        seen[key] = line
        out.append(norm)
    if not out:
        raise DataError(f"no rows for benchmark {name}", file=file)
    return out


# ------------------------------------------------------------------------------------------------
# Stage entry points
# ------------------------------------------------------------------------------------------------

def make_prompts(cfg: PoolConfig, out: Mapping[int, str | Path]) -> dict[int, Path]:
    """Write the stage-1 and stage-2 prompt files (``out`` maps stage -> path; by default
    :func:`rock.paths.prompts`); returns stage -> path."""
    prompts = pool_prompts(iter_rows(cfg.source), cfg, file=cfg.source.label)
    written = {}
    report = slice_report(prompts, cfg.stage1, cfg.stage2)
    for stage, (start, end) in ((1, cfg.stage1), (2, cfg.stage2)):
        path = Path(out[stage])
        write_jsonl(path, slice_rows(prompts, start, end))
        log.info("stage %d: %d prompts (positions %d-%d, %d unique) -> %s", stage, end - start, start,
                 end, report[f"stage{stage}"]["unique_prompts"], path)
        written[stage] = path
    report_path = Path(out[1]).with_name(PROMPTS_REPORT)
    write_json(report_path, report)
    if not report["separate"]:
        log.warning("stage 2 is not a separate prompt set: %d unique prompts (%d stage-2 rows) also in "
                    "stage 1 (%s)", report["overlap_unique_prompts"], report["stage2_rows_in_stage1"],
                    report_path)
    return written


def make_benchmark(name: str, source: Source, out: str | Path) -> Path:
    """Write benchmark ``name`` in the normalised format to ``out`` (by default
    :func:`rock.paths.benchmark`)."""
    rows = normalise_benchmark(name, iter_rows(source), file=source.label)
    path = Path(out)
    write_jsonl(path, rows)
    log.info("%s: %d rows from %s -> %s", name, len(rows), source.label, path)
    return path


__all__ = ["BENCHMARK_FIELDS", "HUMAN_SPEAKERS", "ID_FIELD", "INSTRUCTION_ID", "PROMPTS_REPORT", "PoolConfig", "Source", "first_human_turn", "iter_rows", "load_hub", "make_benchmark", "make_prompts", "missing_file_fix", "normalise_benchmark", "normalise_row", "pool_prompts", "read_jsonl", "read_string_rows", "slice_report", "slice_rows"]
