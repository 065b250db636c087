"""Data stage: the prompt pool slices and the five benchmarks as local jsonl (paper 5.1, 5.2, App. C).

What it writes (paths from :mod:`rock.paths`, rows validated one by one):

* ``{run_dir}/data/prompts_stage1.jsonl`` and ``prompts_stage2.jsonl``: ``{"id", "prompt"}``.
  The pool is OpenThoughts3 [21]: keep rows whose ``domain`` is ``math``, take the first human turn
  of ``conversations`` as the prompt, then cut positions [0, 20k) for stage 1 (20k teacher samples)
  and [20k, 30k) for stage 2 ("positions 20k-30k of the same source", App. C). Positions count
  the domain-filtered rows in dataset order; ``id`` is ``prompt-<position>``. ASSUMED: prompts are
  not deduplicated (the paper and the authors' scripts slice positions). OpenThoughts3 repeats
  questions, so ``prompts_report.json`` beside them counts unique prompts per slice and the
  stage-1/stage-2 overlap (identical prompt text); App. C's "separate 10k-prompt slice" holds
  when the overlap is 0, and a warning gives the counts when it is not.
* ``{run_dir}/data/<benchmark>.jsonl`` in one normalised format per benchmark:
  math500 ``{problem, solution, answer, subject, level, unique_id}``; ifeval ``{key, prompt,
  instruction_id_list, kwargs}`` (lm-eval's IFEval rows); aime24/aime25/hmmt25 ``{id, problem,
  answer}`` with ``answer`` a string.

Sources: at paper scale the hub, through ``datasets.load_dataset(id, split=...)`` (imported lazily;
the prompt pool is streamed and reading stops after the last slice position); at toy scale the
jsonl files of the toy world, ``{run_dir}/world/raw/<name>.jsonl`` (``rock toy build``), written
with the hub's own field names. The field names of each hub dataset are in
:data:`BENCHMARK_FIELDS`: MATH-500 ``problem/solution/answer/subject/level/unique_id``, IFEval
``key/prompt/instruction_id_list/kwargs``, Maxwell-Jia/AIME_2024 ``ID/Problem/Answer``,
math-ai/aime25 ``id/problem/answer``, MathArena/hmmt_feb_2025 ``problem_idx/problem/answer``.

A malformed row stops the stage with a :class:`rock.errors.DataError` naming file, line (the row
number, 1-based, for hub datasets) and field. Run it as::

    rock data prompts --hub open-thoughts/OpenThoughts3-1.2M --split train --streaming \\
        --stage1 0 20000 --stage2 20000 30000 --run-dir results/paper
    rock data benchmark math500 --hub HuggingFaceH4/MATH-500 --split test \\
        --out results/paper/data/math500.jsonl
    rock data all --config tests/config_toy/config.yaml     # everything a config asks for
"""

from rock.data.cli import add_arguments, run  # noqa: F401  (rock.cli calls rock.data.run)
from rock.data.core import *  # noqa: F401,F403  (the stage's library: rock.data.read_jsonl, ...)
from rock.data.core import __all__  # noqa: F401
