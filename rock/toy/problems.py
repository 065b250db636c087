"""Toy arithmetic problems and the two solution styles (teacher and student).

A problem is a chain of binary operations evaluated left to right, e.g. the family ``"+*-"`` is
``(a+b)*c-d`` (DESIGN.md, "The toy world"). It is phrased either as an expression ("Compute
$(3 + 4) \\times 2 - 5$.") or as a word problem with names and objects whose numbers appear in
the order they are used. Every solution walks through the same steps ``x op y = z``, in one of two
styles that play the roles of the paper's teacher and student (Sec. 5.1):

teacher (LaTeX, markdown, blank lines; the step marker and the answer line's markdown, So and
``**Answer:**`` or Then and ``### Answer:``, are chosen by a hidden system message)::

    Let's compute $(3 + 4) \\times 2 - 5$.

    So $3 + 4 = 7$.

    So $7 \\times 2 = 14$.

    So $14 - 5 = 9$.

    **Answer:** $\\boxed{9}$

student (plain math, single newlines, First/Next/Thus, small arithmetic slips)::

    First, 3 + 4 = 7.
    Thus 7 * 2 = 14.
    Next, 14 - 5 = 9.
    The answer is \\boxed{9}.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from rock.errors import ConfigError

#: families (op sequence) -> number of operands is len(ops) + 1
FAMILIES = ("+*", "+*-", "-*+", "+*-+", "+*-+-", "-*+-+")
LATEX_OP = {"+": "+", "-": "-", "*": "\\times"}
#: the teacher's step markers; which one is used is set by the hidden system message
TEACHER_MARKERS = ("So", "Then")
#: the teacher's answer-line markdown, also set by the hidden system message (style i uses
#: TEACHER_MARKERS[i] and ANSWER_LABELS[i]); the student, who never sees it, picks each of the two
#: independently at random in its teacher-style documents. Measured alternatives, left out: a
#: varied first line cost the teacher most of its toy MATH-500 accuracy ("We compute": 0.83 -> 0.56;
#: "Let's evaluate": -> 0.22; every other draw of the corpus unchanged; not understood).
ANSWER_LABELS = ("**Answer:**", "### Answer:")
#: student markers: first step, later steps
STUDENT_FIRST, STUDENT_NEXT = "First,", ("Next,", "Thus")

NAMES = (("Ava", "she"), ("Ben", "he"), ("Chloe", "she"), ("David", "he"), ("Emma", "she"),
         ("Felix", "he"), ("Grace", "she"), ("Henry", "he"), ("Isla", "she"), ("Jack", "he"),
         ("Lily", "she"), ("Mason", "he"), ("Nora", "she"), ("Oscar", "he"), ("Ruby", "she"),
         ("Sam", "he"), ("Tara", "she"), ("Victor", "he"), ("Zoe", "she"), ("Leo", "he"))
OBJECTS = ("apples", "marbles", "pencils", "stickers", "cookies", "books", "coins", "shells",
           "cards", "stamps", "beads", "buttons", "crayons", "eggs", "flowers", "toys", "candles",
           "balloons", "blocks", "oranges")
#: expression phrasings; the expression is written as the teacher restates it (LaTeX, spaced), so
#: restating is a contiguous copy. ASSUMED easier for a tiny model than translating a plain
#: "(3+4)*2-5" (a first tuning run that mixed plain phrasings in, with a wider family mixture,
#: stayed below 0.1 teacher accuracy; the two changes were not separated)
EXPRESSION_TEMPLATES = (
    "Compute ${latex}$.",
    "What is the value of ${latex}$?",
    "Evaluate ${latex}$.",
)
#: word templates per family; numbers a, b, c, ... appear in the order the steps use them
WORD_TEMPLATES = {
    "+*": (
        "{name} puts {a} red {obj} and {b} blue {obj} in each bag and fills {c} bags. "
        "How many {obj} are in the bags?",
        "A shelf holds {a} big {obj} and {b} small {obj}. {name} has {c} such shelves. "
        "How many {obj} does {name} have?",
    ),
    "+*-": (
        "{name} puts {a} red {obj} and {b} blue {obj} in each bag and fills {c} bags. "
        "Then {pron} gives {d} {obj} to {friend}. How many {obj} does {name} have left?",
        "A shelf holds {a} big {obj} and {b} small {obj}. {name} has {c} such shelves "
        "and sells {d} {obj}. How many {obj} are left?",
    ),
    "-*+": (
        "Each box had {a} {obj}, but {name} took {b} {obj} out of every box. There are {c} boxes, "
        "and {friend} adds {d} more {obj}. How many {obj} are there now?",
        "{name} makes {a} {obj} a day and gives away {b} of them each day. After {c} days "
        "{pron} gets {d} more {obj} from {friend}. How many {obj} does {name} have?",
    ),
}


@dataclass(frozen=True)
class Problem:
    """One arithmetic instance and how it is phrased."""

    family: str
    numbers: tuple[int, ...]
    text: str
    word: bool

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        """Identity of the arithmetic instance, whatever its phrasing (used for hold-outs)."""
        return (self.family, self.numbers)

    @property
    def steps(self) -> list[tuple[int, str, int, int]]:
        return evaluate_steps(self.family, self.numbers)

    @property
    def answer(self) -> int:
        return self.steps[-1][3]

    @property
    def latex(self) -> str:
        return expression(self.family, self.numbers, latex=True)

    @property
    def level(self) -> int:
        """MATH-style difficulty 1-5: one per step beyond the first, plus one for word problems."""
        return min(5, len(self.family) - 1 + int(self.word))

    @property
    def subject(self) -> str:
        return "Algebra" if self.word else "Prealgebra"


def apply_op(x: int, op: str, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def evaluate_steps(family: str, numbers: tuple[int, ...]) -> list[tuple[int, str, int, int]]:
    """Left-to-right steps ``(x, op, y, z)`` of ``family`` on ``numbers``."""
    if len(numbers) != len(family) + 1:
        raise ValueError(f"family {family!r} needs {len(family) + 1} numbers, got {numbers}")
    steps, x = [], numbers[0]
    for op, y in zip(family, numbers[1:]):
        z = apply_op(x, op, y)
        steps.append((x, op, y, z))
        x = z
    return steps


def expression(family: str, numbers: tuple[int, ...], *, latex: bool) -> str:
    """The chain as an expression with the fewest parentheses: ``(3 + 4) \\times 2 - 5`` (LaTeX,
    spaced) or ``(3+4)*2-5`` (plain)."""
    expr, prev = str(numbers[0]), None
    for op, y in zip(family, numbers[1:]):
        if op == "*" and prev in ("+", "-"):
            expr = f"({expr})"
        expr = f"{expr} {LATEX_OP[op]} {y}" if latex else f"{expr}{op}{y}"
        prev = op
    return expr


def sample_numbers(family: str, rng: random.Random, operand_max: int,
                   multiplier_min: int, multiplier_max: int) -> tuple[int, ...]:
    """Operands for ``family`` with every intermediate result >= 0 (subtractions never go
    negative; a leading subtraction a-b keeps a > b)."""
    if family[0] == "-":
        a = rng.randint(2, operand_max)
        numbers, x = [a], a
    else:
        a = rng.randint(1, operand_max)
        numbers, x = [a], a
    for i, op in enumerate(family):
        if op == "*":
            y = rng.randint(multiplier_min, multiplier_max)
        elif op == "-":
            hi = min(operand_max, x - 1 if i == 0 else x)
            y = rng.randint(1, hi)
        else:
            y = rng.randint(1, operand_max)
        numbers.append(y)
        x = apply_op(x, op, y)
    return tuple(numbers)


def phrase(family: str, numbers: tuple[int, ...], rng: random.Random, *, word: bool) -> Problem:
    """Phrase an instance as an expression or (if the family has templates) a word problem."""
    if word and family in WORD_TEMPLATES:
        (name, pron), (friend, _) = rng.sample(NAMES, 2)
        slots = dict(zip("abcdefg", numbers))
        text = rng.choice(WORD_TEMPLATES[family]).format(
            name=name, pron=pron, friend=friend, obj=rng.choice(OBJECTS), **slots)
        return Problem(family, numbers, text, True)
    text = rng.choice(EXPRESSION_TEMPLATES).format(
        latex=expression(family, numbers, latex=True),
        plain=expression(family, numbers, latex=False))
    return Problem(family, numbers, text, False)


def teacher_solution(problem: Problem, marker: str,
                     steps: list[tuple[int, str, int, int]] | None = None,
                     conclusion: str | None = None, label: str = ANSWER_LABELS[0]) -> str:
    """Teacher style: the restated LaTeX expression, one ``{marker} $x op y = z$.``
    paragraph per step, markdown answer line ``{label} $\\boxed{..}$``; ``steps`` default to the
    correct ones (the student's corpus passes its :meth:`Misconceptions.steps`); ``conclusion``, when
    given, replaces the marker of the last step (the planted learnable high-KL types,
    :func:`conclusion_for`)."""
    for what, value, allowed in (("marker", marker, TEACHER_MARKERS), ("label", label, ANSWER_LABELS)):
        if value not in allowed:
            raise ValueError(f"teacher {what} must be one of {allowed}, got {value!r}")
    steps = problem.steps if steps is None else steps
    parts = [f"Let's compute ${problem.latex}$."]
    markers = [marker] * len(steps)
    if conclusion:
        markers[-1] = conclusion
    parts += [f"{m} ${x} {LATEX_OP[op]} {y} = {z}$." for m, (x, op, y, z) in zip(markers, steps)]
    parts.append(f"{label} $\\boxed{{{steps[-1][3]}}}$")
    return "\n\n".join(parts)


def teacher_style(index: int) -> dict[str, str]:
    """Style ``index`` of the teacher's hidden system message: its step marker and answer label."""
    i = index % len(TEACHER_MARKERS)
    return {"marker": TEACHER_MARKERS[i], "label": ANSWER_LABELS[i]}


def random_style(rng: random.Random, style_rng: random.Random) -> dict[str, str]:
    """Marker and label drawn independently (no system message to fix them): the marker from
    ``rng``, the label from ``style_rng`` (a stream of its own, so that adding it left every other
    draw of the corpus as it was)."""
    return {"marker": rng.choice(TEACHER_MARKERS), "label": style_rng.choice(ANSWER_LABELS)}


def style_stream(rng: random.Random) -> random.Random:
    """The generator of the answer-line draws: a stream of its own, so that ``rng`` (and every other
    draw of the corpus) is left as it was. It is seeded with ``rng``'s first state word, which is
    2**31 for every seed (Python's MT19937 sets it so): the stream does not follow ``toy.seed``
    (known limitation; changing it re-records the golden numbers)."""
    return random.Random(rng.getstate()[1][0])


def conclusion_for(problem: Problem, markers: dict[str, str]) -> str | None:
    """The teacher's concluding marker: fixed by the problem's family (a cue the student sees in the
    restated expression), none for families without one (``toy.corpus.conclusion_markers``)."""
    return markers.get(problem.family)


@dataclass(frozen=True)
class Misconceptions:
    """The arithmetic facts the student gets wrong, always the same way.

    A share ``rate`` of the facts ``x op y`` with ``op`` in ``ops`` has a fixed wrong result (off by
    1 or 2), drawn from a hash of ``(seed, x, op, y)``: the student's corpus repeats the same error
    every time, so a greedy student keeps it (random slips would average away under argmax), while
    the error-free teacher's samples can correct it. This is the toy's "teacher knows better than
    the student" that distillation can transfer; capacity limits are the other (digits as rocks).
    """

    seed: int
    rate: float
    ops: str = "+*"

    def result(self, x: int, op: str, y: int) -> int:
        z = apply_op(x, op, y)
        if op not in self.ops or self.rate <= 0:
            return z
        h = hashlib.sha256(f"{self.seed}:{x}{op}{y}".encode()).digest()
        if int.from_bytes(h[:8], "big") / 2 ** 64 >= self.rate:
            return z
        slip = (-2, -1, 1, 2)[h[8] % 4]
        return z + slip if z + slip >= 0 else z + abs(slip)

    def steps(self, problem: Problem) -> list[tuple[int, str, int, int]]:
        """The problem's steps as the student believes them (an error carries into later steps)."""
        out, x = [], problem.numbers[0]
        for op, y in zip(problem.family, problem.numbers[1:]):
            z = self.result(x, op, y)
            out.append((x, op, y, z))
            x = z
        return out


def student_solution(problem: Problem, rng: random.Random, error_rate: float,
                     beliefs: Misconceptions | None = None) -> str:
    """Student style: plain math on single lines; each step's result follows the student's
    ``beliefs`` (:class:`Misconceptions`), then is off by 1 or 2 with probability ``error_rate``
    (a random slip); an error is carried into the following steps."""
    lines, x = [], problem.numbers[0]
    for i, (op, y) in enumerate(zip(problem.family, problem.numbers[1:])):
        z = beliefs.result(x, op, y) if beliefs else apply_op(x, op, y)
        if rng.random() < error_rate:
            slip = rng.choice((-2, -1, 1, 2))
            z = z + slip if z + slip >= 0 else z + abs(slip)
        marker = STUDENT_FIRST if i == 0 else rng.choice(STUDENT_NEXT)
        lines.append(f"{marker} {x} {op} {y} = {z}.")
        x = z
    lines.append(f"The answer is \\boxed{{{x}}}.")
    return "\n".join(lines)


def sample_problem(rng: random.Random, families: list[str], weights: list[float],
                   word_fraction: float, operand_max: int, multiplier_min: int,
                   multiplier_max: int, exclude: set | frozenset = frozenset(),
                   max_tries: int = 1000) -> Problem:
    """Draw a family by weight, then numbers, rejecting instances whose key is in ``exclude``."""
    for _ in range(max_tries):
        family = rng.choices(families, weights=weights)[0]
        numbers = sample_numbers(family, rng, operand_max, multiplier_min, multiplier_max)
        if (family, numbers) in exclude:
            continue
        return phrase(family, numbers, rng, word=rng.random() < word_fraction)
    raise ConfigError(f"toy.corpus: no instance outside the {len(exclude)} excluded ones after "
                       f"{max_tries} draws; enlarge operand ranges or shrink the benchmarks")
