"""Configuration of the toy world (the ``toy:`` section of ``tests/config_toy/config.yaml``).

Every number the toy build uses is here, with the reason for its default. The defaults are the
values measured on a 2-core CPU (DESIGN.md, "The toy world"); none of them comes from the paper,
whose models are Qwen3-30B-A3B-Instruct-2507 and Qwen3-4B-Instruct-2507 (Sec. 5.1).

The CLI (:mod:`rock.toy`) parses the YAML section into :class:`ToyConfig` with
:func:`ToyConfig.from_dict`; library code only ever sees the dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rock.config import from_dict
from rock.errors import ConfigError


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


@dataclass
class CorpusConfig:
    """Synthetic pretraining corpus: multi-step arithmetic in two styles plus toy instructions."""

    operand_max: int = 9
    """added/subtracted operands are drawn from 1..operand_max (prototype: 1-9)"""
    multiplier_min: int = 2
    multiplier_max: int = 5
    """the multiplier c of (a+b)*c is drawn from multiplier_min..multiplier_max (prototype: 2-5)"""
    family_weights: dict[str, float] = field(default_factory=lambda: {
        "+*": 0.1, "+*-": 0.7, "-*+": 0.1, "+*-+": 0.1})
    """pretraining mixture over problem families (op sequence, evaluated left to right);
    '+*-' is the prototype's (a+b)*c-d"""
    hard_families: list[str] = field(default_factory=lambda: ["+*-+-", "-*+-+"])
    """families of the toy AIME/HMMT problems (more steps than most pretraining problems);
    they also appear in pretraining with weight hard_family_weight so that they are reachable"""
    hard_family_weight: float = 0.03
    word_problem_fraction: float = 0.1
    """share of arithmetic documents phrased as word problems (names, objects)"""
    instruction_fraction: float = 0.08
    """share of documents that are toy IFEval-style instruction-following chats"""
    student_error_rate: float = 0.15
    """probability that a student-style step has a random small arithmetic slip (prototype: 15%)"""
    student_misconception_rate: float = 0.0
    """share of the facts x op y (op in student_misconception_ops) the student's corpus always gets
    wrong the same way (rock.toy.problems.Misconceptions): errors greedy decoding keeps and
    distillation from the error-free teacher can correct"""
    student_misconception_ops: str = "+*"
    student_teacher_style_fraction: float = 0.2
    """share of the student's arithmetic documents in teacher style (prototype: ~20%; essential)"""
    teacher_student_style_fraction: float = 0.1
    """share of the teacher's arithmetic documents in student style (prototype: ~10%; essential)"""
    teacher_system_fraction: float = 0.9
    """share of the teacher's documents that carry the hidden system message (the rest have none
    and pick So/Then at random, so the teacher also works without a system message)"""
    student_instruction_compliance: float = 0.6
    """probability that the student follows each instruction of a toy IFEval prompt (teacher: 1)"""
    conclusion_markers: dict[str, str] = field(default_factory=dict)
    """planted learnable high-KL types (rock.toy.truth): in problems of family f the teacher's last
    step starts with conclusion_markers[f] (the family is a cue the student sees), while the
    student's corpus picks the right one only w.p. student_conclusion_accuracy; {} = none"""
    student_conclusion_accuracy: float = 0.5
    """share of the student's teacher-style documents whose concluding marker is the teacher's
    (the others pick one of the other markers): the student leans the right way but is unsure.
    Measured (issue 14): with 1/3 (uniform) the student settled on a wrong marker, confidently,
    in some families, which made that marker a persistent rock instead of a learnable type"""
    prompt_suffixes: list[str] = field(default_factory=lambda: [
        "", "\nPlease reason step by step, and put your final answer within \\boxed{}."])
    """user-message suffixes seen in pretraining (the pipeline may append one of them)"""

    def __post_init__(self) -> None:
        _check(self.operand_max >= 2, "operand_max", "must be >= 2")
        _check(2 <= self.multiplier_min <= self.multiplier_max, "multiplier_min",
               "need 2 <= multiplier_min <= multiplier_max")
        from rock.toy.problems import FAMILIES, TEACHER_MARKERS
        for fam in list(self.family_weights) + list(self.hard_families):
            _check(fam in FAMILIES, "family_weights",
                   f"unknown family {fam!r}; choose from {sorted(FAMILIES)}")
        _check(len(self.hard_families) >= 1, "hard_families",
               "name at least one family for the toy AIME/HMMT problems")
        _check(all(w >= 0 for w in self.family_weights.values())
               and sum(self.family_weights.values()) > 0, "family_weights",
               "weights must be >= 0 and not all 0")
        for key in ("hard_family_weight", "word_problem_fraction", "instruction_fraction",
                    "student_error_rate", "student_misconception_rate", "student_teacher_style_fraction",
                    "teacher_student_style_fraction", "teacher_system_fraction",
                    "student_instruction_compliance", "student_conclusion_accuracy"):
            value = getattr(self, key)
            _check(0.0 <= value <= 1.0, f"{key}", f"must be in [0, 1], got {value}")
        for fam, word in self.conclusion_markers.items():
            _check(fam in FAMILIES and word and word not in TEACHER_MARKERS, "conclusion_markers",
                   f"{fam!r}: {word!r}: need a known family and a word other than the step markers")
        _check(len(self.prompt_suffixes) >= 1, "prompt_suffixes", "give at least ''")
        _check(set(self.student_misconception_ops) <= set("+-*"), "student_misconception_ops",
               f"ops are among '+-*', got {self.student_misconception_ops!r}")


@dataclass
class TokenizerConfig:
    vocab_size: int = 1024
    """target size of the byte-level BPE (256 bytes + merges + 5 special tokens); the trainer stops
    early if the corpus has fewer frequent pairs"""
    min_frequency: int = 2
    """a merge must occur at least this often in the tokenizer corpus"""
    n_documents: int = 20000
    """documents (drawn from both pretraining corpora) the tokenizer is trained on"""
    pad_to_multiple: int = 64
    """model embedding rows are padded to a multiple of this, as Qwen3 pads 151,669 tokens to
    151,936 rows, so downstream code meets logits wider than the tokenizer"""

    def __post_init__(self) -> None:
        _check(300 <= self.vocab_size <= 65536, "vocab_size", "must be in [300, 65536]")
        _check(self.min_frequency >= 1, "min_frequency", "must be >= 1")
        _check(self.n_documents >= 100, "n_documents", "must be >= 100")
        _check(self.pad_to_multiple >= 1, "pad_to_multiple", "must be >= 1")


@dataclass
class ModelConfig:
    """A Qwen3ForCausalLM and its pretraining schedule (AdamW, linear warmup, cosine decay)."""

    layers: int = 4
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    steps: int = 2000
    batch_size: int = 8
    """documents per step. Measured on the toy corpus at equal CPU cost: batch 8 x 2000 steps
    reached 0.72 greedy accuracy, 16 x 1400: 0.73 (1.5x the CPU), 32 x 700: 0.57, 64 x 350: 0.13;
    small models want many updates"""
    lr: float = 4.0e-3
    """peak learning rate (prototype: 4e-3, cosine; 6e-3 was worse at batch 16)"""
    min_lr_ratio: float = 0.1
    """cosine decays to lr * min_lr_ratio"""
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "heads", "kv_heads", "intermediate", "steps",
                    "batch_size"):
            _check(getattr(self, key) >= 1, key, "must be >= 1")
        _check(self.hidden % self.heads == 0, "hidden", "must be divisible by heads")
        _check(self.heads % self.kv_heads == 0, "heads", "must be divisible by kv_heads")
        _check((self.hidden // self.heads) % 2 == 0, "hidden",
               "head dim (hidden / heads) must be even for rotary embeddings")
        _check(self.lr > 0 and 0 <= self.min_lr_ratio <= 1, "lr", "need lr > 0, 0 <= min_lr_ratio <= 1")
        _check(0 <= self.warmup_steps <= self.steps, "warmup_steps", "must be in [0, steps]")


def _student_default() -> ModelConfig:
    # prototype student: 2 layers, hidden 64, 2/1 heads, MLP 192, batch 64, 500 steps (0.19);
    # measured here: batch 64 -> 0.16, batch 32 -> 0.06-0.11 (it trains beside the teacher, so the
    # larger batch costs no wall time)
    return ModelConfig(layers=2, hidden=64, heads=2, kv_heads=1, intermediate=192, steps=500,
                       batch_size=64)


@dataclass
class SizesConfig:
    """Rows per generated dataset (world/raw/<name>.jsonl)."""

    openthoughts: int = 1200
    """math prompts in the OpenThoughts3-style pool (the toy config slices it for stages 1, 2)"""
    openthoughts_other_domains: int = 60
    """extra non-math rows (domain 'science'/'code'), as in OpenThoughts3, for the domain filter"""
    math500: int = 100
    ifeval: int = 60
    aime24: int = 30
    aime25: int = 30
    hmmt25: int = 30

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(getattr(self, f.name) >= 0, f.name, "must be >= 0")
        _check(self.math500 >= 1, "math500", "the accuracy check needs >= 1 problem")


@dataclass
class EvalConfig:
    """The build's own greedy accuracy check on toy MATH-500."""

    max_new_tokens: int = 160
    batch_size: int = 50
    min_margin: float = 0.3
    """the build fails unless teacher accuracy >= student accuracy + min_margin (prototype:
    0.89 vs 0.19); -1 disables the check (smoke builds with a few steps)"""
    teacher_rounds: int = 1
    """at most this many pretraining rounds of the teacher: while the margin check fails, the
    teacher trains another ``toy.teacher.steps`` steps from its weights (schedule restarted) on
    fresh documents of its corpus, and the check runs again. A world that passes after round 1 is
    the same world whatever this is. ASSUMED 2 in the toy config: one pretraining round lands the
    teacher anywhere from 0.38 to 0.73 greedy accuracy across seeds 0-4 (make toy-seeds)"""

    def __post_init__(self) -> None:
        _check(self.max_new_tokens >= 8, "max_new_tokens", "must be >= 8")
        _check(self.teacher_rounds >= 1, "teacher_rounds", "must be >= 1")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class ToyConfig:
    """Everything ``rock toy build`` needs besides ``seed`` and ``models.teacher_system_prompts``."""

    threads: int = 2
    """CPU threads of the build, fixed so results do not depend on the machine's core count. With
    >= 2, teacher and student pretrain side by side in two processes of threads // 2 torch threads
    each (measured: a batch-8 teacher step gains little from a second thread)"""
    max_seq_len: int = 384
    """longest pretraining document in tokens (longer ones are an error in the generator)"""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    teacher: ModelConfig = field(default_factory=ModelConfig)
    student: ModelConfig = field(default_factory=_student_default)
    sizes: SizesConfig = field(default_factory=SizesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check(1 <= self.threads <= 256, "threads", "must be in [1, 256]")
        _check(self.max_seq_len >= 64, "max_seq_len", "must be >= 64")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ToyConfig":
        """Build from the ``toy:`` YAML mapping; unknown keys are a :class:`ConfigError`."""
        return from_dict(cls, data or {}, "toy")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
