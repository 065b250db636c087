"""The vLLM generator of the distillation stages (GPU only; vLLM 0.33.0, imported lazily): one
``vllm.LLM`` engine, per-request seeded ``SamplingParams``, and the weight push that keeps a
colocated rollout engine in step with the trainer (:mod:`rock.distill.stage2`). The primitives it
shares with :class:`rock.distill.sampling.HfGenerator` (``Completion``, ``derive_seed``) live in
:mod:`rock.distill.sampling`."""

from __future__ import annotations

import importlib
from typing import Iterable, Sequence

import torch

from rock.distill.sampling import Completion, derive_seed
from rock.errors import ConfigError


class VllmGenerator:
    """vLLM 0.33.0 engine (GPU only). See GPU-NOTES.md sections 1, 2 and 5 for every call used.

    ``colocate=True`` is TRL's colocated layout: one engine per trainer rank group with
    ``distributed_executor_backend="external_launcher"`` (needs torchrun's RANK/WORLD_SIZE and
    ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, which that backend forces), sleep mode on, and weights
    pushed from the trainer every step.
    """

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, seed: int = 0,
                 dtype: str = "bfloat16", gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, enable_sleep_mode: bool = False,
                 colocate: bool = False, stop_ids: Sequence[int] | None = None, vllm_module=None):
        self.vllm = vllm_module or _import_vllm()
        self.stop_ids = [int(i) for i in stop_ids] if stop_ids else []
        self.kwargs = self.engine_kwargs(
            model, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
            enable_sleep_mode=enable_sleep_mode, colocate=colocate)
        self.llm = self.vllm.LLM(**self.kwargs)
        self.asleep = False

    @staticmethod
    def engine_kwargs(model: str, *, tensor_parallel_size: int, seed: int, dtype: str,
                      gpu_memory_utilization: float, max_model_len: int | None,
                      enable_sleep_mode: bool, colocate: bool) -> dict:
        """Arguments of ``vllm.LLM`` (vllm/entrypoints/llm.py, 0.33.0)."""
        kw = dict(model=model, tensor_parallel_size=int(tensor_parallel_size), seed=int(seed),
                  dtype=dtype, gpu_memory_utilization=float(gpu_memory_utilization),
                  enable_sleep_mode=bool(enable_sleep_mode), enable_prefix_caching=False)
        if max_model_len:
            kw["max_model_len"] = int(max_model_len)
        if colocate:  # TRL colocate (trl/generation/vllm_generation.py), GPU-NOTES section 1
            kw.update(distributed_executor_backend="external_launcher", max_num_batched_tokens=4096)
        return kw

    @staticmethod
    def sampling_kwargs(*, n: int, temperature: float, top_p: float, max_new_tokens: int,
                        seed: int, stop_ids: Sequence[int] | None = None) -> dict:
        """Arguments of ``vllm.SamplingParams`` (vllm/sampling_params.py, 0.33.0).

        ``top_k=-1`` disables top-k so the sampler is temperature + top-p only, as in the HF
        backend; a per-request ``seed`` gets its own generator (GPU-NOTES section 2).
        """
        kw = dict(n=int(n), temperature=float(temperature), top_p=float(top_p), top_k=-1,
                  max_tokens=int(max_new_tokens), seed=int(seed))
        if stop_ids:
            kw["stop_token_ids"] = [int(i) for i in stop_ids]
        return kw

    def generate(self, prompts: Sequence[Sequence[int]], *, n: int = 1, temperature: float = 1.0,
                 top_p: float = 1.0, max_new_tokens: int = 256, seed: int = 0) -> list[list[Completion]]:
        stop_ids = self.stop_ids
        params = [self.vllm.SamplingParams(**self.sampling_kwargs(
            n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
            seed=derive_seed(seed, i), stop_ids=stop_ids)) for i in range(len(prompts))]
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        result = []
        for out in outputs:
            comps = []
            for c in out.outputs:
                ids = list(c.token_ids)
                reason = "stop" if c.finish_reason == "stop" else "length"
                # vLLM drops a stop token given in stop_token_ids from the output only when it is
                # not the eos; keep the convention "stop token included" for both backends
                if reason == "stop" and stop_ids and (not ids or ids[-1] not in stop_ids):
                    ids.append(int(getattr(c, "stop_reason", None) or stop_ids[0]))
                comps.append(Completion(ids, reason))
            result.append(comps)
        return result

    # --- colocated training (stage 2) --------------------------------------------------------
    def sleep(self) -> None:
        """Level 2: drop weights and KV cache (they are rewritten before the next generate)."""
        self.llm.sleep(level=2)
        self.asleep = True

    def push_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Write trainer weights into the engine (GPU-NOTES section 1, 5).

        Order (vllm docs/features/sleep_mode.md): wake weights only, write, then wake the KV cache;
        trained weights must be the last write (trl#5312), and the prefix cache is reset.
        """
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        count = 0
        for name, tensor in named_tensors:
            model.load_weights(weights=[(name, tensor)])
            count += 1
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()
        return count


def _import_vllm():
    try:
        return importlib.import_module("vllm")
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError("backend 'vllm' needs the vLLM package (GPU container envs/gpu.yaml); "
                          "on CPU set backend: hf") from err
