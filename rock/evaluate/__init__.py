"""``rock evaluate``: lm-eval evaluation with token suppression and Pass@1 over runs [5.2, D.3].

Evaluates one model (hub id or local HF directory) on benchmarks (MATH-500, IFEval, AIME24, AIME25,
HMMT25-Feb) through lm-evaluation-harness 0.4.13, ``n_runs`` times with distinct seeds, optionally
under several token-suppression sets (the knockout of Section 3.2 / Appendix D.3), loading the
model and building the tasks once. Writes a tidy per-problem parquet table and a summary json
(Pass@1 per run, mean, std, provenance).

    rock evaluate --config tests/config_toy/config.yaml --model results/toy/world/student \\
        --model-name student --benchmark math500 \\
        --table results/toy/eval/student/math500/per_problem.parquet \\
        --summary results/toy/eval/student/math500/summary.json
    rock evaluate ... --suppress-sets sets.json   # {"none": [], "rock_17": [1723], ...}
    rock evaluate ... --benchmark math500 --benchmark ifeval \\
        --table 'results/toy/eval/student/{bench}/per_problem.parquet' \\
        --summary 'results/toy/eval/student/{bench}/summary.json'    # one file pair per benchmark

Modules: :mod:`.config` (settings), :mod:`.benchmarks` (task YAMLs in ``tasks/``),
:mod:`.models` (lm-eval HF/vLLM models with suppression and seeds), :mod:`.runner` (evaluations,
table, summary), :mod:`.verify` (math-verify off the main thread), :mod:`.ifeval` (offline IFEval).
:mod:`.cli` (the command: arguments, ``run``; import-light, heavy imports happen inside ``run``).
"""

from rock.evaluate.cli import add_arguments, run, split_outputs  # noqa: F401  (rock.cli calls rock.evaluate.run)
