"""Build the lm-eval Task objects of the paper's benchmarks, once per process (paper Section 5.2).

The definitions are the versioned YAMLs in ``rock/evaluate/tasks/`` (``rock_<benchmark>`` and the
``rock_<benchmark>_chat`` variants). They are registered through lm-eval's own
``TaskManager(include_path=TASKS_DIR, include_defaults=False)``: indexing only our dozen files takes
milliseconds, where lm-eval's full index of its built-in tasks costs seconds per process.

The same definition reads either its Hugging Face dataset (``dataset_source: hub``, paper scale) or
a local jsonl (``dataset_source: local``, the toy run and offline clusters): for a local file we
write a two-line task YAML that ``include:``s the registered definition and replaces only
``dataset_path: json`` / ``dataset_kwargs.data_files`` / ``test_split``, and load it by path, both
public lm-eval features. :func:`local_task_yaml` is also what ``benchmarks/bench_suppression.py``
gives the ``lm_eval`` command line, so both sides evaluate the identical task.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "tasks"
#: prompt_format -> task-name suffix of the YAML variant
FORMAT_SUFFIX = {"question_answer": "", "chat_boxed": "_chat"}
#: per-problem metric of each benchmark (IFEval's is configurable: EvaluationConfig.ifeval_metric)
MATH_METRIC = "math_verify"


def task_name(benchmark: str, prompt_format: str) -> str:
    """``rock_math500`` / ``rock_math500_chat`` ..."""
    if prompt_format not in FORMAT_SUFFIX:
        raise ConfigError(f"unknown prompt_format {prompt_format!r}; choose from {list(FORMAT_SUFFIX)}")
    return f"rock_{benchmark}{FORMAT_SUFFIX[prompt_format]}"


def local_task_yaml(benchmark: str, prompt_format: str, data_file: str | Path, out_dir: str | Path,
                    *, name: str | None = None) -> Path:
    """Write a task YAML that reads ``data_file`` (jsonl) with the registered definition.

    Returns its path; ``name`` renames the task (default: the registered name).
    """
    data_file = Path(data_file).resolve()
    if not data_file.is_file():
        raise DataError("benchmark file not found", file=str(data_file),
                        fix=f"run `rock data` first or set evaluation.dataset_source: hub")
    base = task_name(benchmark, prompt_format)
    cfg = {
        "include": str((TASKS_DIR / f"{base}.yaml").resolve()),
        "task": name or base,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
    }
    path = Path(out_dir) / f"{name or base}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class TaskSet:
    """The loaded tasks: ``tasks`` maps benchmark name -> lm-eval Task; ``task_dict`` is what
    ``lm_eval.evaluator.evaluate`` takes; ``apply_chat_template`` follows the prompt format."""

    tasks: dict[str, Any]
    task_dict: dict[str, Any]
    apply_chat_template: bool
    versions: dict[str, Any]

    def name_of(self, benchmark: str) -> str:
        return self.tasks[benchmark].config.task


def build_tasks(benchmarks: list[str], *, prompt_format: str, data_files: dict[str, Path] | None = None,
                generation_kwargs: dict[str, Any] | None = None) -> TaskSet:
    """Load one lm-eval Task per benchmark (datasets read once, here).

    ``data_files`` maps a benchmark to its local jsonl (others read the hub dataset of their YAML);
    ``generation_kwargs`` update every task's generation settings (as lm-eval's ``--gen_kwargs``).
    """
    from lm_eval.tasks import TaskManager

    if "ifeval" in benchmarks:
        from rock.evaluate.ifeval import import_ifeval

        import_ifeval()  # before the YAML's !function imports it: no download attempt offline
    data_files = data_files or {}
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    with tempfile.TemporaryDirectory(prefix="rock-tasks-") as tmp:
        specs = [str(local_task_yaml(b, prompt_format, data_files[b], tmp)) if b in data_files
                 else task_name(b, prompt_format) for b in benchmarks]
        missing = [s for s in specs if not s.endswith(".yaml") and s not in manager.all_tasks]
        if missing:
            raise ConfigError(f"task definition(s) {missing} not found in {TASKS_DIR}")
        loaded = manager.load(specs)
    by_name = loaded["tasks"]
    tasks = {b: by_name[task_name(b, prompt_format)] for b in benchmarks}
    for b, task in tasks.items():
        if generation_kwargs:
            task.set_config(key="generation_kwargs", value=dict(generation_kwargs), update=True)
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        if b == "ifeval":
            from rock.evaluate.ifeval import check_rows

            check_rows(task.eval_docs, source=str(data_files.get(b, task.config.dataset_path)))
        log.info("task %s: %d problems, version %s, generation %s", task.config.task,
                 len(task.eval_docs), task.VERSION, task.config.generation_kwargs)
    formats = {(t.config.metadata or {}).get("prompt_format", prompt_format) for t in tasks.values()}
    if formats != {prompt_format}:
        raise ConfigError(f"task YAMLs declare prompt formats {sorted(formats)}, expected {prompt_format!r}")
    return TaskSet(tasks=tasks, task_dict=loaded, apply_chat_template=prompt_format == "chat_boxed",
                   versions={b: t.VERSION for b, t in tasks.items()})


def metric_of(benchmark: str, ifeval_metric: str) -> str:
    return ifeval_metric if benchmark == "ifeval" else MATH_METRIC
