"""Gradient geometry and persistence of Rock Tokens [Sec. 2.6, Figure 3].

    rock geometry gradients --config config.yaml     # per-type mean gradients, G_balanced (models)
    rock geometry analyze   --config config.yaml     # tests, persistence, Figure 3 (tables only)

Per-position gradient. The reverse KL at one position, ``KL(p_s || p_T)`` with ``p_s = softmax(z)``,
has the logit-space gradient (the authors' form, reference/README.md)::

    g = p_s * (A - E_{p_s}[A]),   A = log p_s - log p_T + 1

The ``+ 1`` cancels (``E_{p_s}[A + c] = E_{p_s}[A] + c``), so ``g = p_s * (log p_s - log p_T - KL)``;
a test checks it against autograd.

Per-type means and the balanced direction. For a token type ``t`` with ``n_t`` occurrences,
``g_bar_t = (1 / n_t) sum_i g_i`` and ``G_balanced = sum_t g_bar_t`` over every observed type
(Eq. 16), i.e. ``G_balanced = sum_i g_i / n_{type(i)}``. The counts ``n_t`` come from the token table
(a counting pass), so one streaming pass over the positions accumulates ``G_balanced`` (one
V-vector) and the sums of the group members' gradients (one V-vector per member type): memory
``O(V x (members + 1))``, independent of the number of positions (:class:`GradientAccumulator`).
Then per member type: ``||g_bar_t||``, ``cos(g_bar_t, G_balanced)`` and
``contrib(t) = n_t ||g_bar_t|| cos(g_bar_t, G_balanced)`` (Eq. 16).

Groups (config ``geometry.groups``; the authors' definitions, reference/README.md): ``rock`` = the
detection's Rock set; ``high_kl`` = the top ``n`` types by mean KL with freq >= ``min_freq``, rocks
excluded; ``random`` = ``n`` types drawn with ``seed`` from the observed types with freq >=
``min_freq`` outside the other two groups (ASSUMED pool: the authors' pool is not stated).
Mann-Whitney U (two-sided) compares the groups' norms and cosines.

Persistence: per-type mean KL at an early and a late stage-2 checkpoint (both score the same
trajectories), ``Delta KL = KL_late - KL_early`` and a Wilcoxon signed-rank test per group. The
persistence groups are chosen on data the comparison does not reuse (``persistence_selection``:
the pre-OPD model, or a held-out half of the trajectories), and the late checkpoint must hold other
weights than the selection models (:mod:`rock.persistence`; issue 13).

Modules: :mod:`rock.geometry.core` (the library), :mod:`rock.geometry.figure` (Figure 3),
:mod:`rock.geometry.cli` (``add_arguments``, ``run``).
"""

from rock.geometry.cli import add_arguments, late_is_other_weights, persistence_groups, run  # noqa: F401
from rock.geometry.core import (GROUP_COLORS, GROUPS, SUMMARY_KEY, GeometryConfig, GradientAccumulator,
                                GroupSpec, define_groups, geometry_summary, group_tests, per_type_geometry,
                                persistence, reverse_kl_logit_grad, type_kl)
from rock.geometry.figure import figure3

__all__ = ["GROUPS", "GROUP_COLORS", "SUMMARY_KEY", "GeometryConfig", "GradientAccumulator", "GroupSpec",
           "add_arguments", "define_groups", "figure3", "geometry_summary", "group_tests",
           "late_is_other_weights", "per_type_geometry", "persistence", "persistence_groups", "reverse_kl_logit_grad", "run",
           "type_kl"]
