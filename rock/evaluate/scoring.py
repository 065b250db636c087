"""Functions the task YAMLs in ``rock/evaluate/tasks/`` name with ``!function`` (paper Section 5.2).

- :func:`process_math_docs` maps the rows of every math benchmark, in any of its source formats,
  onto ``{problem_id, problem, answer}``: the hub's MATH-500 (``problem, answer, unique_id``),
  Maxwell-Jia/AIME_2024 (``ID, Problem, Answer``), math-ai/aime25 (``id, problem, answer``),
  MathArena/hmmt_feb_2025 (``problem_idx, problem, answer``) and the local jsonl rows written by
  ``rock data`` (``{id, problem, answer}`` or MATH-500's columns). Field names match
  case-insensitively; answers become strings.
- :func:`process_math_results` scores one response with math-verify through
  :func:`rock.evaluate.verify.shared_verifier` (a worker process; safe from any thread).

IFEval uses lm-eval's own ``lm_eval.tasks.ifeval.utils.process_results`` unchanged.
"""

from __future__ import annotations

from rock.errors import DataError

#: candidate id columns, in order of preference; the row index is the fallback
ID_FIELDS = ("unique_id", "problem_id", "id", "problem_idx")


def normalise_math_row(row: dict, idx: int) -> dict:
    """One benchmark row -> ``{"problem_id": str, "problem": str, "answer": str}``."""
    lower = {str(k).lower(): k for k in row}
    for need in ("problem", "answer"):
        if need not in lower:
            raise DataError(f"math benchmark row {idx} has no '{need}' field (fields: {sorted(row)})",
                            field=need, fix="give each row 'problem' and 'answer' (any letter case)")
    pid = next((row[lower[k]] for k in ID_FIELDS if k in lower and row[lower[k]] is not None), idx)
    answer = row[lower["answer"]]
    if answer is None or str(answer).strip() == "":
        raise DataError(f"math benchmark row {idx} (id {pid}) has an empty answer", field="answer",
                        fix="every row needs a gold answer string")
    return {"problem_id": str(pid), "problem": str(row[lower["problem"]]), "answer": str(answer).strip()}


def process_math_docs(dataset):
    """lm-eval ``process_docs``: normalise a ``datasets.Dataset`` of math problems."""
    return dataset.map(normalise_math_row, with_indices=True, remove_columns=dataset.column_names)


def process_math_results(doc: dict, results: list[str]) -> dict[str, int]:
    """lm-eval ``process_results``: ``{"math_verify": 1}`` if the response's answer equals the gold."""
    from rock.evaluate.verify import shared_verifier

    return {"math_verify": int(shared_verifier()(doc["answer"], results[0]))}
