"""Tokens that never enter the knockout's screening pool or a window set [Sec. 3, Eq. 20-21].

Suppressing a stop token (``<|im_end|>``, ``<|endoftext|>``) forces every answer to the length limit
and "breaks" reasoning by construction; chat-template tokens (``<|im_start|>``) are not part of an
answer at all. Neither says anything about whether a token carries reasoning, so they are removed
from detection's screened types (:func:`rock.knockout.pool.screening_pool`).

:func:`excluded_ids` takes them from the model's own files, nothing is listed by hand:

* the tokenizer's special tokens (``all_special_ids``: eos, bos, pad, unk and additional special
  tokens), its ``eos_token_id`` / ``pad_token_id``;
* the stop ids of the model's ``generation_config`` and ``config`` (``eos_token_id`` may be a list:
  Qwen3 stops at ``<|im_end|>`` and ``<|endoftext|>``), as :func:`rock.distill.sampling.stop_token_ids`;
* every added token whose text appears in the chat template (``<|im_start|>``, ``<think>``,
  ``<tool_call>``, ... where the template writes them).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _ids(value) -> list[int]:
    values = value if isinstance(value, (list, tuple, set)) else [value]
    return [int(v) for v in values if v is not None]


def excluded_ids(tokenizer, generation_config=None, model_config=None) -> dict[int, str]:
    """Token id -> why it is excluded (module docstring). Pure over the three objects' attributes;
    raises :class:`rock.errors.ModelError` when nothing names a stop token."""
    out: dict[int, str] = {}

    def add(ids, why):
        for i in _ids(ids):
            out.setdefault(i, why)

    from rock.distill.sampling import stop_token_ids

    add(stop_token_ids(tokenizer, model_config, generation_config), "stop token (eos_token_id)")
    for source in (tokenizer, generation_config, model_config):
        add(getattr(source, "pad_token_id", None) if source is not None else None, "pad token")
    add(getattr(tokenizer, "all_special_ids", None) or [], "special token (tokenizer)")
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):                      # named templates
        template = "\n".join(map(str, template.values()))
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for i, tok in added.items():
        content = getattr(tok, "content", str(tok))
        if content and content in template:
            add(i, "chat-template token")
    return out


def load_excluded_ids(model: str) -> tuple[dict[int, str], object]:
    """:func:`excluded_ids` of a model directory or hub id (tokenizer, generation config and
    config; no weights). Returns ``(excluded, tokenizer)``."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model)
    try:
        generation_config = GenerationConfig.from_pretrained(model)
    except OSError:                                     # a tokenizer-only directory has none
        generation_config = None
    try:
        model_config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        model_config = None
    out = excluded_ids(tokenizer, generation_config, model_config)
    log.info("%s: %d token ids excluded from the knockout: %s", model, len(out),
             {i: tokenizer.convert_ids_to_tokens(i) for i in sorted(out)})
    return out, tokenizer
