"""Inference-time knockout and its statistics (``rock knockout``) [Sec. 3, App. D].

Which tokens of the screening pool are *Pillars* (removing them at decode time hurts accuracy),
*Stumbling Blocks* (removing them helps) or *Neutral* (Eq. 22)? Four steps, each a subcommand and a
Snakemake rule (``workflow/rules/knockout.smk``)::

    rock knockout pool    --config config.yaml --candidates C --windows W --tokens T \\
                          --model distill/stage2/model --pool-out knockout/pool.parquet \\
                          --plan-out knockout/plan.json     # + knockout/window_sets.csv
    rock knockout shard   --config config.yaml --plan knockout/plan.json --shard 3 \\
                          --model distill/stage2/model \\
                          --benchmark-files data/math500.jsonl data/ifeval.jsonl \\
                          --out knockout/shards/shard_3.parquet          # one job per shard
    rock knockout gather  --plan knockout/plan.json --shards knockout/shards/*.parquet \\
                          --out knockout/per_problem.parquet
    rock knockout analyze --config config.yaml --pool knockout/pool.parquet \\
                          --plan knockout/plan.json --per-problem knockout/per_problem.parquet \\
                          --out-dir knockout/results

Modules: :mod:`.config` (``knockout`` section), :mod:`.pool` (screening pool, window sets, plan),
:mod:`.specials` (tokens never screened), :mod:`.simulate` (a Zipf corpus with planted
high-divergence segments), :mod:`.runner` (the evaluation seam, shards, gather), :mod:`.stats`
(Delta, paired bootstrap, Eq. 22 with the within-candidate correction, census, multiple testing,
correlations), :mod:`.analysis` (all statistics from the gathered table), :mod:`.figures`
(Figures 4 and 6, Tables 1 and 2), :mod:`.cli` (I/O).
"""

from rock.knockout.cli import add_arguments, run  # noqa: F401  (rock.cli calls rock.knockout.run)
