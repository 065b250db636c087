"""Toy teacher and student: small ``transformers.Qwen3ForCausalLM`` models and their pretraining.

The paper distils Qwen3-30B-A3B-Instruct-2507 into Qwen3-4B-Instruct-2507 (Sec. 5.1); the toy keeps
the architecture (Qwen3: RMSNorm, q/k-norm, GQA, SwiGLU, RoPE, tied embeddings as in Qwen3-4B) at
CPU size. Pretraining is supervised on the assistant turn (loss on the response tokens and the
closing ``<|im_end|>``), AdamW with linear warmup and cosine decay, gradient clipping; one pass over
a freshly generated corpus (``steps * batch_size`` documents, no document repeated) in batches of
similar length (right padding, no attention mask: the fast causal path of sdpa).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rock.errors import ConfigError
from rock.toy.config import ModelConfig
from rock.toy.corpus import Document
from rock.toy.tokenizer import IM_END, render_chat

log = logging.getLogger(__name__)

#: RoPE base; ASSUMED: the toy's sequences are < 512 tokens, so the classic 10,000 suffices
ROPE_THETA = 10000.0
#: max_position_embeddings written to config.json: RoPE has no learned positions, so this is only
#: the advertised context (ASSUMED: ample for toy prompts + generations, which stay < 512 tokens)
MAX_POSITIONS = 2048
#: batches per length bucket: sorting 4 batches' worth of documents by length cuts the padded
#: tokens from 1.28-1.38x to 1.10-1.12x the real ones (measured, batch 16-64, toy corpus).
#: Measured alternative: packing rows with a block-diagonal mask cost ~40% more CPU per step
#: (sdpa leaves its fast causal path when given a mask).
BUCKET_BATCHES = 4
#: initializer std of Qwen3 configs
INIT_STD = 0.02


@dataclass
class Encoded:
    """A document as token ids; ``n_prompt`` leading ids carry no loss."""

    ids: list[int]
    n_prompt: int


def padded_vocab(n_tokens: int, multiple: int) -> int:
    """Embedding rows: the tokenizer size rounded up to ``multiple`` (Qwen3: 151,669 -> 151,936)."""
    return -(-n_tokens // multiple) * multiple


def qwen3_config(cfg: ModelConfig, tokenizer, vocab_size: int):
    """A ``transformers.Qwen3Config`` of the given size, with the tokenizer's special ids."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads, head_dim=cfg.hidden // cfg.heads,
        max_position_embeddings=MAX_POSITIONS, initializer_range=INIT_STD,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        tie_word_embeddings=True, use_cache=True,
        bos_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END))


def encode_documents(docs: list[Document], tokenizer, max_len: int) -> list[Encoded]:
    """Prompt (chat template with generation prompt) + response + ``<|im_end|>`` as ids."""
    prompts = [render_chat(d.prompt_messages(), add_generation_prompt=True) for d in docs]
    responses = [d.assistant + IM_END for d in docs]
    p_ids = tokenizer(prompts, add_special_tokens=False).input_ids
    r_ids = tokenizer(responses, add_special_tokens=False).input_ids
    out = []
    for doc, p, r in zip(docs, p_ids, r_ids):
        if len(p) + len(r) > max_len:
            raise ConfigError(f"toy.max_seq_len: a {doc.kind} document has {len(p) + len(r)} "
                              f"tokens > {max_len}; raise toy.max_seq_len")
        out.append(Encoded(p + r, len(p)))
    return out


def lr_at(step: int, cfg: ModelConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def length_bucketed(data: list[Encoded], batch_size: int, bucket_batches: int,
                    rng: random.Random) -> list[list[Encoded]]:
    """Batches of similar length: each run of ``batch_size * bucket_batches`` documents is sorted
    by length and cut into batches, whose order is then shuffled. Every document is used once."""
    batches = []
    chunk = batch_size * bucket_batches
    for start in range(0, len(data) - batch_size + 1, chunk):
        part = sorted(data[start:start + chunk], key=lambda e: len(e.ids))
        group = [part[i:i + batch_size] for i in range(0, len(part) - batch_size + 1, batch_size)]
        rng.shuffle(group)
        batches += group
    return batches


def collate(batch: list[Encoded], pad_id: int):
    """Right-padded ``input_ids`` and ``labels`` (-100 on prompt and padding)."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, :len(e.ids)] = torch.tensor(e.ids)
        labels[i, e.n_prompt:len(e.ids)] = torch.tensor(e.ids[e.n_prompt:])
    return ids, labels


def pretrain(cfg: ModelConfig, model_config, data: list[Encoded], pad_id: int, seed: int,
             name: str, model=None) -> tuple[object, dict]:
    """Initialise a Qwen3ForCausalLM with ``torch.manual_seed(seed)`` (or go on training ``model``,
    with a fresh optimizer and schedule) and train it on ``data``, each document once,
    ``cfg.batch_size`` documents per step in length buckets (:func:`length_bucketed`).
    Returns the model and a summary (first/last-10-step mean loss, parameter count)."""
    import torch
    import torch.nn.functional as F
    from transformers import Qwen3ForCausalLM

    if len(data) < cfg.steps * cfg.batch_size:
        raise ValueError(f"{name}: {len(data)} documents < steps * batch_size")
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(model_config) if model is None else model
    model.train()
    batches = length_bucketed(data, cfg.batch_size, BUCKET_BATCHES, random.Random(seed))
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in tqdm(range(cfg.steps), desc=f"pretrain {name}", mininterval=5.0):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        ids, labels = collate(batches[step], pad_id)
        # right padding + causal attention: real positions never attend to padding, so no mask
        # is needed and sdpa takes its fast causal path
        hidden = model.model(input_ids=ids).last_hidden_state
        target = labels[:, 1:]
        scored = target != -100
        # the LM head only where there is a loss (response tokens): the same mean cross-entropy
        # as over all positions with ignore_index, ~15% less CPU per step (prompts are ~1/3)
        logits = model.lm_head(hidden[:, :-1][scored])
        loss = F.cross_entropy(logits, target[scored])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info("%s step %d/%d loss %.4f lr %.2e", name, step, cfg.steps, losses[-1],
                     lr_at(step, cfg))
    model.eval()
    summary = {"parameters": n_params, "steps": cfg.steps,
               "loss_first10": sum(losses[:10]) / len(losses[:10]),
               "loss_last10": sum(losses[-10:]) / len(losses[-10:])}
    return model, summary


def generation_config(tokenizer):
    """Greedy by default; stops at ``<|im_end|>`` or ``<|endoftext|>`` as Qwen3-Instruct does."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=False, eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END),
                                       tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id)


def load_model(directory: str | Path):
    """A saved toy model, in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory)).eval()


def save_model(model, tokenizer, directory: str | Path) -> None:
    """HF model dir (config.json, generation_config.json, model.safetensors) with the tokenizer
    files inside, so ``AutoTokenizer.from_pretrained(directory)`` works."""
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
