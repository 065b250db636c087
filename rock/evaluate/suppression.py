"""Suppression sets as arguments: id checks, the vLLM request arguments and the state both lm-eval
backends share (:class:`SuppressionMixin`) (paper Section 3.2, D.3).

Kept free of lm-eval and vLLM imports: vLLM's engine process imports it through
:mod:`rock.evaluate.vllm_processor`, and the tests check the arguments without a GPU. Both
:mod:`rock.evaluate.models` and :mod:`rock.evaluate.vllm_lm` import the mixin from here, so neither
imports the other at module level.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable
from typing import Any

from rock.errors import ConfigError

log = logging.getLogger(__name__)

#: ``SamplingParams.extra_args`` key read by rock.evaluate.vllm_processor.SuppressTokenIds
SUPPRESS_EXTRA_ARG = "rock_suppress_token_ids"
#: fully qualified name vLLM loads in its engine process (``LLM(logits_processors=[...])``)
VLLM_PROCESSOR_FQCN = "rock.evaluate.vllm_processor:SuppressTokenIds"


def check_token_ids(ids: Iterable[int], vocab_size: int, *, eos_ids: Iterable[int] = ()) -> tuple[int, ...]:
    """Sorted unique ids, each an int in ``[0, vocab_size)``; warns when an end-of-sequence id is
    suppressed (generation then always runs to ``max_gen_toks``)."""
    out = []
    for i in ids:
        try:
            j = None if isinstance(i, bool) else operator.index(i)  # int, numpy int; not bool/float/str
        except TypeError:
            j = None
        if j is None or not 0 <= j < vocab_size:
            raise ConfigError(f"suppressed token id {i!r} is not an int in [0, {vocab_size}) "
                              "(fix: give ids of the evaluated model's vocabulary)")
        out.append(j)
    ids_ = tuple(sorted(set(out)))
    if ids_ and len(ids_) >= vocab_size:
        raise ConfigError("suppression set covers the whole vocabulary; nothing could be generated")
    hit = sorted(set(ids_) & {e for e in eos_ids if e is not None})
    if hit:
        log.warning("suppressing end-of-sequence id(s) %s: every answer runs to max_gen_toks", hit)
    return ids_


def vllm_sampling_extras(suppress_token_ids: tuple[int, ...], seed: int | None, mode: str) -> dict[str, Any]:
    """Extra ``SamplingParams`` keyword arguments for one request (vLLM 0.33.0 ``SamplingParams``).

    ``mode='processor'``: ``extra_args={SUPPRESS_EXTRA_ARG: [ids]}`` for the logits processor;
    ``mode='logit_bias'``: ``logit_bias={id: -inf}`` with int keys (the constructor does not clamp;
    only ``from_optional`` clamps to +-100, GPU-NOTES.md section 2).
    """
    kw: dict[str, Any] = {}
    if seed is not None:
        kw["seed"] = int(seed)
    if suppress_token_ids:
        if mode == "processor":
            kw["extra_args"] = {SUPPRESS_EXTRA_ARG: [int(i) for i in suppress_token_ids]}
        elif mode == "logit_bias":
            kw["logit_bias"] = {int(i): float("-inf") for i in suppress_token_ids}
        else:
            raise ConfigError(f"unknown vllm suppression mode {mode!r}; use 'processor' or 'logit_bias'")
    return kw


class SuppressionMixin:
    """State shared by both backends: the current suppression set, run seed and recorded tokens."""

    suppress_token_ids: tuple[int, ...] = ()
    run_seed: int | None = None
    record_tokens: bool = False

    def _vocab_size(self) -> int:
        return int(self._config.vocab_size)

    def configure(self, *, suppress_token_ids: Iterable[int] = (), seed: int | None = None) -> None:
        """Set the suppression set and the sampling seed used by the following evaluations."""
        self.suppress_token_ids = check_token_ids(suppress_token_ids, self._vocab_size(),
                                                  eos_ids=[self.eot_token_id])
        self.run_seed = None if seed is None else int(seed)
        self.generated_token_ids: list[list[int]] = []

    def _record(self, rows: Iterable[list[int]]) -> None:
        if not self.record_tokens:
            return
        eos = self.eot_token_id
        for row in rows:
            row = list(row)
            self.generated_token_ids.append(row[: row.index(eos) + 1] if eos in row else row)
