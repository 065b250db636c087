"""Stage 10: expected tables, the claim-by-claim check and the report [DESIGN.md; the whole paper].

Subcommands (``rock report <cmd> --help`` for all options)::

    # compare a run with the expected tables of the paper and of the toy (golden numbers)
    rock report check --expected results/expected/paper results/expected/toy \\
        --run-dir results/toy --config tests/config_toy/config.yaml \\
        --out results/toy/report/claims_check.csv

    # the one-page report (HTML + markdown) with Figures 2-6, Tables 1-2, check and provenance
    rock report render --run-dir results/toy --check results/toy/report/claims_check.csv \\
        --config tests/config_toy/config.yaml --out results/toy/report/report.html \\
        --screenshot results/toy/report/report.png

    # record the toy run's current numbers as golden values (new rows only; --update re-values)
    rock report golden --from results/toy --out results/expected/toy/golden.csv

    # the summary fields each stage is expected to write, and every metric key
    rock report contract

Modules: :mod:`~rock.report.bands` (agreement bands), :mod:`~rock.report.expected` (tables),
:mod:`~rock.report.extract` (metric registry), :mod:`~rock.report.check`, :mod:`~rock.report.golden`,
:mod:`~rock.report.provenance`, :mod:`~rock.report.render`, :mod:`~rock.report.browser`.

Exit status of ``check``: 0 when no golden row disagrees (claims are reported, never fatal),
1 on a toy regression (unless ``--no-fail``), 2 on bad input (a :class:`rock.errors.RockError`).
"""

from rock.report.cli import add_arguments, run  # noqa: F401  (rock.cli calls rock.report.run)
