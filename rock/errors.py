"""Named errors. Each message says what is wrong, where (file, line, field) and how to fix it.

The CLI prints a :class:`RockError` as one line and exits with status 2; nothing half-written is left
behind because every output goes through :mod:`rock.atomic`.
"""

from __future__ import annotations


class RockError(Exception):
    """Base class of every error a user can cause (bad config, data, models, disk)."""


class ConfigError(RockError):
    """A config value has the wrong type or range, is unknown, or is missing."""


class DataError(RockError):
    """A dataset file or row is missing or malformed. Say file, line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, fix: str | None = None):
        where = ":".join(str(x) for x in (file, line) if x is not None)
        parts = [p for p in (where, f"field '{field}'" if field else None, message) if p]
        text = ": ".join(parts)
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)
        self.file, self.line, self.field = file, line, field


class ModelError(RockError):
    """A model directory is unusable (no weights, no tokenizer) or a teacher/student pair mismatches."""


class OutputError(RockError):
    """An output could not be written (disk full, read-only directory)."""
