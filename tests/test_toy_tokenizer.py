"""Toy tokenizer: special tokens, one token per digit, ChatML template, round trips, HF loading."""

from __future__ import annotations

import random

import pytest

from rock.toy import corpus, tokenizer as toytok
from rock.toy.config import ToyConfig

SYSTEM = ["style: so", "style: then"]


@pytest.fixture(scope="module")
def docs():
    cfg = ToyConfig().corpus
    return (corpus.teacher_documents(1500, random.Random(0), cfg, SYSTEM, corpus.Holdout())
            + corpus.student_documents(1500, random.Random(1), cfg, corpus.Holdout()))


@pytest.fixture(scope="module")
def tok(docs, tmp_path_factory):
    """Trained, saved and reloaded with AutoTokenizer, as downstream stages load it."""
    from transformers import AutoTokenizer

    trained = toytok.train_tokenizer(list(toytok.training_texts(docs)), 700, 2)
    path = tmp_path_factory.mktemp("tok")
    toytok.save_tokenizer(trained, path)
    return AutoTokenizer.from_pretrained(str(path))


def test_size_and_special_tokens(tok):
    assert len(tok) == 700
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>",
                                                      "<|im_end|>", "<think>", "</think>")}
    assert sorted(ids.values()) == list(range(695, 700))     # appended after the merges, as Qwen3
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.bos_token is None
    for t, i in ids.items():
        assert tok.encode(t, add_special_tokens=False) == [i]
    assert tok.decode([ids["<|im_end|>"], ids["<think>"]], skip_special_tokens=True) == "<think>"


def test_one_token_per_digit(tok):
    ids = tok.encode("12345 + 67 = 98", add_special_tokens=False)
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if p.strip().isdigit()] == list("12345") + list("67") + list("98")
    assert all(len(p.strip()) <= 1 for p in pieces if any(c.isdigit() for c in p))


def test_round_trip(tok, docs):
    for d in docs[:300]:
        for text in (d.user, d.assistant):
            assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    odd = "Ünïcode ✓ — \t tabs\n\n\nand $\\frac{1}{2}$ **bold** <<title>> {\"a\": 1}"
    assert tok.decode(tok.encode(odd, add_special_tokens=False)) == odd


def test_chat_template_renders_chatml(tok):
    msgs = [{"role": "system", "content": "style: so"}, {"role": "user", "content": "Compute $1 + 2$."}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nstyle: so<|im_end|>\n"
                    "<|im_start|>user\nCompute $1 + 2$.<|im_end|>\n<|im_start|>assistant\n")
    # enable_thinking=False is accepted and, as for Qwen3-*-Instruct-2507, changes nothing
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                   enable_thinking=False) == text
    no_gen = tok.apply_chat_template(msgs[1:], tokenize=False)
    assert no_gen == "<|im_start|>user\nCompute $1 + 2$.<|im_end|>\n"
    full = msgs + [{"role": "assistant", "content": "So $1 + 2 = 3$."}]
    assert tok.apply_chat_template(full, tokenize=False).endswith(
        "<|im_start|>assistant\nSo $1 + 2 = 3$.<|im_end|>\n")


def test_python_mirror_equals_the_template(tok, docs):
    for d in docs[:200]:
        msgs = d.prompt_messages()
        assert toytok.render_chat(msgs, True) == tok.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True)
        full = msgs + [{"role": "assistant", "content": d.assistant}]
        assert toytok.render_chat(full, False) == tok.apply_chat_template(full, tokenize=False)


def test_prompt_and_response_tokenize_independently(tok, docs):
    """Pretraining and downstream scoring concatenate prompt ids and response ids: that must be
    the tokenization of the concatenated text."""
    for d in docs[:300]:
        prompt = toytok.render_chat(d.prompt_messages(), True)
        response = d.assistant + "<|im_end|>"
        joint = tok.encode(prompt + response, add_special_tokens=False)
        assert joint == (tok.encode(prompt, add_special_tokens=False)
                         + tok.encode(response, add_special_tokens=False))


def test_training_is_deterministic(docs):
    texts = list(toytok.training_texts(docs[:800]))
    a = toytok.train_tokenizer(texts, 600, 2).backend_tokenizer.to_str()
    b = toytok.train_tokenizer(texts, 600, 2).backend_tokenizer.to_str()
    assert a == b
