"""lm-eval's vLLM model with token suppression and per-request seeds (GPU only; imports vllm).

Relies on ``lm_eval.models.vllm_causallms.VLLM`` (lm-eval 0.4.13) and vLLM 0.33.0:
``VLLM.generate_until`` builds one ``SamplingParams(max_tokens, stop, **kwargs)`` per request from
``self.modify_gen_kwargs(...)``; this subclass adds :func:`rock.evaluate.suppression.vllm_sampling_extras`
to those kwargs, so vLLM validates them in its own constructor:

- ``seed``: the run seed, per request (vLLM gives a seeded request its own ``torch.Generator``);
  lm-eval's ``--seed`` only seeds the engine, not the sampler (GPU-NOTES.md section 3).
- suppression: ``extra_args`` read by :class:`rock.evaluate.vllm_processor.SuppressTokenIds`, which
  this class registers with ``LLM(logits_processors=[...])`` (vLLM has no per-request
  ``logits_processors`` field, GPU-NOTES.md section 2), or ``logit_bias`` = -inf with int keys.

Bit-identical reruns additionally need ``VLLM_BATCH_INVARIANT=1`` or ``VLLM_ENABLE_V1_MULTIPROCESSING=0``
on the same hardware and version (vLLM docs/usage/reproducibility.md, GPU-NOTES.md section 5); the
per-request seeds make runs distinct and repeatable up to batch-dependent numerics.

Everything here is exercised on CPU by tests/test_evaluate_vllm.py with a stand-in ``vllm`` module.
"""

from __future__ import annotations

from lm_eval.models.vllm_causallms import VLLM

from rock.evaluate.suppression import VLLM_PROCESSOR_FQCN, SuppressionMixin, vllm_sampling_extras


class RockVLLM(SuppressionMixin, VLLM):
    def __init__(self, *args, suppression_mode: str = "processor", record_tokens: bool = False, **kwargs):
        self.suppression_mode = suppression_mode
        if suppression_mode == "processor":
            procs = list(kwargs.pop("logits_processors", None) or [])
            kwargs["logits_processors"] = procs + [VLLM_PROCESSOR_FQCN]
        super().__init__(*args, **kwargs)
        self.record_tokens = record_tokens
        self.configure()

    def modify_gen_kwargs(self, gen_kwargs, eos=None, default_max_gen_toks: int = 256):
        kwargs, until, max_gen_toks = VLLM.modify_gen_kwargs(gen_kwargs, eos=eos,
                                                             default_max_gen_toks=default_max_gen_toks)
        kwargs.update(vllm_sampling_extras(self.suppress_token_ids, self.run_seed, self.suppression_mode))
        return kwargs, until, max_gen_toks

    def _model_generate(self, requests, generate: bool = False, sampling_params=None):
        outputs = super()._model_generate(requests, generate=generate, sampling_params=sampling_params)
        if generate and self.record_tokens:
            self._record(list(o.outputs[0].token_ids) for o in outputs)
        return outputs
