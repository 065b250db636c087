"""Multi-GPU adapter: torchrun + FSDP2 for student and teacher (Appendix C: 4x H100, FSDP2, bf16).

Thin on purpose: every line leans on a documented PyTorch API (torch 2.14, GPU-NOTES.md section 4;
``torch.distributed.fsdp.fully_shard`` and ``torch.distributed.checkpoint.state_dict``) and the
layout of KDFlow's FSDP2 strategy: fp32 master weights, ``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)``, one ``fully_shard`` per decoder layer (``model._no_split_modules``), then the
root. Gradient checkpointing is enabled by :func:`rock.distill.runtime.load_causal_lm` before
sharding (non-reentrant). Only imported when ``WORLD_SIZE > 1``; the CPU test suite runs it with
the gloo backend and one process (``tests/test_distill_engine.py``).

    torchrun --nproc_per_node 4 -m rock.cli distill stage2 --config config.yaml
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

#: prefix that non-reentrant activation checkpointing adds to parameter names (GPU-NOTES section 1)
CKPT_PREFIX = "_checkpoint_wrapped_module."


def init_distributed():
    """``(rank, world_size, device)`` from torchrun's environment; NCCL on GPU, gloo on CPU."""
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def shard(model, runtime, *, trainable: bool):
    """FSDP2-shard ``model`` in place: each ``_no_split_modules`` block, then the root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    model.to(runtime.device)
    mp = MixedPrecisionPolicy(param_dtype=runtime.dtype, reduce_dtype=torch.float32,
                              cast_forward_inputs=True) if trainable else MixedPrecisionPolicy()
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def iter_full_tensors(model, *, dtype: torch.dtype | None = None):
    """``(hf_name, full tensor)`` per state-dict entry, for the vLLM weight push.

    ``DTensor.full_tensor()`` is a collective: every rank must iterate in the same order.
    """
    for name, tensor in model.state_dict().items():
        full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
        if dtype is not None and torch.is_floating_point(full):
            full = full.to(dtype)
        yield name.replace(CKPT_PREFIX, ""), full


def full_state_dict(model) -> dict:
    """Full (unsharded) model state dict on CPU, on rank 0 only (empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.replace(CKPT_PREFIX, ""): v for k, v in sd.items()}


def full_optimizer_state(model, optimizer) -> dict:
    """Full optimizer state dict on CPU (rank 0) for a resume state."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    """Inverse of :func:`full_optimizer_state`: rank 0's copy is broadcast and resharded."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def clip_grad_norm(params, max_norm: float) -> float:
    """``clip_grad_norm_`` over DTensor gradients; the total norm is a DTensor, made full."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)
