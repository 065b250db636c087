"""Sampling from a model: teacher answers for stage 1 and student rollouts for stage 2 [5.1, C].

Two interchangeable generators share one method, ``generate(prompts, n=, temperature=, top_p=,
max_new_tokens=, seed=) -> list[list[Completion]]`` (prompt token ids in, ``n`` completions per
prompt out):

* :class:`HfGenerator` (CPU and GPU): batched ``transformers`` ``generate`` with left padding. The
  sampler is exactly temperature + nucleus (``top_k`` disabled), so a model's own
  ``generation_config.json`` defaults (Qwen3-Instruct ships ``top_k=20``) never leak in. Seeded
  through ``torch.manual_seed``; rollouts of the model being trained use the same model object, so
  they always see the current weights.
* :class:`~rock.distill.vllm_generator.VllmGenerator` (GPU only; vLLM 0.33.0, imported lazily):
  ``vllm.LLM(...)`` plus one ``vllm.SamplingParams(n=, temperature=, top_p=, max_tokens=, seed=)``
  per prompt. For stage 2 it runs colocated with the trainer in sleep mode and receives the
  trainer's weights every step
  (:meth:`VllmGenerator.push_weights`; GPU-NOTES.md sections 1, 5). Only ``engine_kwargs`` and
  ``sampling_kwargs`` decide what vLLM is asked for; tests check them with a fake ``vllm`` module.

Teacher privileged context (toy): with ``models.teacher_system_prompts`` non-empty, the teacher's
chat input gets ``{"role": "system", "content": choice}`` before the user message, the choice drawn
per sequence with ``random.Random(f"{seed}:{key}").choice`` (key = prompt id and sample index); the
student's input never has it. With an empty list both inputs are identical.

``rock distill teacher-samples`` (:func:`sample_teacher`) writes ``teacher_samples.jsonl`` rows
``{"id", "prompt", "response", "teacher_system", "finish_reason", "n_response_tokens"}`` in shards
that survive a kill (a rerun skips finished shards), then one atomic rename.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from rock.atomic import atomic_path, write_json
from rock.data import read_string_rows
from rock.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """One sampled continuation: generated ids (with the stop token if it stopped) and why it ended."""

    token_ids: list[int]
    finish_reason: str  # "stop" (a stop token was generated) or "length" (max_new_tokens reached)


# --------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------

def chat_prompt_ids(tokenizer, text: str, *, system: str | None = None,
                    enable_thinking: bool = False) -> list[int]:
    """Token ids of the chat-templated prompt (generation prompt appended) [C].

    ``enable_thinking`` is passed to templates that know it (Qwen3) and ignored by others.
    """
    messages = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": text}]
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no chat template; "
                         "use an instruct model or add a ChatML template to tokenizer_config.json")
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             enable_thinking=enable_thinking)
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def teacher_system_choice(system_prompts: Sequence[str], seed: int, key: str) -> str | None:
    """The hidden teacher context for one sequence (PREAMBLE: toy teacher privileged context)."""
    if not system_prompts:
        return None
    return random.Random(f"{seed}:{key}").choice(list(system_prompts))


def stop_token_ids(tokenizer, model_config=None, generation_config=None) -> list[int]:
    """Ids that end a completion: the tokenizer's eos plus the model's generation eos ids."""
    ids: list[int] = []
    for source in (tokenizer, generation_config, model_config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v is not None and int(v) not in ids:
                ids.append(int(v))
    if not ids:
        raise ModelError("no eos token: set eos_token in the tokenizer or eos_token_id in the model "
                         "config, or completions never stop")
    return ids


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> Completion:
    """Cut generated ids after the first stop token (kept); without one the completion hit the limit."""
    stops = set(stop_ids)
    for i, tok in enumerate(ids):
        if tok in stops:
            return Completion(list(ids[: i + 1]), "stop")
    return Completion(list(ids), "length")


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (stable across runs and Python versions)."""
    return random.Random(":".join(str(int(p)) for p in parts)).getrandbits(31)


# --------------------------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------------------------

class HfGenerator:
    """Batched sampling with ``transformers`` (left padding, temperature + top-p only).

    ``loop="kv"`` (default) decodes with a plain loop over the model's forward and its KV cache
    (``DynamicCache``), sampling from the same distribution as ``generate`` (temperature, then
    top-p with ``TopPLogitsWarper``'s rule, then one draw from the renormalised nucleus), prefilling
    each distinct prompt once and dropping finished sequences from the batch; on small CPU models it
    avoids much of ``generate``'s per-token overhead (benchmarks/bench_opd_step.py).
    ``loop="generate"`` calls ``model.generate``. Greedy outputs of both are identical (tested).
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 8, stop_ids: Sequence[int] | None = None,
                 pad_id: int | None = None, vocab_limit: int | None = None, show_progress: bool = False,
                 loop: str = "kv"):
        if loop not in ("kv", "generate"):
            raise ConfigError(f"HfGenerator loop '{loop}' unknown; use kv or generate")
        self.loop = loop
        self.model = model
        # ids >= vocab_limit (padding rows of the embedding past the shared vocabulary) are never
        # sampled, so every rollout token exists for the teacher too
        n_out = model.config.vocab_size
        self.suppress = list(range(vocab_limit, n_out)) if vocab_limit and vocab_limit < n_out else None
        self.batch_size = int(batch_size)
        self.stop_ids = list(stop_ids or stop_token_ids(tokenizer, model.config,
                                                        getattr(model, "generation_config", None)))
        pad = pad_id if pad_id is not None else tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.stop_ids[0])
        self.show_progress = show_progress

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _config(self, temperature: float, top_p: float, max_new_tokens: int):
        from transformers import GenerationConfig

        greedy = temperature == 0
        return GenerationConfig(
            do_sample=not greedy, temperature=None if greedy else float(temperature),
            # top_k=0, not None: None would let the model's generation_config.json (Qwen3: 20) in
            top_p=None if greedy else float(top_p), top_k=None if greedy else 0,
            max_new_tokens=int(max_new_tokens),
            eos_token_id=self.stop_ids, pad_token_id=self.pad_id, use_cache=True,
            suppress_tokens=self.suppress)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], *, n: int = 1, temperature: float = 1.0,
                 top_p: float = 1.0, max_new_tokens: int = 256, seed: int = 0) -> list[list[Completion]]:
        if any(len(p) == 0 for p in prompts):
            raise DataError("empty prompt passed to generate(); filter empty prompts first")
        flat = [list(p) for p in prompts for _ in range(n)]
        gen_cfg = self._config(temperature, top_p, max_new_tokens)
        was_training = self.model.training
        self.model.eval()
        torch.manual_seed(seed)
        out: list[Completion] = []
        try:
            batches = range(0, len(flat), self.batch_size)
            for a in tqdm(batches, desc="generate", disable=not self.show_progress, leave=False):
                chunk = flat[a:a + self.batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                attn = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, width - len(p):] = torch.tensor(p)
                    attn[i, width - len(p):] = 1
                if self.loop == "kv":
                    new = self._decode(ids.to(self.device), attn.to(self.device), temperature, top_p,
                                       max_new_tokens)
                else:
                    new = self.model.generate(input_ids=ids.to(self.device), attention_mask=attn.to(self.device),
                                              generation_config=gen_cfg)[:, width:]
                for row in new.tolist():
                    out.append(cut_at_stop(row, self.stop_ids))
        finally:
            self.model.train(was_training)
        return [out[i * n:(i + 1) * n] for i in range(len(prompts))]


    def _decode(self, ids: torch.Tensor, attn: torch.Tensor, temperature: float, top_p: float,
                max_new_tokens: int) -> torch.Tensor:
        """New token ids ``[B, <= max_new_tokens]`` (pad after a sequence's stop token).

        Identical prompts (the ``n`` rollouts of one prompt) are prefilled once and their cache rows
        repeated; finished sequences leave the batch (their cache rows are dropped), so the tail of
        long rollouts does not pay for the short ones.
        """
        from transformers import DynamicCache

        batch, width = ids.shape
        stops = torch.tensor(self.stop_ids, device=ids.device)
        uniq, inverse = torch.unique(torch.cat([ids, attn], dim=1), dim=0, return_inverse=True)
        shared = len(uniq) < batch             # (torch.unique sorts: use it only with its inverse)
        u_ids, u_attn = (uniq[:, :width], uniq[:, width:]) if shared else (ids, attn)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=u_ids, attention_mask=u_attn,
                            position_ids=(u_attn.cumsum(-1) - 1).clamp_min(0), past_key_values=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1, :]
        if shared:
            cache.batch_select_indices(inverse)
            logits = logits[inverse]
        next_pos = attn.sum(-1)                 # position of the first new token (left padding)
        out = torch.full((batch, max_new_tokens), self.pad_id, dtype=torch.long, device=ids.device)
        active = torch.arange(batch, device=ids.device)
        steps = 0
        for t in range(max_new_tokens):
            tok = self._pick(logits.float(), temperature, top_p)
            out[active, t] = tok
            steps = t + 1
            finished = torch.isin(tok, stops)
            if bool(finished.all()):
                break
            if bool(finished.any()):
                keep = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                attn, next_pos, tok, active = attn[keep], next_pos[keep], tok[keep], active[keep]
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            logits = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                                past_key_values=cache, use_cache=True).logits[:, -1, :]
            next_pos = next_pos + 1
        return out[:, :steps]

    def _pick(self, logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
        """One token per row: greedy, or a sample of softmax(logits / T) restricted to the top-p
        nucleus, drawn by inverting the CDF with one uniform per row (the same distribution as
        ``torch.multinomial``; ~10x cheaper per decoding step on CPU, where drawing a random number
        per vocabulary entry dominated the step of a small model). ``right=True`` never lands on a
        zero-probability token (its CDF step is empty)."""
        if self.suppress:
            logits[:, self.suppress] = float("-inf")
        if temperature == 0:
            return logits.argmax(-1)
        logits = logits / temperature
        if top_p < 1.0:  # transformers' TopPLogitsWarper: drop the low tail of mass <= 1 - top_p
            sorted_logits, order = torch.sort(logits, descending=False)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            remove = cum <= (1 - top_p)
            remove[:, -1] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        cum = logits.softmax(-1).cumsum(-1)   # inverse CDF: one uniform per row
        u = torch.rand(cum.shape[0], 1, device=cum.device, dtype=cum.dtype) * cum[:, -1:]
        return torch.searchsorted(cum, u, right=True).squeeze(1).clamp_max(cum.shape[1] - 1)


# --------------------------------------------------------------------------------------------
# stage: teacher samples
# --------------------------------------------------------------------------------------------

def read_prompts(path: str | os.PathLike) -> list[dict]:
    """Rows ``{"id": str, "prompt": str}`` of a prompts jsonl (rock.data); bad rows are DataError."""
    return read_string_rows(path, ("id", "prompt"), missing_fix="run `rock data` first",
                            fix='rows are {"id": str, "prompt": str}')


def sample_teacher(rows: list[dict], tokenizer, generator, *, out_path: str | os.PathLike,
                   temperature: float, top_p: float, max_new_tokens: int, seed: int,
                   system_prompts: Sequence[str] = (), enable_thinking: bool = False,
                   max_prompt_len: int = 0, shard_size: int = 256) -> dict:
    """Teacher answers to ``rows`` [C]: one sample per prompt, written as ``out_path`` (jsonl).

    Shard ``k`` (prompts ``k*shard_size ...``) is sampled with seed ``derive_seed(seed, k)`` and
    written atomically under ``<out_path>.parts/``; a rerun after a kill skips finished shards, so
    the result does not depend on where it was interrupted. Empty and over-long prompts are skipped
    and counted in the returned summary.
    """
    out_path = Path(out_path)
    parts = out_path.parent / (out_path.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    summary = {"n_prompts": len(rows), "n_empty_prompts": 0, "n_overlong_prompts": 0,
               "n_samples": 0, "n_truncated_responses": 0, "n_empty_responses": 0,
               "response_tokens": 0, "generate_seconds": 0.0}
    n_shards = (len(rows) + shard_size - 1) // shard_size
    for k in tqdm(range(n_shards), desc="teacher samples", unit="shard"):
        shard = parts / f"shard_{k:05d}.jsonl"
        stats_file = parts / f"shard_{k:05d}.json"
        if shard.exists() and stats_file.exists():
            stats = json.loads(stats_file.read_text())
        else:
            stats, out_rows = _sample_shard(
                rows[k * shard_size:(k + 1) * shard_size], tokenizer, generator,
                temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                seed=derive_seed(seed, k), system_seed=seed, system_prompts=system_prompts,
                enable_thinking=enable_thinking, max_prompt_len=max_prompt_len)
            with atomic_path(shard) as tmp, open(tmp, "w") as fh:
                for r in out_rows:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            write_json(stats_file, stats)
        for key, v in stats.items():
            summary[key] = summary.get(key, 0) + v if key != "n_prompts" else summary[key]
    with atomic_path(out_path) as tmp, open(tmp, "wb") as dst:
        for k in range(n_shards):
            with open(parts / f"shard_{k:05d}.jsonl", "rb") as src:
                shutil.copyfileobj(src, dst)
    shutil.rmtree(parts, ignore_errors=True)
    log.info("teacher samples: %s", summary)
    return summary


def _sample_shard(rows, tokenizer, generator, *, temperature, top_p, max_new_tokens, seed,
                  system_seed, system_prompts, enable_thinking, max_prompt_len):
    stats = {"n_empty_prompts": 0, "n_overlong_prompts": 0, "n_samples": 0,
             "n_truncated_responses": 0, "n_empty_responses": 0, "response_tokens": 0,
             "generate_seconds": 0.0}
    keep, prompt_ids, systems = [], [], []
    for row in rows:
        if not row["prompt"].strip():
            stats["n_empty_prompts"] += 1
            continue
        system = teacher_system_choice(system_prompts, system_seed, f"{row['id']}:0")
        ids = chat_prompt_ids(tokenizer, row["prompt"], system=system, enable_thinking=enable_thinking)
        if max_prompt_len and len(ids) > max_prompt_len:
            stats["n_overlong_prompts"] += 1
            continue
        keep.append(row)
        prompt_ids.append(ids)
        systems.append(system)
    t0 = time.perf_counter()
    comps = generator.generate(prompt_ids, n=1, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, seed=seed) if prompt_ids else []
    stats["generate_seconds"] = time.perf_counter() - t0
    out = []
    for row, system, (c,) in zip(keep, systems, comps):
        body = c.token_ids[:-1] if c.finish_reason == "stop" else c.token_ids  # drop the stop token
        stats["n_samples"] += 1
        stats["response_tokens"] += len(c.token_ids)
        stats["n_truncated_responses"] += c.finish_reason == "length"
        stats["n_empty_responses"] += len(body) == 0
        out.append({"id": row["id"], "prompt": row["prompt"],
                    "response": tokenizer.decode(body, skip_special_tokens=False),
                    "teacher_system": system, "finish_reason": c.finish_reason,
                    "n_response_tokens": len(c.token_ids)})
    return stats, out

