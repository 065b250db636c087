"""Token statistics of student trajectories: one row per token occurrence [Sec. 2.1, 2.3].

    rock stats decode --config config.yaml                      # trajectories.jsonl
    rock stats score  --config config.yaml --checkpoint post    # tokens_post.parquet
    rock stats hidden --config config.yaml --checkpoint post    # hidden_post.npy (student only)

1. **Decode.** A student checkpoint (``stats.decode_checkpoint``, default the post-OPD model) answers
   the detection set (paper: MATH-500, N = 500) greedily, as the authors' detector does
   (reference/README.md: seed-42 shuffle, greedy, 4096 new tokens). The user message is the problem
   plus ``stats.instruction_suffix``, rendered with the chat template (``enable_thinking`` from
   ``models``). Each trajectory stores the student's and the teacher's prompt ids (the teacher's
   with its hidden system message, drawn per sequence, when ``models.teacher_system_prompts`` is
   non-empty) and the generated ids (stop token included).
2. **Score.** A checkpoint and the teacher read the *same* trajectories (teacher forcing). For every
   response token ``x_t`` the row of each model that predicts it gives, over the full vocabulary
   (``rock.distill.losses.token_statistics``, chunked over positions):

   * ``log_ratio`` = ``l_t = log p_s(x_t) - log p_T(x_t)`` (Eq. 2),
   * ``reverse_kl`` = ``KL(p_s || p_T)`` at that position (Eq. 1 summand; Eq. 15 averages it per type),
   * ``student_entropy``, ``teacher_entropy``, ``student_logprob``, ``teacher_logprob``.

   Rows: ``trajectory, position`` (0-based index in the response), ``token_id``, the values above
   and ``checkpoint`` (pre / post / early / late). The models' final hidden states are computed
   once per sequence and the output layer is applied to ``chunk_size`` positions at a time, so no
   ``[positions x V]`` fp32 tensor exceeds one chunk.
3. **Hidden states** (only for ``detection.context.representation: hidden``). The student's final
   hidden state at every response token (the state after reading ``x_t``), row-aligned with the
   token table, projected to ``stats.hidden_dim`` dimensions with a seeded Gaussian
   (Johnson-Lindenstrauss) projection when the model is wider; detection mean-pools it over
   context windows (Eq. 7). A separate step because it needs the student only.

Checkpoint names map to models through ``stats.checkpoints`` (:func:`resolve_checkpoint`).
Modules: :mod:`rock.stats.core` (the library), :mod:`rock.stats.cli` (``add_arguments``, ``run``).
"""

from rock.stats.cli import add_arguments, run
from rock.stats.core import (BACKENDS, CHECKPOINT_SPECS, TOKEN_COLUMNS, ScoredChunk, StatsConfig,
                             build_trajectory_prompts, decode, detection_problems, hidden_states,
                             iter_scored_chunks, kept_checkpoints, load_models, make_generator,
                             projection, read_trajectories, resolve_checkpoint, score)

__all__ = ["BACKENDS", "CHECKPOINT_SPECS", "TOKEN_COLUMNS", "ScoredChunk", "StatsConfig", "add_arguments",
           "build_trajectory_prompts", "decode", "detection_problems", "hidden_states",
           "iter_scored_chunks", "kept_checkpoints", "load_models", "make_generator", "projection",
           "read_trajectories", "resolve_checkpoint", "run", "score"]
