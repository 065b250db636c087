"""Tiny teacher/student pair for the distillation tests (no test functions here).

A byte-level BPE tokenizer with a ChatML template trained in a second on a few arithmetic lines,
and two random ``Qwen3ForCausalLM`` models (teacher 2 layers, student 1 layer) that share it. The
student's output layer is padded by a few rows past the tokenizer, as Qwen3 checkpoints are, so
that the shared-vocabulary truncation is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: scale of the random embeddings (tied to the output layer): sharper than a fresh init so that
#: teacher and student disagree measurably, not so sharp that sampling collapses to one token
MULT = 10.0
CORPUS = [f"Let's compute ({a}+{b})*{c}. So {a}+{b} = {a + b}. Then {a + b}*{c} = {(a + b) * c}."
          for a in range(1, 6) for b in range(1, 6) for c in range(2, 4)]


def make_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None)
    fast.chat_template = CHATML
    fast.save_pretrained(out_dir)
    return fast


def make_model(out_dir: Path, tokenizer, *, layers: int, hidden: int, seed: int, pad_rows: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=len(tokenizer) + pad_rows, hidden_size=hidden,
                      intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=hidden // 2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = Qwen3ForCausalLM(cfg)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(MULT)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model


def build_pair(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(root / "tokenizer")
    make_model(root / "teacher", tok, layers=2, hidden=32, seed=1)
    make_model(root / "student", tok, layers=1, hidden=16, seed=2, pad_rows=4)
    prompts = root / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i in range(12):
            fh.write(json.dumps({"id": f"p{i}", "prompt": f"Compute ({i % 5 + 1}+{i % 3 + 2})*{i % 2 + 2}."}) + "\n")
    return {"root": root, "tokenizer": root / "tokenizer", "teacher": root / "teacher",
            "student": root / "student", "prompts": prompts}


def train_briefly(model_dir: Path, out_dir: Path, *, steps: int = 150, seed: int = 0) -> Path:
    """A copy of ``model_dir`` trained for a few seconds on chat-formatted answers of two lengths
    (``c == 2``: one sentence; ``c == 3``: two), so that greedy decoding gives prompt-dependent
    answers that end with the stop token at different steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rock.distill.sampling import chat_prompt_ids

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = []
    for a in range(1, 6):
        for b in range(1, 6):
            for c in (2, 3):
                ans = f"So {a}+{b} = {a + b}." + (f" Then {a + b}*{c} = {(a + b) * c}." if c == 3 else "")
                rows.append(chat_prompt_ids(tok, f"Compute ({a}+{b})*{c}.")
                            + tok(ans, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = [rows[i] for i in torch.randint(0, len(rows), (16,), generator=g)]
        width = max(map(len, batch))
        ids = torch.full((16, width), tok.pad_token_id)
        labels = torch.full((16, width), -100)
        for i, r in enumerate(batch):
            ids[i, :len(r)] = labels[i, :len(r)] = torch.tensor(r)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    torch.set_num_threads(1)
    return build_pair(tmp_path_factory.mktemp("tiny_pair"))


@pytest.fixture(scope="session")
def trained_teacher(tiny_pair):
    """The tiny teacher after ~3 s of training (sane, stopping answers)."""
    torch.set_num_threads(1)
    return train_briefly(tiny_pair["teacher"], tiny_pair["root"] / "teacher_trained")
