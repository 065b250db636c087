"""Toy IFEval: verifiable instructions with REAL lm-eval instruction ids, and responses that follow them.

The benchmark the paper evaluates on is IFEval (Sec. 5.2, [92]), scored by lm-eval's
``lm_eval/tasks/ifeval/instructions.py`` checkers (lm-eval 0.4.13). The toy uses only instruction
ids whose checkers need no NLTK ``punkt_tab`` download (no sentence splitting), so the toy run works
offline. Each instruction's text is exactly what lm-eval's ``build_description(**kwargs)`` returns
for the same kwargs (a test holds this), and rows carry kwargs in the null-filled 24-key layout of
the ``google/IFEval`` dataset.

A prompt is a short writing task ("Write a short note about cats.") followed by one or two
instruction descriptions. :func:`respond` writes a response that follows each instruction it is
asked to follow (the teacher follows all; the student skips some, see ``CorpusConfig``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

#: key order of the kwargs dicts in google/IFEval (HF dataset; every key present, unused = None)
KWARGS_KEYS = (
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat",
    "num_bullets", "section_spliter", "num_sections", "capital_relation", "capital_frequency",
    "keywords", "num_paragraphs", "language", "let_relation", "letter", "let_frequency",
    "end_phrase", "forbidden_words", "keyword", "frequency", "num_sentences", "postscript_marker",
    "first_word", "nth_paragraph",
)
#: lm-eval instruction ids the toy uses (checkers need no punkt_tab)
INSTRUCTION_IDS = (
    "punctuation:no_comma",
    "change_case:english_lowercase",
    "change_case:english_capital",
    "startend:end_checker",
    "startend:quotation",
    "detectable_content:postscript",
    "keywords:existence",
    "keywords:forbidden_words",
    "length_constraints:number_words",
    "detectable_format:title",
    "detectable_format:json_format",
)
#: pairs that cannot both be followed (or that lm-eval's checkers would judge inconsistently)
CONFLICTS = frozenset(frozenset(p) for p in (
    ("change_case:english_lowercase", "change_case:english_capital"),
    ("detectable_format:json_format", "startend:quotation"),
    ("detectable_format:json_format", "detectable_format:title"),
    ("detectable_format:json_format", "detectable_content:postscript"),
    ("detectable_format:json_format", "startend:end_checker"),
    ("detectable_format:json_format", "punctuation:no_comma"),
    ("startend:quotation", "startend:end_checker"),
    ("startend:quotation", "detectable_content:postscript"),
    ("keywords:existence", "keywords:forbidden_words"),
))
# values lm-eval draws from (instructions.py: _ENDING_OPTIONS, _POSTSCRIPT_MARKER, _COMPARISON_RELATION)
END_PHRASES = ("Any other questions?", "Is there anything else I can help with?")
POSTSCRIPT_MARKERS = ("P.S.", "P.P.S")
RELATIONS = ("less than", "at least")
#: word limits: "less than N" with N in LESS_THAN, "at least N" with N in AT_LEAST (ASSUMED: sized
#: so that one to six toy sentences can satisfy them)
LESS_THAN = (12, 30)
AT_LEAST = (25, 50)

TOPICS = ("cats", "trains", "rivers", "gardens", "books", "stars", "bridges", "clouds", "bicycles",
          "forests", "oceans", "mountains", "birds", "kites", "lamps", "maps", "boats", "songs")
ADJECTIVES = ("bright", "quiet", "useful", "simple", "lovely", "strong", "calm", "gentle", "old",
              "warm", "small", "busy", "clever")
KEYWORDS = ("river", "light", "music", "friend", "window", "summer", "color", "story", "garden",
            "winter", "paper", "silver")
PLACES = ("school", "the park", "the city", "the village", "their notebooks")
TASKS = ("Write a short note about {t}.", "Tell me about {t}.", "Describe {t}.",
         "Write a few sentences about {t}.")
SENTENCES = (
    "{T} are {adj} and {adj2}.",
    "Many people like {t} because they are {adj}.",
    "In the morning, {t} look {adj}.",
    "I think {t} are {adj}, and they make me happy.",
    "Children often draw {t} in {place}.",
    "A day with {t} is a {adj} day.",
    "People have loved {t} for a long time.",
    "Some {t} are {adj}, some are {adj2}, and all of them are nice.",
)


@dataclass(frozen=True)
class Instruction:
    """One verifiable instruction: lm-eval id and the kwargs its ``build_description`` takes."""

    id: str
    kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def kw(self) -> dict:
        """The kwargs as lm-eval takes them (keyword lists as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs}

    def description(self) -> str:
        """The text lm-eval's ``build_description(**kwargs)`` returns for this instruction."""
        kw = self.kw
        return {
            "punctuation:no_comma": "In your entire response, refrain from the use of any commas.",
            "change_case:english_lowercase": "Your entire response should be in English, and in all "
            "lowercase letters. No capital letters are allowed.",
            "change_case:english_capital": "Your entire response should be in English, and in all "
            "capital letters.",
            "startend:end_checker": "Finish your response with this exact phrase {ender}. No other "
            "words should follow this phrase.".format(ender=kw.get("end_phrase")),
            "startend:quotation": "Wrap your entire response with double quotation marks.",
            "detectable_content:postscript": "At the end of your response, please explicitly add a "
            "postscript starting with {postscript}".format(postscript=kw.get("postscript_marker")),
            "keywords:existence": "Include keywords {keywords} in the response.".format(
                keywords=kw.get("keywords")),
            "keywords:forbidden_words": "Do not include keywords {forbidden_words} in the "
            "response.".format(forbidden_words=kw.get("forbidden_words")),
            "length_constraints:number_words": "Answer with {relation} {num_words} words.".format(
                relation=kw.get("relation"), num_words=kw.get("num_words")),
            "detectable_format:title": "Your answer must contain a title, wrapped in double angular "
            "brackets, such as <<poem of joy>>.",
            "detectable_format:json_format": "Entire output should be wrapped in JSON format. You "
            "can use markdown ticks such as ```.",
        }[self.id]

    def row_kwargs(self) -> dict:
        """The google/IFEval kwargs dict: all 24 keys, unused ones None."""
        row = dict.fromkeys(KWARGS_KEYS)
        row.update(self.kw)
        return row


@dataclass(frozen=True)
class InstructionPrompt:
    topic: str
    task: str
    instructions: tuple[Instruction, ...]

    @property
    def text(self) -> str:
        return " ".join([self.task] + [ins.description() for ins in self.instructions])


def sample_instruction(rng: random.Random, instruction_id: str) -> Instruction:
    """Draw the kwargs of one instruction as lm-eval would (lists sorted like its
    ``build_description``)."""
    if instruction_id == "startend:end_checker":
        kw = {"end_phrase": rng.choice(END_PHRASES)}
    elif instruction_id == "detectable_content:postscript":
        kw = {"postscript_marker": rng.choice(POSTSCRIPT_MARKERS)}
    elif instruction_id == "keywords:existence":
        kw = {"keywords": sorted(rng.sample(KEYWORDS, 2))}
    elif instruction_id == "keywords:forbidden_words":
        kw = {"forbidden_words": sorted(rng.sample(ADJECTIVES, 2))}
    elif instruction_id == "length_constraints:number_words":
        relation = rng.choice(RELATIONS)
        lo, hi = LESS_THAN if relation == "less than" else AT_LEAST
        kw = {"num_words": rng.randint(lo, hi), "relation": relation}
    else:
        kw = {}
    return Instruction(instruction_id, tuple((k, tuple(v) if isinstance(v, list) else v)
                                             for k, v in kw.items()))


def sample_prompt(rng: random.Random, max_instructions: int = 2) -> InstructionPrompt:
    """A writing task plus 1..max_instructions compatible instructions."""
    topic = rng.choice(TOPICS)
    n = rng.randint(1, max_instructions)
    ids: list[str] = []
    while len(ids) < n:
        cand = rng.choice(INSTRUCTION_IDS)
        if cand not in ids and all(frozenset((cand, i)) not in CONFLICTS for i in ids):
            ids.append(cand)
    return InstructionPrompt(topic, rng.choice(TASKS).format(t=topic),
                             tuple(sample_instruction(rng, i) for i in ids))


def count_words(text: str) -> int:
    """Words as lm-eval counts them (``nltk.tokenize.RegexpTokenizer(r"\\w+")``)."""
    return len(re.findall(r"\w+", text))


def _sentences(rng: random.Random, topic: str, n: int, banned: set[str]) -> list[str]:
    adjectives = [a for a in ADJECTIVES if a not in banned]
    out = []
    for template in rng.sample(SENTENCES, n):
        adj, adj2 = rng.sample(adjectives, 2)
        out.append(template.format(T=topic.capitalize(), t=topic, adj=adj, adj2=adj2,
                                   place=rng.choice(PLACES)))
    return out


def _render(prompt: InstructionPrompt, body: list[str], follow: set[str], rng_extra: dict) -> str:
    """Apply the followed instructions to the body sentences in a fixed order: content, title,
    postscript, end phrase, JSON/quotes, case, commas."""
    kw = {ins.id: ins.kw for ins in prompt.instructions}
    sentences = list(body)
    if "keywords:existence" in follow:
        k1, k2 = kw["keywords:existence"]["keywords"]
        sentences.insert(1, f"They remind me of the {k1} and the {k2}.")
    text = " ".join(sentences)
    if "detectable_format:title" in follow:
        text = f"<<{rng_extra['title']}>>\n\n{text}"
    if "detectable_content:postscript" in follow:
        marker = kw["detectable_content:postscript"]["postscript_marker"]
        text = f"{text}\n\n{marker} {rng_extra['ps']}"
    if "startend:end_checker" in follow:
        text = f"{text}\n\n{kw['startend:end_checker']['end_phrase']}"
    if "detectable_format:json_format" in follow:
        text = json.dumps({"note": text})
    if "startend:quotation" in follow:
        text = f'"{text}"'
    if "change_case:english_lowercase" in follow:
        text = text.lower()
    if "change_case:english_capital" in follow:
        text = text.upper()
    if "punctuation:no_comma" in follow:
        text = text.replace(",", "")
    return text


def respond(prompt: InstructionPrompt, rng: random.Random, compliance: float = 1.0) -> str:
    """A response to ``prompt`` that follows each instruction with probability ``compliance``.

    The number of sentences is the smallest (for "at least") or largest (for "less than", shortest
    sentences first) that meets a followed word limit, otherwise 2-3.
    """
    follow = {ins.id for ins in prompt.instructions if rng.random() < compliance}
    kw = {ins.id: ins.kw for ins in prompt.instructions}
    banned = set(kw["keywords:forbidden_words"]["forbidden_words"]) \
        if "keywords:forbidden_words" in follow else set()
    extra = {"title": rng.choice((f"about {prompt.topic}", f"a note on {prompt.topic}",
                                  f"{prompt.topic} today")),
             "ps": rng.choice((f"I hope you like {prompt.topic}.", "Thank you for reading.",
                               f"Write to me about {prompt.topic} soon."))}
    pool = _sentences(rng, prompt.topic, len(SENTENCES), banned)
    limit = kw.get("length_constraints:number_words") \
        if "length_constraints:number_words" in follow else None
    if limit is None:
        return _render(prompt, pool[:rng.randint(2, 3)], follow, extra)
    if limit["relation"] == "less than":   # shortest sentences (and postscript) first
        pool.sort(key=count_words)
        extra["ps"] = "Thank you for reading."
    texts = [_render(prompt, pool[:n], follow, extra) for n in range(1, len(pool) + 1)]
    if limit["relation"] == "less than":
        fitting = [t for t in texts if count_words(t) < limit["num_words"]]
        return fitting[-1] if fitting else texts[0]
    fitting = [t for t in texts if count_words(t) >= limit["num_words"]]
    return fitting[0] if fitting else texts[-1]
