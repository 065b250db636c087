"""Configuration of the evaluation stage (paper Section 5.2, Appendix D.3).

One dataclass, :class:`EvaluationConfig`, with a default and a help text per field and
``__post_init__`` checks (TRL style). It is built from the ``evaluation`` section of the config file
at the CLI edge (:func:`from_section`); library code receives the dataclass, never the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rock.config import from_dict
from rock.errors import ConfigError
from rock.paths import BENCHMARKS

BACKENDS = ("hf", "vllm")
#: ``question_answer``: the authors' raw prompt ``Question: {problem}\nAnswer:`` (reference/README.md);
#: ``chat_boxed``: the model's chat template with a "put your final answer within \boxed{}" suffix.
PROMPT_FORMATS = ("question_answer", "chat_boxed")
DATASET_SOURCES = ("hub", "local")
#: how vLLM suppresses ids: ``processor`` = per-request logits processor reading ``extra_args``;
#: ``logit_bias`` = ``SamplingParams.logit_bias`` with -inf (GPU-NOTES.md section 2)
VLLM_SUPPRESSION = ("processor", "logit_bias")
IFEVAL_METRICS = (
    "prompt_level_strict_acc", "prompt_level_loose_acc",
)


@dataclass
class EvaluationConfig:
    """Settings of ``rock evaluate``; every field has a ``help`` in its metadata."""

    backend: str = field(default="hf", metadata={"help": "lm-eval backend: 'hf' (HFLM, CPU/GPU) or 'vllm' (GPU)"})
    prompt_format: str = field(default="question_answer", metadata={
        "help": "'question_answer' (authors: 'Question: {problem}\\nAnswer:') or 'chat_boxed' "
                "(chat template + boxed-answer instruction)"})
    dataset_source: str = field(default="hub", metadata={
        "help": "'hub': the task YAML's Hugging Face dataset; 'local': {run_dir}/data/<benchmark>.jsonl"})
    n_runs: int = field(default=5, metadata={"help": "independent sampling runs; Pass@1 = mean over runs [5.2]"})
    seed: int = field(default=0, metadata={"help": "run r samples with seed `seed + r`"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature (0 = greedy)"})
    top_p: float = field(default=1.0, metadata={
        "help": "nucleus sampling threshold; 1.0 = off, as the authors' lm-eval call, which sets only "
                "the temperature (reference/README.md)"})
    top_k: int = field(default=0, metadata={
        "help": "top-k filter; 0 = off (the authors' call sets none). The hf backend pins it, so a "
                "model's generation_config.json (Qwen3-Instruct: top_k 20) never leaks in"})
    max_gen_toks: int = field(default=16384, metadata={"help": "max generated tokens per problem"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N problems (None = all)"})
    batch_size: int = field(default=16, metadata={"help": "hf backend: generation batch size"})
    device: str = field(default="cpu", metadata={"help": "hf backend: torch device ('cpu', 'cuda')"})
    dtype: str = field(default="auto", metadata={"help": "model dtype ('auto', 'float32', 'bfloat16')"})
    enable_thinking: bool = field(default=False, metadata={"help": "chat template enable_thinking [C]"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm backend: tensor parallel size"})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vllm backend: share of GPU memory"})
    max_model_len: int | None = field(default=None, metadata={"help": "vllm backend: context length cap"})
    vllm_suppression: str = field(default="processor", metadata={
        "help": "vllm token suppression: 'processor' (per-request logits processor) or 'logit_bias'"})
    ifeval_metric: str = field(default="prompt_level_strict_acc", metadata={
        "help": "IFEval per-problem correctness (lm-eval metric name)"})
    verify_timeout_s: float = field(default=30.0, metadata={
        "help": "wall-clock limit of one math-verify check (in a worker process)"})
    save_responses: bool = field(default=False, metadata={"help": "keep response text in the per-problem table"})

    def __post_init__(self):
        _choice("backend", self.backend, BACKENDS)
        _choice("prompt_format", self.prompt_format, PROMPT_FORMATS)
        _choice("dataset_source", self.dataset_source, DATASET_SOURCES)
        _choice("vllm_suppression", self.vllm_suppression, VLLM_SUPPRESSION)
        _choice("ifeval_metric", self.ifeval_metric, IFEVAL_METRICS)
        if self.n_runs < 1:
            raise ConfigError(f"evaluation.n_runs must be >= 1, got {self.n_runs}")
        if self.temperature < 0:
            raise ConfigError(f"evaluation.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"evaluation.top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"evaluation.top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.max_gen_toks < 1:
            raise ConfigError(f"evaluation.max_gen_toks must be >= 1, got {self.max_gen_toks}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"evaluation.limit must be >= 1 or null, got {self.limit}")
        if self.batch_size < 1 or self.tensor_parallel_size < 1:
            raise ConfigError("evaluation.batch_size and evaluation.tensor_parallel_size must be >= 1")
        if self.verify_timeout_s <= 0:
            raise ConfigError(f"evaluation.verify_timeout_s must be > 0, got {self.verify_timeout_s}")

    @property
    def seeds(self) -> list[int]:
        """One seed per run: ``seed + r``. The same seeds are reused for every suppression set
        (common random numbers make the paired comparison of Appendix D.3 less noisy)."""
        return [self.seed + r for r in range(self.n_runs)]

    def generation_kwargs(self) -> dict[str, Any]:
        """lm-eval ``generation_kwargs`` overrides applied to every task (stop strings stay the YAML's).

        ``top_k`` travels only when it filters (> 0): vLLM's ``SamplingParams`` default is "off"
        and older vLLM versions reject 0; the hf backend pins 0 itself (:class:`RockHFLM`).
        """
        sample = self.temperature > 0
        kw: dict[str, Any] = {"do_sample": sample, "temperature": float(self.temperature),
                              "max_gen_toks": int(self.max_gen_toks)}
        if sample:
            kw["top_p"] = float(self.top_p)
            if self.top_k > 0:
                kw["top_k"] = int(self.top_k)
        return kw


#: keys of the ``evaluation`` config section that are not EvaluationConfig fields (used by the workflow)
WORKFLOW_KEYS = ("benchmarks", "models")


def from_section(section: dict[str, Any], *, seed: int | None = None, enable_thinking: bool | None = None,
                 **overrides: Any) -> EvaluationConfig:
    """Build the config from the ``evaluation`` section; ``overrides`` (CLI flags) win when not None.

    ``seed`` (top-level master seed) and ``enable_thinking`` (``models.enable_thinking``) fill the
    fields the section does not set itself. Unknown keys of a config file are rejected by the
    schema; :func:`rock.config.from_dict` guards a mapping built in code the same way.
    """
    kw = {k: v for k, v in section.items() if k not in WORKFLOW_KEYS}
    if seed is not None:
        kw.setdefault("seed", seed)
    if enable_thinking is not None:
        kw.setdefault("enable_thinking", enable_thinking)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(EvaluationConfig, kw, "evaluation")


def check_benchmarks(names: list[str]) -> list[str]:
    for n in names:
        if n not in BENCHMARKS:
            raise ConfigError(f"unknown benchmark '{n}'; choose from {list(BENCHMARKS)}")
    return list(names)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"evaluation.{name} must be one of {list(allowed)}, got {value!r}")
