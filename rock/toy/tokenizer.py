"""The toy tokenizer: a byte-level BPE trained on the toy corpus, in Hugging Face format.

Modelled on the Qwen3 tokenizer the paper's models use (Sec. 5.1): the same pre-tokenizer regex
(one token per digit, ``\\p{N}``), byte-level alphabet, NFC normalizer, special tokens
``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos) appended after the merges, and
``<think>``/``</think>`` as added non-special tokens. The chat template is ChatML as in
Qwen3-*-Instruct-2507: system/user/assistant turns, ``add_generation_prompt``; like those
non-thinking models it accepts ``enable_thinking`` (``False`` is what the pipeline passes) and renders
no think block either way.

The result loads with ``AutoTokenizer.from_pretrained(dir)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from rock.toy.corpus import Document

log = logging.getLogger(__name__)

EOT, IM_START, IM_END, THINK, END_THINK = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
SPECIAL_TOKENS = (EOT, IM_START, IM_END)
#: Qwen2/Qwen3 pre-tokenizer split (tokenizer.json of Qwen/Qwen3-*): \p{N} alone = one token per digit
QWEN_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or message.role == 'assistant' "
    "or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """Python mirror of :data:`CHAT_TEMPLATE` (fast path for pretraining; a test keeps them equal)."""
    out = [f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages]
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


def training_texts(docs: Iterable[Document]) -> Iterable[str]:
    """Rendered chats with the special-token strings removed (they are added after training)."""
    for doc in docs:
        text = render_chat(doc.prompt_messages() + [{"role": "assistant", "content": doc.assistant}],
                           add_generation_prompt=False)
        for tok in SPECIAL_TOKENS:
            text = text.replace(tok, "")
        yield text


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int):
    """Train the byte-level BPE; returns a ``transformers.PreTrainedTokenizerFast``.

    ``vocab_size`` counts the 256 byte tokens, the merges and the 5 added tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS) - 2, min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK, END_THINK)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=EOT, bos_token=None, unk_token=None,
        chat_template=CHAT_TEMPLATE, model_max_length=4096, clean_up_tokenization_spaces=False)
    log.info("tokenizer: %d tokens (%d requested) from %d texts", len(fast), vocab_size, len(texts))
    return fast


def save_tokenizer(tokenizer, directory: str | Path) -> None:
    """``save_pretrained`` (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    tokenizer.save_pretrained(str(directory))
