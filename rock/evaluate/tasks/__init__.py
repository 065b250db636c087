"""lm-eval task definitions of the paper's benchmarks (Section 5.2), one versioned YAML per task.

Registered with ``lm_eval.tasks.TaskManager(include_path=TASKS_DIR, include_defaults=False)`` by
:mod:`rock.evaluate.benchmarks`. Files starting with ``_`` are shared bases (no ``task:`` key, so the
index skips them); ``*_chat.yaml`` are the chat-template variants, each an ``include:`` of the plain
task plus its delta. Raise ``metadata.version`` whenever a change could move a score.
"""
