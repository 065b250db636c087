"""The toy world's own check: greedy accuracy of teacher and student on toy MATH-500.

Each problem is rendered with the chat template (``enable_thinking=False``); the teacher's input
starts with a hidden system message drawn per problem with ``random.Random(seed).choice`` (the
contract for ``models.teacher_system_prompts``), the student's has none. Decoding is greedy, batched,
left-padded; the answer is the content of the last ``\\boxed{...}`` and is compared as an integer
(toy answers are integers). The build requires the teacher to be clearly better than the student,
as the paper's teacher is (Sec. 5.1).
"""

from __future__ import annotations

import logging
import random

log = logging.getLogger(__name__)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def is_correct(response: str, answer: str | int) -> bool:
    """Exact integer match of the last boxed answer (``$``, spaces and a trailing ``.`` ignored)."""
    boxed = last_boxed(response)
    if boxed is None:
        return False
    boxed = boxed.strip().strip("$").strip().rstrip(".")
    try:
        return int(boxed) == int(str(answer).strip())
    except ValueError:
        return False


def chat_prompts(problems: list[str], tokenizer, system_prompts: list[str] | None,
                 seed: int) -> list[str]:
    """Chat-template prompts; with ``system_prompts`` each gets a system message drawn by
    ``random.Random(seed).choice`` in order."""
    rng = random.Random(seed)
    out = []
    for problem in problems:
        messages = [{"role": "user", "content": problem}]
        if system_prompts:
            messages.insert(0, {"role": "system", "content": rng.choice(system_prompts)})
        out.append(tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True,
                                                 enable_thinking=False))
    return out


def greedy_generate(model, tokenizer, prompts: list[str], max_new_tokens: int,
                    batch_size: int) -> list[str]:
    """Greedy continuations (special tokens removed), left-padded batches."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            with torch.no_grad():
                # greedy: the saved generation_config has do_sample=False and the eos ids
                gen = model.generate(**enc, max_new_tokens=max_new_tokens)
            out += tokenizer.batch_decode(gen[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out


def accuracy(model, tokenizer, problems: list[str], answers: list, *, system_prompts=None,
             seed: int = 0, max_new_tokens: int = 160, batch_size: int = 50) -> tuple[float, list[str]]:
    """Greedy accuracy on ``problems``; returns (accuracy, responses)."""
    prompts = chat_prompts(problems, tokenizer, system_prompts, seed)
    responses = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    correct = [is_correct(r, a) for r, a in zip(responses, answers)]
    return sum(correct) / len(correct), responses
