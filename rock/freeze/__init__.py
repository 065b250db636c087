"""``rock freeze``: freeze-training regimes, Pass@1 during training, Figure 5 [Sec. 4, 5.2].

Each regime (config ``freeze.regimes``) is one stage-2 on-policy KD run from the stage-1 model with
the same seeds, differing only in the per-token weights of Eq. 19 that :class:`FreezeWeights`
hands to the stage-2 engine (:func:`rock.distill.stage2.run_stage2`): Baseline OPD (lambda = 1),
Rock-Freeze (lambda on R and W_R), the frequency- and length-matched random window freeze, and
soft lambdas. The engine keeps the checkpoints the workflow evaluates (:mod:`rock.freeze.plan`);
``rock evaluate`` scores each on AIME24/AIME25/HMMT25; ``rock freeze report`` draws Figure 5 and
writes the regime table, the wall-clock comparison and the W_R vs W_S two-sample tests.

    rock freeze steps  --config tests/config_toy/config.yaml
    rock freeze train  --config tests/config_toy/config.yaml --regime rock_freeze --threads 2
    rock freeze report --config tests/config_toy/config.yaml

Modules: :mod:`.masks` (Eq. 18-19 weights, pure), :mod:`.control` (matched random windows and the
two-sample tests), :mod:`.weights` (the engine hook), :mod:`.config` (regimes as data),
:mod:`.plan` (steps and evaluated checkpoints), :mod:`.train` (one regime through the stage-2
engine, per-step counts), :mod:`.report` (Figure 5, tables, wall-clock; pure) and
:mod:`.runreport` (reads the runs, writes the results).
"""

from rock.freeze.cli import add_arguments, run  # noqa: F401  (rock.cli calls rock.freeze.run)
