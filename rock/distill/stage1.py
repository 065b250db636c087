"""Stage 1: off-policy KD on (prompt, teacher response) pairs [5.1, C].

The student is trained for ``epochs`` on the teacher samples (:mod:`rock.distill.sampling`) with
vanilla KD, ``(1 - kd_ratio) * CE + kd_ratio * KL(teacher || student)`` (forward KL, kd_ratio 0.5),
on the response tokens only; AdamW (lr 2e-5, KDFlow betas), 5% linear warmup, gradient
accumulation of ``micro_batch`` sequences up to ``global_batch`` (128), clipping, bf16 on GPU and
fp32 on CPU, gradient checkpointing. The teacher scores the response after its own prompt: the
same user message plus, on the toy, the hidden system message it sampled the response with
(``teacher_system`` of the sample row).

The response is re-tokenised from its text (plus the stop token when it stopped), the way KDFlow
builds its SFT/KD samples. Sequences longer than ``max_seq_len`` keep their prompt and a cut
response (``n_truncated_responses``); samples whose prompt alone fills ``max_seq_len`` or whose
response is empty are skipped and counted in ``summary.json``.

    rock distill stage1 --config config.yaml
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rock.distill.config import ModelsConfig, Stage1Config
from rock.distill.loop import LoopSpec, run_loop
from rock.distill.sampling import chat_prompt_ids, derive_seed, stop_token_ids
from rock.distill.trainer import Trainer, TrainSequence, load_causal_lm, make_runtime
from rock.data import read_string_rows
from rock.errors import DataError

log = logging.getLogger(__name__)


def read_samples(path: str | os.PathLike) -> list[dict]:
    """Rows of ``teacher_samples.jsonl``; malformed rows are a DataError naming file and line."""
    fix = "regenerate with `rock distill teacher-samples`"
    return read_string_rows(path, ("id", "prompt", "response", "finish_reason"), fix=fix,
                            missing_fix="run `rock distill teacher-samples` first")


def build_sequences(rows: list[dict], tokenizer, *, max_seq_len: int, enable_thinking: bool,
                    eos_id: int) -> tuple[list[TrainSequence], dict]:
    """Training sequences from teacher samples, with counts of what was cut or skipped."""
    counts = {"n_samples": len(rows), "n_empty_prompts": 0, "n_overlong_prompts": 0,
              "n_empty_responses": 0, "n_truncated_responses": 0}
    seqs = []
    for row in rows:
        if not row["prompt"].strip():
            counts["n_empty_prompts"] += 1
            continue
        s_prompt = chat_prompt_ids(tokenizer, row["prompt"], enable_thinking=enable_thinking)
        system = row.get("teacher_system")
        t_prompt = chat_prompt_ids(tokenizer, row["prompt"], system=system,
                                   enable_thinking=enable_thinking) if system else list(s_prompt)
        resp = list(tokenizer(row["response"], add_special_tokens=False)["input_ids"])
        if row["finish_reason"] == "stop":
            resp.append(eos_id)
        if not resp:
            counts["n_empty_responses"] += 1
            continue
        room = max_seq_len - len(s_prompt)
        if room < 1:
            counts["n_overlong_prompts"] += 1
            continue
        if len(resp) > room:
            counts["n_truncated_responses"] += 1
            resp = resp[:room]
        seqs.append(TrainSequence(row["id"], s_prompt + resp, t_prompt + resp, len(resp)))
    return seqs, counts


class Stage1Batches:
    """Step -> this rank's share of the global batch (a seeded permutation per epoch)."""

    def __init__(self, seqs: list[TrainSequence], cfg: Stage1Config, runtime):
        self.seqs, self.cfg, self.rt = seqs, cfg, runtime
        self.steps_per_epoch = max(1, -(-len(seqs) // cfg.global_batch))

    @property
    def total_steps(self) -> int:
        total = self.cfg.epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def __call__(self, step: int, trainer: Trainer):
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng(derive_seed(self.cfg.seed, epoch)).permutation(len(self.seqs))
        idx = order[k * self.cfg.global_batch:(k + 1) * self.cfg.global_batch]
        mine = [self.seqs[i] for i in idx][self.rt.rank::self.rt.world]
        return mine, {}


def run_stage1(cfg: Stage1Config, models: ModelsConfig, *, samples_path: str | os.PathLike,
               student: str, teacher: str, out_dir: str | os.PathLike, weighter=None,
               on_step_end=None) -> dict:
    """Stage 1 from ``student`` on the teacher samples, into ``out_dir`` (resumable)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from rock.distill.losses import shared_vocab

    rt = make_runtime(cfg.device, models.dtype)
    torch.manual_seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(student)
    t_tok = AutoTokenizer.from_pretrained(teacher)
    s_cfg = AutoConfig.from_pretrained(student)
    stops = stop_token_ids(tok, s_cfg)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    seqs, counts = build_sequences(read_samples(samples_path), tok, max_seq_len=cfg.max_seq_len,
                                   enable_thinking=models.enable_thinking, eos_id=stops[0])
    if not seqs:
        raise DataError(f"no usable teacher samples ({counts})", file=str(samples_path),
                        fix="check the teacher samples and stage1.max_seq_len")
    log.info("stage 1: %d sequences (%s)", len(seqs), counts)
    teacher_model = load_causal_lm(teacher, rt, trainable=False) if cfg.loss_spec.uses_teacher else None
    t_vocab = teacher_model.config.vocab_size if teacher_model is not None else s_cfg.vocab_size
    vocab = shared_vocab(tok, t_tok, s_cfg.vocab_size, t_vocab, student_name=student, teacher_name=teacher)
    batches = Stage1Batches(seqs, cfg, rt)
    total = batches.total_steps

    def make_trainer(student_model):
        return Trainer(student_model, teacher_model, cfg, rt, total_steps=total, vocab=vocab,
                       pad_id=pad_id, weighter=weighter)

    spec = LoopSpec(out_dir=Path(out_dir), student_path=student, total_steps=total,
                    save_state_every=cfg.save_state_every,
                    save_dtype=rt.dtype if rt.device.type == "cuda" else None,
                    summary={"stage": 1, "config": asdict(cfg), "models": asdict(models),
                             "student": student, "teacher": teacher, "data": counts,
                             "n_sequences": len(seqs), "shared_vocab": vocab, "world_size": rt.world,
                             "distributed": rt.distributed})
    return run_loop(spec, runtime=rt, tokenizer=tok, make_trainer=make_trainer,
                    make_batch=batches, epoch_of=batches.epoch_of,
                    gradient_checkpointing=cfg.gradient_checkpointing, on_step_end=on_step_end)
