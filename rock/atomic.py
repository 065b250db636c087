"""Atomic outputs: write to a temporary sibling, then rename (DESIGN.md, house rules).

A killed job or a full disk never leaves a file (or a directory) that looks finished.

    with atomic_path("out/table.parquet") as tmp:
        df.to_parquet(tmp)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from rock.errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    With ``directory=True`` the temporary path is an empty directory and an existing ``path``
    directory is replaced as a whole.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        os.chmod(tmp, _default_mode(0o777))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, _default_mode(0o666))  # mkstemp makes 0600; outputs are shared files
    try:
        yield tmp
        if directory:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        else:
            os.replace(tmp, final)
    except OSError as err:
        _cleanup(tmp)
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise OutputError(f"{final}: cannot write output ({os.strerror(err.errno)}); "
                              "free space or choose another results directory") from err
        raise
    except BaseException:
        _cleanup(tmp)
        raise


def _default_mode(base: int) -> int:
    """``base`` less the process umask: the mode ``open()``/``mkdir()`` would have given."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def _cleanup(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_figure(fig, outputs, *, dpi: int = 150) -> None:
    """Save a matplotlib figure atomically to every path in ``outputs`` (format from the suffix:
    ``.png``, ``.pdf``), then close it."""
    import matplotlib.pyplot as plt

    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=Path(out).suffix.lstrip("."), dpi=dpi)
    plt.close(fig)
