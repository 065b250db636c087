"""Configuration of the distillation stages: the ``models``, ``teacher_samples``, ``stage1`` and
``stage2`` sections of ``config.yaml`` (paper values, Section 5.1 and Appendix C) and of
``tests/config_toy/config.yaml``.

The CLI (:mod:`rock.distill`) builds these dataclasses from the validated config with
:func:`rock.config.from_dict` (bad values are a :class:`ConfigError`); command-line flags
override single fields. The library never reads the config file. Values the paper does not give are marked ASSUMED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rock.distill.losses import KD_RATIO, NORMALIZATIONS, LossSpec
from rock.errors import ConfigError

BACKENDS = ("hf", "vllm")
SCHEDULERS = ("cosine_with_min_lr", "linear", "constant")
OVERLONG = ("skip", "truncate")
DEVICES = ("auto", "cpu", "cuda")


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


@dataclass
class ModelsConfig:
    """``models:`` [5.1]. ``teacher``/``student``: hub id or local HF directory."""

    teacher: str = ""
    student: str = ""
    enable_thinking: bool = False
    """[C] thinking mode disabled for both (passed to the chat template)"""
    teacher_system_prompts: list[str] = field(default_factory=list)
    """toy only: the teacher's hidden context; one is drawn per sequence; empty at paper scale"""
    dtype: str = "bfloat16"
    """[C] bf16 on GPU; CPU runs always use float32"""

    def __post_init__(self):
        _check(self.dtype in ("bfloat16", "float16", "float32"), "models.dtype",
               f"'{self.dtype}' unknown; use bfloat16, float16 or float32")
        _check(all(isinstance(s, str) and s for s in self.teacher_system_prompts),
               "models.teacher_system_prompts", "must be a list of non-empty strings")


@dataclass
class TeacherSamplesConfig:
    """``teacher_samples:`` teacher answers to the stage-1 prompts [C]."""

    backend: str = "vllm"
    temperature: float = 0.6          # [C]
    top_p: float = 0.95               # [C]
    max_new_tokens: int = 16384       # [C]
    tensor_parallel_size: int = 2     # [C] TP=2 on 2x H100 (vllm only)
    batch_size: int = 8
    """hf backend: prompts per generate() call. ASSUMED: memory knob only, no effect on the math"""
    gpu_memory_utilization: float = 0.9
    """vllm: share of GPU memory for the engine. ASSUMED: vLLM's default range, teacher runs alone"""
    max_prompt_len: int = 0
    """prompts longer than this (tokens) are skipped and counted; 0 = no limit (paper: none given)"""
    shard_size: int = 256
    """prompts per resumable shard of the output. ASSUMED: bookkeeping only"""
    device: str = "auto"

    def __post_init__(self):
        w = "teacher_samples"
        _check(self.backend in BACKENDS, f"{w}.backend", f"use one of {BACKENDS}")
        _check(self.temperature >= 0, f"{w}.temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, f"{w}.top_p", "must be in (0, 1]")
        for k in ("max_new_tokens", "tensor_parallel_size", "batch_size", "shard_size"):
            _check(getattr(self, k) >= 1, f"{w}.{k}", "must be >= 1")
        _check(self.max_prompt_len >= 0, f"{w}.max_prompt_len", "must be >= 0")
        _check(0 < self.gpu_memory_utilization <= 1, f"{w}.gpu_memory_utilization", "in (0, 1]")
        _check(self.device in DEVICES, f"{w}.device", f"use one of {DEVICES}")


@dataclass
class TrainConfig:
    """Optimisation settings shared by both stages (KDFlow defaults where the paper is silent [C])."""

    loss: str = "reverse_kl"
    kd_ratio: float = KD_RATIO        # [C] stage 2 keeps it (reverse KL alone); stage 1: 0.5
    kd_temperature: float = 1.0
    lr: float = 2.0e-6
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine_with_min_lr"
    """[C] "all other hyperparameters are KDFlow defaults": KDFlow's lr_scheduler is
    cosine_with_min_lr after the linear warmup"""
    min_lr: float = 1.0e-8            # [C] KDFlow default
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # [C] KDFlow default
    weight_decay: float = 0.0         # [C] KDFlow default
    max_grad_norm: float = 1.0
    global_batch: int = 4
    """sequences per optimizer step (KDFlow train_batch_size)"""
    micro_batch: int = 1
    """sequences per forward/backward (per rank); gradients accumulate up to global_batch"""
    epochs: int = 1
    max_steps: int = 0
    """stop after this many optimizer steps; 0 = the full epochs (toy runs use it)"""
    gradient_checkpointing: bool = True
    compile_layers: bool = False
    """GPU only: ``torch.compile`` each decoder block of student and teacher (fuses the norms,
    rotary and activation kernels; the first steps pay the compile). ASSUMED off: issue 17,
    measured in benchmarks/bench_train_step.py --compile"""
    loss_normalization: str = "token_mean"
    """token_mean: sum(w*loss)/sum(mask) over the global batch (KDFlow; Eq. 19 read literally);
    weight_mean: sum(w*loss)/sum(w*mask) (the authors' freeze code). See rock.distill.losses"""
    chunk_size: int = 0
    """positions per loss chunk; 0 = CHUNK_ELEMENTS // vocab (rock.distill.losses)"""
    save_state_every: int = 100
    """steps between resume states (model, optimizer, scheduler, RNG, data position).
    ASSUMED: ~1 h of paper-scale stage 2; a kill loses at most this many steps"""
    device: str = "auto"
    seed: int = 0

    @property
    def loss_spec(self) -> LossSpec:
        """What the trainer computes per token (``loss``, ``kd_ratio``, ``kd_temperature``,
        ``chunk_size``): the only place these four keys are read after the config."""
        return LossSpec(self.loss, kd_ratio=self.kd_ratio, temperature=self.kd_temperature,
                        chunk_size=self.chunk_size or None)

    def _check_train(self, w: str):
        try:
            self.loss_spec                   # loss, kd_ratio, kd_temperature: LossSpec's checks
        except ConfigError as err:
            raise ConfigError(f"{w}: {err}") from None
        _check(self.lr > 0, f"{w}.lr", "must be > 0")
        _check(0 <= self.warmup_ratio < 1, f"{w}.warmup_ratio", "must be in [0, 1)")
        _check(self.lr_scheduler in SCHEDULERS, f"{w}.lr_scheduler", f"use one of {SCHEDULERS}")
        _check(0 <= self.min_lr <= self.lr, f"{w}.min_lr", "must be in [0, lr]")
        _check(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
               f"{w}.adam_betas", "two numbers in [0, 1)")
        _check(self.weight_decay >= 0, f"{w}.weight_decay", "must be >= 0")
        _check(self.max_grad_norm >= 0, f"{w}.max_grad_norm", "must be >= 0 (0 = no clipping)")
        _check(self.global_batch >= 1 and self.micro_batch >= 1, f"{w}.global_batch",
               "global_batch and micro_batch must be >= 1")
        _check(self.epochs >= 1, f"{w}.epochs", "must be >= 1")
        _check(self.max_steps >= 0, f"{w}.max_steps", "must be >= 0")
        _check(self.loss_normalization in NORMALIZATIONS, f"{w}.loss_normalization",
               f"use one of {NORMALIZATIONS}")
        _check(self.chunk_size >= 0, f"{w}.chunk_size", "must be >= 0")
        _check(self.save_state_every >= 1, f"{w}.save_state_every", "must be >= 1")
        _check(self.device in DEVICES, f"{w}.device", f"use one of {DEVICES}")


@dataclass
class Stage1Config(TrainConfig):
    """``stage1:`` off-policy KD on (prompt, teacher response) pairs [5.1, C]."""

    loss: str = "forward_kl"          # [C] vanilla KD, forward KL
    kd_ratio: float = 0.5             # [C]
    lr: float = 2.0e-5                # [C]
    global_batch: int = 128           # [C]
    max_seq_len: int = 16384          # [C]

    def __post_init__(self):
        self._check_train("stage1")
        _check(self.max_seq_len >= 2, "stage1.max_seq_len", "must be >= 2")


@dataclass
class Stage2Config(TrainConfig):
    """``stage2:`` on-policy KD on student rollouts [5.1, C]."""

    loss: str = "reverse_kl"          # [C]; kd_ratio: TrainConfig's KD_RATIO (1.0) [C]
    n_rollouts: int = 4               # [C]
    rollout_batch: int = 0
    """prompts per rollout round; 0 = global_batch // n_rollouts (every optimizer step sees fresh
    rollouts of the current weights). ASSUMED: the paper does not give KDFlow's
    rollout_batch_size; the authors' freeze script uses 2 (two steps per rollout round)"""
    temperature: float = 1.0          # [C]
    top_p: float = 1.0                # [C]
    max_new_tokens: int = 8000        # [C] generate_max_len (authors' script: 1024)
    max_prompt_len: int = 800         # [C] prompt_max_len
    overlong_prompts: str = "skip"
    """prompts over max_prompt_len: skip (ASSUMED: a cut problem is another problem) or truncate
    (keep the last max_prompt_len tokens, as left truncation keeps the generation prompt)"""
    n_checkpoints: int = 7            # [5.1] 7 checkpoints, evenly spaced over the run
    rollout_backend: str = "vllm"     # [C]
    rollout_tensor_parallel_size: int = 2   # [C]
    teacher_tensor_parallel_size: int = 4   # [C] (recorded; the FSDP2 teacher shards over all ranks)
    gpu_memory_utilization: float = 0.3
    """vllm colocated with the trainer: engine share of GPU memory. ASSUMED: 4B bf16 weights on TP=2
    plus KV cache for 4 x 8.8k tokens fit in ~24 GB; the rest is the FSDP2 student and teacher"""
    rollout_batch_size_hf: int = 16
    """hf backend: sequences per generate() call. ASSUMED: memory knob only"""
    save_token_losses: bool = False
    """also write the per-token losses of every step (parquet)"""

    def __post_init__(self):
        w = "stage2"
        self._check_train(w)
        _check(self.n_rollouts >= 1, f"{w}.n_rollouts", "must be >= 1")
        if self.rollout_batch == 0:
            _check(self.global_batch % self.n_rollouts == 0, f"{w}.global_batch",
                   f"{self.global_batch} sequences is not a multiple of n_rollouts={self.n_rollouts}; "
                   "set rollout_batch explicitly")
            self.rollout_batch = self.global_batch // self.n_rollouts
        _check(self.rollout_batch >= 1, f"{w}.rollout_batch", "must be >= 0")
        _check((self.rollout_batch * self.n_rollouts) % self.global_batch == 0, f"{w}.rollout_batch",
               f"rollout_batch*n_rollouts={self.rollout_batch * self.n_rollouts} must be a multiple "
               f"of global_batch={self.global_batch}")
        _check(self.temperature >= 0, f"{w}.temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, f"{w}.top_p", "must be in (0, 1]")
        for k in ("max_new_tokens", "max_prompt_len", "n_checkpoints", "rollout_tensor_parallel_size",
                  "teacher_tensor_parallel_size", "rollout_batch_size_hf"):
            _check(getattr(self, k) >= 1, f"{w}.{k}", "must be >= 1")
        _check(self.overlong_prompts in OVERLONG, f"{w}.overlong_prompts", f"use one of {OVERLONG}")
        _check(self.rollout_backend in BACKENDS, f"{w}.rollout_backend", f"use one of {BACKENDS}")
        _check(0 < self.gpu_memory_utilization <= 1, f"{w}.gpu_memory_utilization", "in (0, 1]")

    @property
    def optimizer_steps_per_round(self) -> int:
        return self.rollout_batch * self.n_rollouts // self.global_batch
