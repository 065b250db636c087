"""A tiny random Qwen3 with a ChatML byte-level BPE tokenizer, built in about a second on CPU.

Used by the evaluation tests and ``benchmarks/bench_suppression.py`` when the toy world
(``rock toy build``) has not been built: it exercises the real lm-eval HF path (``HFLM``,
``generate``, chat template) without any download. Its weights are random, so its answers are
noise; tests use it for mechanics (suppression, seeds, tables), never for accuracy.

    build_tiny_model("/tmp/tiny", seed=0)   # -> HF dir loadable with AutoModelForCausalLM
"""

from __future__ import annotations

import random
from pathlib import Path

#: ChatML as in Qwen3 (enable_thinking accepted and ignored)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus(rng: random.Random, n: int = 400) -> list[str]:
    words = ["Question", "Answer", "So", "Then", "Thus", "First", "Next", "compute", "the", "answer",
             "is", "Let's", "write", "a", "line", "without", "commas", "in", "lowercase", "title"]
    lines = []
    for _ in range(n):
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 5)
        lines.append(f"Question: What is $({a}+{b})*{c}$?\nAnswer: {rng.choice(words)} "
                     f"$\\boxed{{{(a + b) * c}}}$. " + " ".join(rng.choices(words, k=6)))
    return lines


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, vocab_size: int = 320, hidden: int = 32,
                     layers: int = 2, init_std: float = 0.5) -> Path:
    """Write tokenizer + random ``Qwen3ForCausalLM`` to ``out_dir``; returns the directory.

    ``init_std`` is large (HF default 0.02) so that next-token distributions are peaked rather than
    uniform: greedy and sampled outputs then differ in ways a test can see.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(rng), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                     additional_special_tokens=["<|im_start|>"])
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=len(hf_tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=hidden // 2, max_position_embeddings=512, tie_word_embeddings=True,
                      initializer_range=init_std, eos_token_id=hf_tok.eos_token_id,
                      pad_token_id=hf_tok.pad_token_id, bos_token_id=None)
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    model.save_pretrained(out)
    return out
