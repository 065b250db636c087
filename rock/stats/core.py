"""Token statistics of student trajectories, the library of ``rock stats`` (:mod:`rock.stats`):
the ``stats`` config, checkpoint names, the detection set, greedy decoding, teacher-forced scoring
and hidden states [Sec. 2.1, 2.3]."""


from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from rock import paths
from rock.config import from_dict
from rock.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm")
#: checkpoint specs with a fixed meaning (anything else is a local directory or a hub id)
CHECKPOINT_SPECS = ("student", "teacher", "stage1", "stage2", "stage2_first", "stage2_last")
TOKEN_COLUMNS = ("trajectory", "position", "token_id", "log_ratio", "reverse_kl", "student_entropy",
                 "teacher_entropy", "student_logprob", "teacher_logprob", "checkpoint")


@dataclass
class StatsConfig:
    """``stats:`` section. Paper values cite their source; the rest is ASSUMED in config.yaml."""

    dataset: str = "math500"
    """detection set: a benchmark written by the data stage [2.3: MATH-500]"""
    problem_field: str = "problem"
    id_field: str = "unique_id"
    n_problems: int | None = 500
    """[2.3] N = 500; null = every row"""
    shuffle_seed: int | None = 42
    """reference/README.md: the authors shuffle MATH-500 with seed 42 before taking N; null = file order"""
    instruction_suffix: str = ""
    """appended to the user message (authors: a think-step-by-step instruction)"""
    max_new_tokens: int = 4096
    """reference/README.md: 4096 new tokens ("unrestricted")"""
    decode_backend: str = "hf"
    decode_checkpoint: str = "post"
    """which checkpoint name decodes the trajectories (ASSUMED post-OPD: Fig. 2 is on its rollouts)"""
    batch_size: int = 8
    """hf decode: prompts per batch (memory only)"""
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    checkpoints: dict[str, str] = field(default_factory=lambda: {
        "pre": "stage1", "post": "stage2", "early": "stage2_first", "late": "stage2_last"})
    """name -> model spec (resolve_checkpoint); pre/post [2.2 Eq. 5], early/late [2.6]"""
    chunk_size: int | None = None
    """positions per output-layer chunk; null = rock.distill.losses default (32M elements)"""
    hidden_dim: int = 256
    """stored hidden size (random projection above it). ASSUMED: 2M tokens x 256 x fp16 = 1 GB"""
    device: str = "auto"
    seed: int = 0

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"stats.{name}: {why} (got {getattr(self, name)!r})")

        if self.dataset not in paths.BENCHMARKS:
            bad("dataset", f"must be one of {paths.BENCHMARKS}")
        if self.n_problems is not None and (not isinstance(self.n_problems, int) or self.n_problems < 1):
            bad("n_problems", "must be null or an integer >= 1")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            bad("max_new_tokens", "must be an integer >= 1")
        if self.decode_backend not in BACKENDS:
            bad("decode_backend", f"must be one of {BACKENDS}")
        if not self.checkpoints or any(not isinstance(k, str) or not isinstance(v, str) or not v
                                       for k, v in self.checkpoints.items()):
            bad("checkpoints", "must map checkpoint names to model specs")
        if self.decode_checkpoint not in self.checkpoints:
            bad("decode_checkpoint", f"must be one of the checkpoint names {sorted(self.checkpoints)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            bad("chunk_size", "must be null or >= 1")
        if self.hidden_dim < 1 or self.batch_size < 1 or self.tensor_parallel_size < 1:
            bad("hidden_dim", "hidden_dim, batch_size and tensor_parallel_size must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            bad("device", "must be auto, cpu or cuda")

    @staticmethod
    def from_dict(data: dict | None) -> "StatsConfig":
        return from_dict(StatsConfig, data, "stats")


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------

def kept_checkpoints(run_dir) -> list[Path]:
    """Stage-2 checkpoints kept by ``rock distill stage2``, sorted by step."""
    root = paths.train_checkpoints_dir(paths.stage_dir(run_dir, 2))
    found = []
    if root.is_dir():
        for d in root.iterdir():
            m = re.fullmatch(r"step_(\d+)", d.name)
            if m and d.is_dir():
                found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


#: checkpoint specs naming a kept stage-2 checkpoint by its index among the kept ones
KEPT_INDEX = {"stage2_first": 0, "stage2_penultimate": -2, "stage2_last": -1}


def resolve_checkpoint(spec: str, run_dir, models: dict) -> str:
    """A model spec -> directory or hub id.

    ``student``/``teacher``: ``models.student``/``models.teacher``; ``stage1``/``stage2``: the final
    model of that distillation stage; ``stage2_first``/``stage2_last``: the first/last kept stage-2
    checkpoint; ``stage2_penultimate``: the second-to-last kept one (a late checkpoint whose weights
    are not the final model's, Sec. 2.6, rock.persistence); ``step_<n>``: that kept checkpoint;
    anything else: a directory or hub id as given.
    """
    if spec in ("student", "teacher"):
        return str(models[spec])
    if spec in ("stage1", "stage2"):
        return str(paths.stage_model(run_dir, int(spec[-1])))
    if spec in KEPT_INDEX:
        kept = kept_checkpoints(run_dir)
        need = 2 if spec == "stage2_penultimate" else 1
        if len(kept) < need:
            raise DataError(f"no kept stage-2 checkpoint for '{spec}' ({len(kept)} kept, needs {need})",
                            file=str(paths.train_checkpoints_dir(paths.stage_dir(run_dir, 2))),
                            fix=f"run rock distill stage2 with n_checkpoints >= {need + 1}")
        return str(kept[KEPT_INDEX[spec]])
    if re.fullmatch(r"step_\d+", spec):
        return str(paths.train_checkpoint(paths.stage_dir(run_dir, 2), int(spec[5:])))
    return spec


# --------------------------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------------------------

def detection_problems(rows: list[dict], cfg: StatsConfig, *, file: str) -> list[dict]:
    """The detection set: shuffled with ``shuffle_seed``, first ``n_problems`` (with N = 500 on
    MATH-500 the shuffle only changes the order)."""
    for i, row in enumerate(rows):
        if not isinstance(row.get(cfg.problem_field), str) or not row[cfg.problem_field].strip():
            raise DataError("missing or empty problem text", file=file, line=i + 1, field=cfg.problem_field,
                            fix="materialize the benchmark with rock data")
    order = list(range(len(rows)))
    if cfg.shuffle_seed is not None:
        # the convention of ``datasets.Dataset.shuffle(seed=...)``: numpy's default_rng permutation
        order = [int(i) for i in np.random.default_rng(cfg.shuffle_seed).permutation(len(rows))]
    if cfg.n_problems is not None:
        if cfg.n_problems > len(rows):
            log.warning("%s has %d rows, fewer than n_problems=%d; using all", file, len(rows), cfg.n_problems)
        order = order[:cfg.n_problems]
    return [{"problem_id": str(rows[i].get(cfg.id_field, i)), "problem": rows[i][cfg.problem_field]} for i in order]


def build_trajectory_prompts(problems: list[dict], tokenizer, cfg: StatsConfig, *, enable_thinking: bool,
                             system_prompts: Sequence[str], seed: int) -> list[dict]:
    """Student and teacher prompt ids per problem (teacher: hidden system message if configured)."""
    from rock.distill.sampling import chat_prompt_ids, teacher_system_choice

    out = []
    for i, p in enumerate(problems):
        text = p["problem"] + cfg.instruction_suffix
        system = teacher_system_choice(system_prompts, seed, f"stats:{p['problem_id']}")
        s_ids = chat_prompt_ids(tokenizer, text, enable_thinking=enable_thinking)
        t_ids = chat_prompt_ids(tokenizer, text, system=system, enable_thinking=enable_thinking) if system else s_ids
        out.append({"trajectory": i, "problem_id": p["problem_id"], "prompt": text, "teacher_system": system,
                    "student_prompt_ids": list(s_ids), "teacher_prompt_ids": list(t_ids)})
    return out


def decode(rows: list[dict], generator, cfg: StatsConfig, tokenizer) -> list[dict]:
    """Greedy decoding (temperature 0) of every prompt; adds ``response_ids``, ``finish_reason``."""
    comps = generator.generate([r["student_prompt_ids"] for r in rows], n=1, temperature=0.0, top_p=1.0,
                               max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    out = []
    for r, (c,) in zip(rows, comps):
        out.append({**r, "response_ids": list(c.token_ids), "finish_reason": c.finish_reason,
                    "response": tokenizer.decode(c.token_ids, skip_special_tokens=False)})
    empty = sum(1 for r in out if not r["response_ids"])
    if empty:
        log.warning("%d of %d trajectories are empty (they contribute no token rows)", empty, len(out))
    return out


def read_trajectories(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError("trajectories not found", file=str(path), fix="run rock stats decode first")
    rows = []
    with open(path) as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            for key in ("trajectory", "student_prompt_ids", "teacher_prompt_ids", "response_ids"):
                if key not in row:
                    raise DataError("missing field", file=str(path), line=i + 1, field=key,
                                    fix="re-run rock stats decode")
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# score
# --------------------------------------------------------------------------------------------

def _backbone(model):
    """The decoder stack (final norm included) and the output layer of a causal LM."""
    base = getattr(model, model.base_model_prefix, None)
    head = model.get_output_embeddings()
    if base is None or head is None:
        raise ModelError(f"{type(model).__name__}: no base model / output layer to score in chunks")
    return base, head


@dataclass
class ScoredChunk:
    """Response positions ``[start, start + n)`` of one trajectory."""

    trajectory: int
    start: int
    tokens: torch.Tensor           # [n] the response tokens x_t
    student_logits: torch.Tensor   # [n, V] rows predicting them
    teacher_logits: torch.Tensor   # [n, V]
    student_hidden: torch.Tensor   # [n, H] student state after reading x_t


@torch.no_grad()
def iter_scored_chunks(student, teacher, trajectories: list[dict], *, vocab: int, chunk_size: int,
                       device, show_progress: bool = True) -> Iterator[ScoredChunk]:
    """Teacher-forced student and teacher logits on the response tokens, ``chunk_size`` at a time.

    Logits at sequence index ``P - 1 + j`` predict response token ``j`` (``P`` = that model's prompt
    length); the hidden state at ``P + j`` is the student's state after reading it.
    """
    from tqdm.auto import tqdm

    s_base, s_head = _backbone(student)
    t_base, t_head = _backbone(teacher)
    for row in tqdm(trajectories, desc="score", unit="seq", disable=not show_progress, mininterval=10):
        resp = [int(x) for x in row["response_ids"]]
        if not resp:
            continue
        s_ids = torch.tensor([list(row["student_prompt_ids"]) + resp], device=device)
        t_ids = torch.tensor([list(row["teacher_prompt_ids"]) + resp], device=device)
        ps, pt = len(row["student_prompt_ids"]), len(row["teacher_prompt_ids"])
        hs = s_base(input_ids=s_ids, use_cache=False).last_hidden_state[0]
        ht = t_base(input_ids=t_ids, use_cache=False).last_hidden_state[0]
        tok = torch.tensor(resp, device=device)
        for a in range(0, len(resp), chunk_size):
            b = min(len(resp), a + chunk_size)
            sl = s_head(hs[ps - 1 + a:ps - 1 + b])[:, :vocab]
            tl = t_head(ht[pt - 1 + a:pt - 1 + b])[:, :vocab]
            yield ScoredChunk(int(row["trajectory"]), a, tok[a:b], sl, tl, hs[ps + a:ps + b])


def projection(hidden_size: int, dim: int, seed: int) -> np.ndarray | None:
    """Seeded Gaussian projection ``[hidden_size, dim] / sqrt(dim)`` (None when no reduction is needed)."""
    if hidden_size <= dim:
        return None
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((hidden_size, dim)) / np.sqrt(dim)).astype(np.float32)


def score(student, teacher, trajectories: list[dict], *, checkpoint: str, vocab: int,
          chunk_size: int | None, device) -> pd.DataFrame:
    """Token table: one row per response token, sorted by trajectory and position."""
    from rock.distill.losses import chunk_rows, token_statistics

    rows = chunk_rows(vocab, chunk_size)
    cols: dict[str, list] = {k: [] for k in TOKEN_COLUMNS if k != "checkpoint"}
    for ch in iter_scored_chunks(student, teacher, trajectories, vocab=vocab, chunk_size=rows, device=device):
        st = token_statistics(ch.student_logits, ch.teacher_logits, ch.tokens, chunk_size=rows)
        n = len(ch.tokens)
        cols["trajectory"].append(np.full(n, ch.trajectory, np.int32))
        cols["position"].append(np.arange(ch.start, ch.start + n, dtype=np.int32))
        cols["token_id"].append(ch.tokens.cpu().numpy().astype(np.int32))
        for k in ("log_ratio", "reverse_kl", "student_entropy", "teacher_entropy", "student_logprob",
                  "teacher_logprob"):
            cols[k].append(st[k].float().cpu().numpy())
    if not cols["trajectory"]:
        raise DataError("no response tokens to score", field="response_ids",
                        fix="check the decode step (all trajectories empty?)")
    table = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    table["checkpoint"] = pd.Categorical([checkpoint] * len(table))
    return table


@torch.no_grad()
def hidden_states(student, trajectories: list[dict], *, dim: int, seed: int, device,
                  show_progress: bool = True) -> np.ndarray:
    """Student final hidden states at every response token (rows aligned with :func:`score`'s
    table), float16, projected to ``dim`` dimensions when the model is wider."""
    from tqdm.auto import tqdm

    base, _ = _backbone(student)
    proj = projection(student.config.hidden_size, dim, seed)
    parts = []
    for row in tqdm(trajectories, desc="hidden", unit="seq", disable=not show_progress, mininterval=10):
        resp = [int(x) for x in row["response_ids"]]
        if not resp:
            continue
        ids = torch.tensor([list(row["student_prompt_ids"]) + resp], device=device)
        p = len(row["student_prompt_ids"])
        h = base(input_ids=ids, use_cache=False).last_hidden_state[0, p:p + len(resp)].float().cpu().numpy()
        parts.append((h @ proj if proj is not None else h).astype(np.float16))
    if not parts:
        raise DataError("no response tokens", field="response_ids", fix="check the decode step")
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

def load_models(student_path: str, teacher_path: str, models: dict, cfg: StatsConfig):
    """Student, teacher (frozen, compute dtype), tokenizer and the shared vocabulary size."""
    from transformers import AutoTokenizer

    from rock.distill.losses import shared_vocab
    from rock.distill.trainer import load_causal_lm, make_runtime

    runtime = make_runtime(cfg.device, models["dtype"], env={})
    s_tok = AutoTokenizer.from_pretrained(student_path)
    t_tok = AutoTokenizer.from_pretrained(teacher_path)
    student = load_causal_lm(student_path, runtime, trainable=False)
    teacher = load_causal_lm(teacher_path, runtime, trainable=False)
    vocab = shared_vocab(s_tok, t_tok, student.config.vocab_size, teacher.config.vocab_size,
                         student_name=str(student_path), teacher_name=str(teacher_path))
    return student, teacher, s_tok, vocab, runtime


def make_generator(model_path: str, tokenizer, cfg: StatsConfig, models: dict):
    """Greedy decoder: ``HfGenerator`` (CPU/GPU) or ``VllmGenerator`` (GPU, vLLM 0.33.0)."""
    from rock.distill.sampling import HfGenerator, stop_token_ids
    from rock.distill.vllm_generator import VllmGenerator
    from rock.distill.trainer import load_causal_lm, make_runtime

    if cfg.decode_backend == "vllm":
        return VllmGenerator(model_path, tensor_parallel_size=cfg.tensor_parallel_size, seed=cfg.seed,
                             dtype=models["dtype"],
                             gpu_memory_utilization=cfg.gpu_memory_utilization,
                             stop_ids=stop_token_ids(tokenizer))
    runtime = make_runtime(cfg.device, models["dtype"], env={})
    model = load_causal_lm(model_path, runtime, trainable=False)
    return HfGenerator(model, tokenizer, batch_size=cfg.batch_size, show_progress=True)
