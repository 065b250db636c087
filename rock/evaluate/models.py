"""lm-eval models that suppress token ids and seed every run (paper Section 3.2, Appendix D.3).

The knockout policy ``pi^{\\setminus v}`` sets the logit of every suppressed id to -inf at every
decoding step (Eq. 17, 20, 21). Both backends are lm-eval's own model classes, subclassed only to add
two settings that ``configure(suppress_token_ids=..., seed=...)`` swaps between evaluations without
reloading anything:

- ``hf`` -> :class:`RockHFLM` (``lm_eval.models.huggingface.HFLM``, lm-eval 0.4.13): the ids go to
  ``model.generate(suppress_tokens=...)``, i.e. transformers' ``SuppressTokensLogitsProcessor``
  (``scores[:, ids] = -inf`` at every step, before temperature/top-p); the run seed goes to
  ``transformers.set_seed`` (python, numpy, torch) at the start of each ``generate_until`` call, so
  the torch sampler of run r draws from seed r. Outputs depend on ``batch_size`` (batched sampling).
  When sampling, ``top_k`` and ``top_p`` the task did not set are pinned to "off" (0 and 1.0):
  ``generate`` would otherwise fill them from the model's ``generation_config.json`` (Qwen3-Instruct:
  ``top_k`` 20, ``top_p`` 0.8), which the vLLM backend (``SamplingParams`` defaults) never reads.
- ``vllm`` -> ``rock.evaluate.vllm_lm.RockVLLM`` (``lm_eval.models.vllm_causallms.VLLM``, vLLM
  0.33.0): per-request ``SamplingParams(seed=...)`` (lm-eval's ``--seed`` never reaches the vLLM
  sampler, GPU-NOTES.md section 3) and either ``extra_args`` read by the per-request logits processor
  :mod:`rock.evaluate.vllm_processor` (default) or ``logit_bias`` = -inf (GPU-NOTES.md section 2).
  The arguments are built by :func:`rock.evaluate.suppression.vllm_sampling_extras`, which needs
  no vLLM and is unit-tested.

With ``record_tokens=True`` the model keeps the generated token ids of the last ``configure`` period
in ``generated_token_ids`` (one list per sequence, cut at the first end-of-sequence token), which is
how the tests show that a suppressed id never appears.
"""

from __future__ import annotations

import logging

from lm_eval.models.huggingface import HFLM

from rock.evaluate.suppression import SuppressionMixin

log = logging.getLogger(__name__)

#: sampling filters pinned to "off" when a task leaves them unset (module docstring)
SAMPLING_OFF = {"top_k": 0, "top_p": 1.0}


class RockHFLM(SuppressionMixin, HFLM):
    """lm-eval's HFLM with per-evaluation token suppression and seeding (see module docstring)."""

    def __init__(self, *args, record_tokens: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_tokens = record_tokens
        self.configure()

    def generate_until(self, requests, disable_tqdm: bool = False):
        if self.run_seed is not None:
            from transformers import set_seed

            set_seed(self.run_seed)
        return super().generate_until(requests, disable_tqdm=disable_tqdm)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        if self.suppress_token_ids:
            generation_kwargs["suppress_tokens"] = list(self.suppress_token_ids)
        if generation_kwargs.get("do_sample"):
            for key, off in SAMPLING_OFF.items():
                generation_kwargs.setdefault(key, off)
        out = super()._model_generate(context, max_length, stop, **generation_kwargs)
        if self.record_tokens:
            pad = self.tokenizer.pad_token_id
            rows = []
            for row in out[:, context.shape[1]:].tolist():
                # strip right padding of rows that stopped before the longest one
                while row and row[-1] == pad and pad != self.eot_token_id:
                    row.pop()
                rows.append(row)
            self._record(rows)
        return out


def make_lm(cfg, model: str, *, record_tokens: bool = False):
    """The configured backend's lm-eval model for ``model`` (hub id or local HF directory).

    Loaded once; :meth:`SuppressionMixin.configure` then swaps suppression sets and seeds.
    """
    if cfg.backend == "hf":
        # max_gen_toks travels in every task's generation_kwargs (HFLM has no such argument)
        return RockHFLM(pretrained=str(model), device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
                        enable_thinking=cfg.enable_thinking, record_tokens=record_tokens)
    from rock.evaluate.vllm_lm import RockVLLM  # imports vllm: GPU machines only

    return RockVLLM(pretrained=str(model), dtype=cfg.dtype, tensor_parallel_size=cfg.tensor_parallel_size,
                    gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_len=cfg.max_model_len,
                    max_gen_toks=cfg.max_gen_toks, seed=cfg.seed, enable_thinking=cfg.enable_thinking,
                    suppression_mode=cfg.vllm_suppression, record_tokens=record_tokens)
