"""The files a job reads, as its Snakemake rule names them: ``--in NAME=PATH`` (repeatable).

A rule passes every named entry of its ``input:`` (``params: inputs=job_inputs`` in
``workflow/rules/common.smk``), so the stage reads exactly the files Snakemake tracked for it,
never a path it recomputes from ``run_dir``. Called by hand without ``--in``, a stage falls back to
the file's usual place under the run directory (:mod:`rock.paths`), which is where the rule's input
lies in a workflow run as well::

    files = JobFiles.from_args(args)
    tokens = files.path("tokens", paths.token_stats(run_dir, "post"))
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rock.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="job_inputs", action="append", default=[], metavar="NAME=PATH",
                        help="an input file as the workflow rule names it (repeat; a name may repeat "
                             "for a list); without it the file's place under the run directory")


class JobFiles:
    """Named input paths of one job (``NAME=PATH`` pairs; a repeated name is a list)."""

    def __init__(self, pairs: Sequence[str] = ()):
        self._files: dict[str, list[Path]] = {}
        for pair in pairs:
            name, sep, path = pair.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--in {pair!r}: expected NAME=PATH")
            self._files.setdefault(name, []).append(Path(path))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> JobFiles:
        return cls(getattr(args, "job_inputs", None) or ())

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def path(self, name: str, default: str | Path) -> Path:
        """The one file given as ``name``, else ``default``."""
        given = self._files.get(name)
        if given is None:
            return Path(default)
        if len(given) != 1:
            raise ConfigError(f"--in {name}=...: one path expected, got {len(given)}")
        return given[0]

    def paths(self, name: str, default: Sequence[str | Path]) -> list[Path]:
        """Every file given as ``name`` (in order), else ``default``."""
        return list(self._files.get(name, [Path(p) for p in default]))


def unique_paths(by_key: dict) -> list[Path]:
    """The distinct paths of ``{key: path}`` in first-seen order: what a rule declares."""
    return list(dict.fromkeys(Path(p) for p in by_key.values()))


def keyed_paths(files: JobFiles, name: str, by_key: dict) -> dict:
    """``{key: path}`` of an aggregating job: the rule declares :func:`unique_paths` of ``by_key``
    as its input ``name`` (in that order), and each key gets the file given in its place. Without
    ``--in name=...`` the usual places (``by_key`` itself); a different count is an error."""
    expected = unique_paths(by_key)
    given = files.paths(name, expected)
    if len(given) != len(expected):
        raise ConfigError(f"--in {name}=...: {len(expected)} paths expected (the rule's input "
                          f"'{name}'), got {len(given)}")
    where = dict(zip(expected, given))
    return {key: where[Path(p)] for key, p in by_key.items()}
