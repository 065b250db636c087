"""Where and how the KD step computes (:mod:`rock.distill.trainer`): device, compute dtype, torchrun
rank and world size (:class:`Runtime`), and loading the student and teacher for it (precision:
the trainer's module docstring).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch

from rock.errors import ConfigError, ModelError


@dataclass
class Runtime:
    """Where and how to compute: device, compute dtype and, under torchrun, rank and world size.

    ``distributed`` (torchrun, any world size, even 1) switches on FSDP2 sharding and collectives.
    """

    device: torch.device
    dtype: torch.dtype = torch.float32
    rank: int = 0
    world: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: Sequence[float]) -> list[float]:
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def all_max(self, value: int) -> int:
        if not self.distributed:
            return int(value)
        t = torch.tensor([int(value)], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())

    def autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return nullcontext()


def make_runtime(device: str = "auto", dtype: str = "bfloat16", env=None) -> Runtime:
    """CPU -> fp32; CUDA -> ``dtype`` (bf16 in the paper); launched by torchrun -> distributed.

    ``env`` (default ``os.environ``, read here at the edge only) tells a torchrun launch by the
    variables torchrun always sets (LOCAL_RANK and MASTER_ADDR).
    """
    env = os.environ if env is None else env
    if device == "cuda" and not torch.cuda.is_available():
        # checked before torchrun's branch too: no silent CPU (gloo) fallback of a paper-scale run
        from rock.gpu_slots import GPU_FIX

        raise ConfigError(f"device 'cuda' requested but torch {torch.__version__} (CUDA "
                          f"{torch.version.cuda}) sees no GPU (CUDA_VISIBLE_DEVICES="
                          f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}): {GPU_FIX}; or set device: cpu")
    if "LOCAL_RANK" in env and "MASTER_ADDR" in env:
        from rock.distill import fsdp

        rank, world, dev = fsdp.init_distributed()
        cdtype = getattr(torch, dtype) if dev.type == "cuda" else torch.float32
        return Runtime(dev, cdtype, rank, world, distributed=True)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        return Runtime(torch.device("cuda"), getattr(torch, dtype))
    return Runtime(torch.device("cpu"), torch.float32)


def load_causal_lm(path: str, runtime: Runtime, *, trainable: bool, gradient_checkpointing: bool = False):
    """A ``transformers`` causal LM from a hub id or local directory, placed for ``runtime``.

    Trainable models keep fp32 master weights (KDFlow: ``model.float()``); frozen ones (the teacher)
    are loaded in the compute dtype. Under torchrun both are sharded with FSDP2.
    """
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if trainable else runtime.dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load a causal LM ({err}); give a local HF model directory "
                         "or a hub id reachable from this machine") from err
    if trainable and gradient_checkpointing:
        # transformers 5.23 renamed gradient_checkpointing_enable to activation_checkpointing_enable
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if runtime.distributed:
        from rock.distill import fsdp

        model = fsdp.shard(model, runtime, trainable=trainable)
    else:
        model.to(runtime.device)
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model
