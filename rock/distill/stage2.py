"""Stage 2: on-policy KD on the student's own rollouts [5.1, C; 2.1 Eq. 1].

Per rollout round: ``rollout_batch`` prompts (a seeded permutation per epoch of the stage-2 slice)
are rendered with the chat template; the student samples ``n_rollouts`` completions per prompt
(T = 1.0, top-p = 1.0, at most ``max_new_tokens``); the teacher scores the same response tokens
after its own prompt (with the toy's hidden system message when configured); the student is
updated on the full-vocabulary reverse KL (``kd_ratio`` 1.0), ``rollout_batch * n_rollouts /
global_batch`` optimizer steps per round (1 with the defaults: every step samples with the current
weights). The ``hf`` rollout engine is the training model itself; the ``vllm`` engine gets the new
weights pushed before every round (:meth:`rock.distill.vllm_generator.VllmGenerator.push_weights`).

Bad input never stops the run. Prompts that cannot be used (empty, or longer than
``max_prompt_len`` with ``overlong_prompts: skip``) are dropped before the rollout rounds are
formed (:func:`usable_prompts`; counts in ``summary.json``), so a skipped prompt never costs an
optimizer step or a scheduler step: the step count and the learning-rate schedule follow the usable
prompts. Within a round each case is counted in the step log: empty prompts
(``n_empty_prompts``), prompts longer than ``max_prompt_len`` (``n_truncated_prompts``; skipped or
truncated per ``overlong_prompts``), rollouts with no token before the stop token
(``n_empty_rollouts``; kept when they hold the stop token, whose prediction is still a loss
position, dropped when they hold nothing), rollouts cut at ``max_new_tokens``
(``n_truncated_rollouts``). Token weights (Eq. 19, the freeze experiments of Section 4) plug in
through ``weighter`` (:mod:`rock.distill.trainer`).

    rock distill stage2 --config config.yaml
    rock distill stage2 --config tests/config_toy/config.yaml --max-steps 20
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from rock.distill.config import ModelsConfig, Stage2Config
from rock.distill.loop import LoopSpec, checkpoint_steps, run_loop
from rock.distill.sampling import (HfGenerator, chat_prompt_ids, derive_seed, stop_token_ids,
                                   teacher_system_choice)
from rock.distill.vllm_generator import VllmGenerator
from rock.distill.trainer import Trainer, TrainSequence, load_causal_lm, make_runtime
from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def render_prompt_pair(tokenizer, text: str, *, system: str | None, enable_thinking: bool,
                       max_len: int, overlong: str) -> tuple[list[int], list[int], bool] | None:
    """``(student_ids, teacher_ids, was_overlong)`` or None to skip.

    Over-long prompts (student view longer than ``max_len``) are skipped or, with ``truncate``,
    the problem text loses its leading tokens until the student prompt fits (both views are cut in
    the same way, and the chat template and the teacher's system message stay intact).
    """
    s_ids = chat_prompt_ids(tokenizer, text, enable_thinking=enable_thinking)
    if len(s_ids) <= max_len:
        t_ids = chat_prompt_ids(tokenizer, text, system=system, enable_thinking=enable_thinking) \
            if system else list(s_ids)
        return s_ids, t_ids, False
    if overlong == "skip":
        return None
    body = tokenizer(text, add_special_tokens=False)["input_ids"]
    excess = len(s_ids) - max_len
    for _ in range(4):  # BPE may re-merge at the cut; shave a little more if needed
        if excess >= len(body):
            return None
        text_cut = tokenizer.decode(body[excess:])
        s_ids = chat_prompt_ids(tokenizer, text_cut, enable_thinking=enable_thinking)
        if len(s_ids) <= max_len:
            t_ids = chat_prompt_ids(tokenizer, text_cut, system=system, enable_thinking=enable_thinking) \
                if system else list(s_ids)
            return s_ids, t_ids, True
        excess += len(s_ids) - max_len
    return None


def usable_prompts(rows: list[dict], tokenizer, cfg: Stage2Config, *, enable_thinking: bool
                   ) -> tuple[list[dict], dict]:
    """The prompt rows a rollout round can use, and how many were dropped: empty prompts, and
    prompts whose student view (the teacher's system message aside) :func:`render_prompt_pair`
    skips (longer than ``max_prompt_len`` with ``overlong_prompts: skip``, or too long to cut)."""
    kept, counts = [], {"n_prompts_read": len(rows), "n_empty_prompts_dropped": 0,
                        "n_overlong_prompts_dropped": 0}
    for row in rows:
        if not row["prompt"].strip():
            counts["n_empty_prompts_dropped"] += 1
        elif render_prompt_pair(tokenizer, row["prompt"], system=None, enable_thinking=enable_thinking,
                                max_len=cfg.max_prompt_len, overlong=cfg.overlong_prompts) is None:
            counts["n_overlong_prompts_dropped"] += 1
        else:
            kept.append(row)
    counts["n_prompts_used"] = len(kept)
    return kept, counts


class Stage2Batches:
    """Rollout rounds -> per-step training sequences (holds one round of rollouts)."""

    def __init__(self, rows: list[dict], cfg: Stage2Config, models: ModelsConfig, tokenizer, generator,
                 runtime, stop_ids, *, push_weights: Callable | None = None, vocab: int | None = None):
        self.rows, self.cfg, self.models, self.tok = rows, cfg, models, tokenizer
        self.generator, self.runtime, self.stop_ids = generator, runtime, list(stop_ids)
        self.push_weights = push_weights
        self.vocab = vocab
        self.rounds_per_epoch = max(1, -(-len(rows) // cfg.rollout_batch))
        self.steps_per_round = cfg.optimizer_steps_per_round
        self._round = None
        self._seqs: list[TrainSequence] = []
        self._counts: dict = {}

    @property
    def total_steps(self) -> int:
        total = self.cfg.epochs * self.rounds_per_epoch * self.steps_per_round
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def epoch_of(self, step: int) -> int:
        return step // (self.rounds_per_epoch * self.steps_per_round)

    def round_end(self, step: int) -> bool:
        return (step + 1) % self.steps_per_round == 0

    def prompts_of_round(self, r: int) -> list[dict]:
        epoch, k = divmod(r, self.rounds_per_epoch)
        order = np.random.default_rng(derive_seed(self.cfg.seed, epoch)).permutation(len(self.rows))
        idx = order[k * self.cfg.rollout_batch:(k + 1) * self.cfg.rollout_batch]
        return [self.rows[i] for i in idx]

    def __call__(self, step: int, trainer: Trainer):
        r, sub = divmod(step, self.steps_per_round)
        counts = {}
        if self._round != r:
            self._seqs, self._counts = self._rollout_round(r, trainer)
            self._round = r
            counts = dict(self._counts)
        per_rank = self._seqs  # already this rank's share; split it over the round's steps
        chunk = -(-len(per_rank) // self.steps_per_round) if per_rank else 0
        seqs = per_rank[sub * chunk:(sub + 1) * chunk]
        counts.setdefault("generate_seconds", 0.0)
        return seqs, counts

    def _rollout_round(self, r: int, trainer: Trainer):
        cfg, models, rt = self.cfg, self.models, self.runtime
        counts = {"n_empty_prompts": 0, "n_truncated_prompts": 0, "n_empty_rollouts": 0,
                  "n_truncated_rollouts": 0, "n_skipped_sequences": 0}
        items = []  # (row, k, student_ids, teacher_ids)
        for row in self.prompts_of_round(r):
            if not row["prompt"].strip():
                counts["n_empty_prompts"] += 1
                continue
            systems = [teacher_system_choice(models.teacher_system_prompts, cfg.seed,
                                             f"{row['id']}:{r}:{k}") for k in range(cfg.n_rollouts)]
            rendered = {}
            for k, system in enumerate(systems):
                if system not in rendered:
                    rendered[system] = render_prompt_pair(
                        self.tok, row["prompt"], system=system, enable_thinking=models.enable_thinking,
                        max_len=cfg.max_prompt_len, overlong=cfg.overlong_prompts)
                pair = rendered[system]
                if pair is None:
                    break
                items.append((row, k, pair[0], pair[1]))
            pair0 = next(iter(rendered.values()))
            if pair0 is None or pair0[2]:
                counts["n_truncated_prompts"] += 1
        # rollout groups: vLLM TP groups need identical prompts (GPU-NOTES section 5)
        tp = cfg.rollout_tensor_parallel_size if cfg.rollout_backend == "vllm" else 1
        n_groups, group = max(1, rt.world // tp), rt.rank // tp
        mine = items[group::n_groups]
        if self.push_weights is not None:
            self.push_weights(trainer)
        t0 = time.perf_counter()
        comps = self.generator.generate([it[2] for it in mine], n=1, temperature=cfg.temperature,
                                        top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                        seed=derive_seed(cfg.seed, r, group)) if mine else []
        counts["generate_seconds"] = time.perf_counter() - t0
        if hasattr(self.generator, "sleep") and cfg.rollout_backend == "vllm":
            self.generator.sleep()
        stops = set(self.stop_ids)
        seqs = []
        for (row, k, s_ids, t_ids), (c,) in zip(mine, comps):
            resp = list(c.token_ids)
            counts["n_truncated_rollouts"] += c.finish_reason == "length"
            if not [t for t in resp if t not in stops]:
                counts["n_empty_rollouts"] += 1
            if not resp or (self.vocab is not None and max(resp) >= self.vocab):
                counts["n_skipped_sequences"] += 1  # nothing to learn from / id the teacher lacks
                continue
            seqs.append(TrainSequence(f"{row['id']}:{r}:{k}", s_ids + resp, t_ids + resp, len(resp)))
        seqs = seqs[rt.rank % tp::tp]
        # prompt counts are the same on every rank; rollout counts are per rollout group (the ranks
        # of one vLLM TP group hold the same rollouts, so only its first rank contributes)
        rollout_keys = ("n_empty_rollouts", "n_truncated_rollouts", "n_skipped_sequences")
        mine_counts = [counts[k] if rt.rank % tp == 0 else 0 for k in rollout_keys]
        counts.update(zip(rollout_keys, (int(v) for v in rt.all_sum(mine_counts))))
        return seqs, counts


def _check_planned_steps(cfg: Stage2Config, total: int, prompt_counts: dict) -> None:
    """A ``max_steps`` that only the dropped prompts would have reached was planned from the slice
    size (``rock.freeze.plan``): running fewer steps would miss planned checkpoints, so say so."""
    read = prompt_counts["n_prompts_read"]
    rounds = -(-read // cfg.rollout_batch)
    unfiltered = cfg.epochs * rounds * cfg.optimizer_steps_per_round
    if cfg.max_steps and total < cfg.max_steps <= unfiltered:
        raise ConfigError(f"stage 2: max_steps={cfg.max_steps} was planned for {read} prompts, but "
                          f"{read - prompt_counts['n_prompts_used']} are dropped (empty or over "
                          f"max_prompt_len={cfg.max_prompt_len}), which leaves {total} steps; fix: set "
                          f"freeze.max_steps / stage2.max_steps to at most {total}, or "
                          f"stage2.overlong_prompts: truncate")


def _vllm_rollouts(student: str, cfg: Stage2Config, models: ModelsConfig, rt, stops):
    """The vLLM rollout engine (asleep until the first round) and the hook that pushes the
    trainer's weights into it after each optimizer step."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # driver_worker in-process
    generator = VllmGenerator(
        student, tensor_parallel_size=cfg.rollout_tensor_parallel_size,
        seed=cfg.seed + rt.rank // cfg.rollout_tensor_parallel_size, dtype=models.dtype,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        max_model_len=cfg.max_prompt_len + cfg.max_new_tokens, enable_sleep_mode=True,
        colocate=rt.distributed, stop_ids=stops)
    generator.sleep()

    def push(trainer):
        from rock.distill import fsdp

        generator.push_weights(fsdp.iter_full_tensors(trainer.student, dtype=rt.dtype))
    return generator, push


def _stage2_prompts(prompts_path, tok, cfg: Stage2Config, models: ModelsConfig):
    """``(rows, counts)`` of the usable prompts (:func:`usable_prompts`); none usable is an error,
    dropped ones are logged."""
    from rock.distill.sampling import read_prompts

    rows, prompt_counts = usable_prompts(read_prompts(prompts_path), tok, cfg,
                                         enable_thinking=models.enable_thinking)
    if not rows:
        raise DataError(f"no usable prompts ({prompt_counts})", file=str(prompts_path),
                        fix="check the stage-2 prompt slice and stage2.max_prompt_len")
    if len(rows) < prompt_counts["n_prompts_read"]:
        log.warning("stage 2: %d of %d prompts dropped before the rollout rounds (%d empty, %d over "
                    "max_prompt_len=%d)", prompt_counts["n_prompts_read"] - len(rows),
                    prompt_counts["n_prompts_read"], prompt_counts["n_empty_prompts_dropped"],
                    prompt_counts["n_overlong_prompts_dropped"], cfg.max_prompt_len)
    return rows, prompt_counts


def run_stage2(cfg: Stage2Config, models: ModelsConfig, *, prompts_path: str | os.PathLike,
               student: str, teacher: str, out_dir: str | os.PathLike, weighter=None,
               on_step_end=None) -> dict:
    """Stage 2 from ``student`` (the stage-1 model) on ``prompts_path``, into ``out_dir``.

    ``weighter``: optional token weights (Eq. 19; :mod:`rock.distill.trainer`). ``on_step_end``:
    test hook called with the number of finished steps.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from rock.distill.losses import shared_vocab

    rt = make_runtime(cfg.device, models.dtype)
    torch.manual_seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(student)
    rows, prompt_counts = _stage2_prompts(prompts_path, tok, cfg, models)
    t_tok = AutoTokenizer.from_pretrained(teacher)
    teacher_model = load_causal_lm(teacher, rt, trainable=False)
    s_vocab = AutoConfig.from_pretrained(student).vocab_size
    vocab = shared_vocab(tok, t_tok, s_vocab, teacher_model.config.vocab_size,
                         student_name=student, teacher_name=teacher)
    stops = stop_token_ids(tok, AutoConfig.from_pretrained(student))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else stops[0]

    generator, push = _vllm_rollouts(student, cfg, models, rt, stops) if cfg.rollout_backend == "vllm" \
        else (None, None)
    batches = Stage2Batches(rows, cfg, models, tok, generator, rt, stops, push_weights=push, vocab=vocab)
    total = batches.total_steps
    _check_planned_steps(cfg, total, prompt_counts)

    def make_trainer(student_model):
        if cfg.rollout_backend == "hf":  # the rollout engine is the training model itself
            batches.generator = HfGenerator(student_model, tok, batch_size=cfg.rollout_batch_size_hf,
                                            stop_ids=stops, pad_id=pad_id, vocab_limit=vocab)
        return Trainer(student_model, teacher_model, cfg, rt, total_steps=total, vocab=vocab,
                       pad_id=pad_id, weighter=weighter)

    spec = LoopSpec(out_dir=Path(out_dir), student_path=student, total_steps=total,
                    save_state_every=cfg.save_state_every,
                    keep_checkpoints=checkpoint_steps(total, cfg.n_checkpoints),
                    save_dtype=rt.dtype if rt.device.type == "cuda" else None,
                    save_token_losses=cfg.save_token_losses,
                    summary={"stage": 2, "config": asdict(cfg), "models": asdict(models),
                             "student": student, "teacher": teacher, "n_prompts": len(rows),
                             **prompt_counts,
                             "shared_vocab": vocab, "world_size": rt.world,
                             "distributed": rt.distributed})
    log.info("stage 2: %d prompts, %d rollout rounds/epoch, %d steps, checkpoints at %s",
             len(rows), batches.rounds_per_epoch, total, spec.keep_checkpoints)
    return run_loop(spec, runtime=rt, tokenizer=tok, make_trainer=make_trainer,
                    make_batch=batches, epoch_of=batches.epoch_of, state_ok=batches.round_end,
                    gradient_checkpointing=cfg.gradient_checkpointing, on_step_end=on_step_end)
