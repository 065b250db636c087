"""IFEval without a network (paper Section 5.2, IFEval [92]; issue: "IFEval offline").

lm-eval scores IFEval with Google's instruction checkers (``lm_eval.tasks.ifeval``). Importing that
module calls ``nltk.download("punkt_tab")`` when the punkt sentence tokenizer data is missing; no
Python package ships it. Offline the download fails (or, behind some firewalls, waits for a
timeout) and lm-eval then prints "Downloaded punkt_tab" anyway. Only two checkers need the data
(measured with nltk 3.10 / lm-eval 0.4.13 by running every registered checker without punkt_tab,
see tests/test_evaluate_ifeval.py): sentence counting and capital-word counting.

Policy:
- :func:`import_ifeval` imports lm-eval's module with ``nltk.download`` disabled when the data is
  absent, so the import never touches the network; its stray print goes to the log.
- :func:`check_rows` refuses, with a clear error, to score rows whose instructions need punkt_tab
  when the data is absent, instead of scoring them as failures. The toy world's IFEval rows
  (``rock toy``) use only instructions outside :data:`PUNKT_INSTRUCTIONS`, so the toy run scores
  real lm-eval IFEval offline. At paper scale the generate image downloads punkt_tab at build time
  into /opt/nltk_data and sets ``NLTK_DATA=/opt/nltk_data`` (containers/generate.def).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable
from unittest import mock

from rock.errors import DataError

log = logging.getLogger(__name__)

#: IFEval instruction ids whose lm-eval checker needs nltk's punkt_tab data
PUNKT_INSTRUCTIONS = frozenset({
    "length_constraints:number_sentences",   # instructions_util.count_sentences (punkt)
    "change_case:capital_word_frequency",    # nltk.word_tokenize (punkt_tab)
})
PUNKT_FIX = ("download it once with `python -m nltk.downloader -d /opt/nltk_data punkt_tab` and set "
             "NLTK_DATA=/opt/nltk_data (the generate image does both at build time), or point NLTK_DATA "
             "at a copy")


def punkt_available() -> bool:
    """Whether nltk finds ``tokenizers/punkt_tab`` on its data path (``NLTK_DATA`` included)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
        return True
    except LookupError:
        return False


def seed_language_detection(seed: int = 0) -> None:
    """Make IFEval's language checks deterministic. ``langdetect`` (used by the checkers of
    ``language:response_language`` and ``change_case:english_capital`` / ``english_lowercase``)
    samples at random unless ``DetectorFactory.seed`` is set, so the same response could pass in one
    process and fail in the next (seen on the toy: 1 of 120 teacher IFEval scores flipped between two
    runs with identical responses)."""
    from langdetect import DetectorFactory

    DetectorFactory.seed = seed


def import_ifeval():
    """Import ``lm_eval.tasks.ifeval.utils`` without any download attempt, with deterministic
    language detection; returns the module."""
    import importlib
    import sys

    seed_language_detection()
    name = "lm_eval.tasks.ifeval.utils"
    if name in sys.modules:
        return sys.modules[name]
    if punkt_available():
        return importlib.import_module(name)
    import nltk

    def _no_download(*args, **kwargs):
        log.info("nltk punkt_tab is not installed; skipping lm-eval's download attempt (offline). "
                 "IFEval rows with %s cannot be scored", sorted(PUNKT_INSTRUCTIONS))
        return False

    out = io.StringIO()
    with mock.patch.object(nltk, "download", _no_download), contextlib.redirect_stdout(out):
        module = importlib.import_module(name)
    if out.getvalue().strip():
        log.debug("lm-eval ifeval import printed: %s", out.getvalue().strip())
    return module


def rows_needing_punkt(rows: Iterable[dict]) -> list[tuple[str, str]]:
    """``(key, instruction_id)`` of every row instruction whose checker needs punkt_tab."""
    hits = []
    for i, row in enumerate(rows):
        for iid in row.get("instruction_id_list") or []:
            if iid in PUNKT_INSTRUCTIONS:
                hits.append((str(row.get("key", i)), iid))
    return hits


def check_rows(rows: Iterable[dict], *, source: str) -> None:
    """Raise :class:`DataError` if some row needs punkt_tab and nltk cannot find it."""
    hits = rows_needing_punkt(rows)
    if hits and not punkt_available():
        shown = ", ".join(f"key {k}: {iid}" for k, iid in hits[:5])
        more = f" and {len(hits) - 5} more" if len(hits) > 5 else ""
        raise DataError(f"{len(hits)} IFEval instruction(s) need nltk's punkt_tab data, which is not "
                        f"installed ({shown}{more})", file=source, field="instruction_id_list",
                        fix=PUNKT_FIX)
