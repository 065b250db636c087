"""Per-request token suppression inside the vLLM engine (GPU only; imports vllm).

vLLM 0.33.0 (``vllm/v1/sample/logits_processor/__init__.py``): ``AdapterLogitsProcessor`` turns a
per-request callable into a batch-level logits processor; ``new_req_logits_processor(params)`` sees
each request's ``SamplingParams`` and returns ``fn(output_ids, logits_row) -> logits_row`` or None.
vLLM loads this class by name in its engine process: ``LLM(logits_processors=
["rock.evaluate.vllm_processor:SuppressTokenIds"])`` (done by ``rock.evaluate.vllm_lm.RockVLLM``).

A request whose ``extra_args`` carry ``rock_suppress_token_ids`` gets those logits set to -inf at
every decoding step (paper Eq. 17/20/21); requests without it are untouched.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from rock.evaluate.suppression import SUPPRESS_EXTRA_ARG


class _SuppressRow:
    """``logits_row[ids] = -inf`` in place; the id tensor is made once per device."""

    def __init__(self, ids: list[int]):
        self.ids = [int(i) for i in ids]
        self._index: torch.Tensor | None = None

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        if self._index is None or self._index.device != logits.device:
            self._index = torch.tensor(self.ids, dtype=torch.long, device=logits.device)
        return logits.index_fill_(-1, self._index, float("-inf"))


class SuppressTokenIds(AdapterLogitsProcessor):
    """vLLM logits processor: suppress the ids in ``SamplingParams.extra_args[SUPPRESS_EXTRA_ARG]``."""

    def is_argmax_invariant(self) -> bool:
        return False  # suppression changes the argmax: apply it under greedy decoding too

    def new_req_logits_processor(self, params):
        ids = (getattr(params, "extra_args", None) or {}).get(SUPPRESS_EXTRA_ARG)
        return _SuppressRow(ids) if ids else None
