"""Many evaluations, one model load: suppression sets x runs -> a tidy per-problem table.

Paper Section 5.2 (Pass@1 averaged over independent runs) and Appendix D.3 (per-problem
indicators under token- and window-level knockout, for the paired bootstrap).

:class:`Evaluator` holds one lm-eval model (loaded once) and one set of lm-eval Task objects (built
once, datasets read once). Each evaluation only calls ``model.configure(suppress_token_ids, seed)``
and lm-eval's ``lm_eval.evaluator.evaluate(lm, task_dict, ...)`` directly, which rebuilds the
requests (prompt rendering, milliseconds) and scores them with the tasks' own functions. We skip
``simple_evaluate`` on purpose: it would re-resolve the tasks and spend ~0.5 s per call collecting
environment information (``add_env_info``) that :func:`provenance` records once per file instead.

    evaluator = Evaluator(lm, taskset, cfg, model_name="student")
    table = evaluator.run({"none": [], "rock_17": [1723]})   # one row per (task, set, run, problem)
    summary = summarise(table)

Table columns (:data:`TABLE_COLUMNS`): model, task, problem_id, run, seed, suppression_set,
correct (0/1), plus ``response`` when ``save_responses``. Pass@1 of a run is the mean of ``correct``
over problems; the reported Pass@1 is the mean over runs (:func:`summarise`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import time
from importlib import metadata
from typing import Any

import pandas as pd
from tqdm import tqdm

from rock.evaluate.benchmarks import TaskSet, metric_of
from rock.evaluate.config import EvaluationConfig

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["model", "task", "problem_id", "run", "seed", "suppression_set", "correct"]
#: the suppression set id used when none is given: the unmodified policy pi_theta
BASELINE_SET = "none"


class Evaluator:
    """Evaluate one loaded model on prebuilt tasks under many suppression sets and seeds."""

    def __init__(self, lm, taskset: TaskSet, cfg: EvaluationConfig, *, model_name: str):
        from rock.evaluate.verify import shared_verifier

        self.lm, self.taskset, self.cfg, self.model_name = lm, taskset, cfg, model_name
        shared_verifier(timeout_s=cfg.verify_timeout_s)

    def evaluate_once(self, suppress_token_ids=(), seed: int | None = None) -> dict[str, list[dict]]:
        """One pass over every task: ``{benchmark: [{problem_id, correct, response}, ...]}``."""
        from lm_eval.evaluator import evaluate

        self.lm.configure(suppress_token_ids=suppress_token_ids, seed=seed)
        results = evaluate(lm=self.lm, task_dict=self.taskset.task_dict, limit=self.cfg.limit,
                           bootstrap_iters=0, log_samples=True,
                           apply_chat_template=self.taskset.apply_chat_template, fewshot_as_multiturn=False)
        out = {}
        for bench in self.taskset.tasks:
            metric = metric_of(bench, self.cfg.ifeval_metric)
            rows = []
            for s in sorted(results["samples"][self.taskset.name_of(bench)], key=lambda s: s["doc_id"]):
                doc = s["doc"]
                pid = doc.get("problem_id", doc.get("key", s["doc_id"]))
                rows.append({"problem_id": str(pid), "correct": int(bool(s[metric])),
                             "response": s["filtered_resps"][0]})
            out[bench] = rows
        return out

    def run(self, suppression_sets: dict[str, list[int]] | None = None) -> pd.DataFrame:
        """Every suppression set x every run seed; returns the tidy per-problem table.

        Run r uses seed ``cfg.seeds[r]`` for every set (common random numbers across sets).
        """
        sets = suppression_sets if suppression_sets is not None else {BASELINE_SET: []}
        if self.cfg.temperature == 0 and self.cfg.n_runs > 1:
            log.warning("temperature 0 (greedy): the %d runs decode identically", self.cfg.n_runs)
        records = []
        jobs = [(sid, ids, r, seed) for sid, ids in sets.items() for r, seed in enumerate(self.cfg.seeds)]
        for sid, ids, r, seed in tqdm(jobs, desc=f"evaluate {self.model_name}", disable=len(jobs) < 2):
            t0 = time.perf_counter()
            per_task = self.evaluate_once(ids, seed)
            for bench, rows in per_task.items():
                for row in rows:
                    rec = {"model": self.model_name, "task": bench, "problem_id": row["problem_id"], "run": r,
                           "seed": seed, "suppression_set": str(sid), "correct": row["correct"]}
                    if self.cfg.save_responses:
                        rec["response"] = row["response"]
                    records.append(rec)
            log.info("set %s run %d (seed %d): %s in %.2f s", sid, r, seed,
                     {b: round(sum(x["correct"] for x in v) / len(v), 4) for b, v in per_task.items()},
                     time.perf_counter() - t0)
        cols = TABLE_COLUMNS + (["response"] if self.cfg.save_responses else [])
        table = pd.DataFrame.from_records(records, columns=cols)
        return table.astype({"run": "int64", "seed": "int64", "correct": "int8"})


def summarise(table: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {suppression_set: {pass_at_1_per_run, pass_at_1, std, n_runs, n_problems, seeds}}}``.

    Pass@1 per run = mean of ``correct`` over the problems of that run; ``pass_at_1`` = mean over
    runs [5.2]; ``std`` = sample standard deviation over runs (None for a single run).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, sid), g in table.groupby(["task", "suppression_set"], sort=True):
        per_run = g.groupby("run")["correct"].mean().sort_index()
        vals = [float(v) for v in per_run]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
        out.setdefault(str(task), {})[str(sid)] = {
            "pass_at_1_per_run": vals, "pass_at_1": mean, "std": std, "n_runs": len(vals),
            "n_problems": int(g["problem_id"].nunique()),
            "seeds": [int(s) for s in g.groupby("run")["seed"].first().sort_index()],
        }
    return out


def provenance(cfg: EvaluationConfig, taskset: TaskSet, *, model: str, model_name: str,
               suppression_sets: dict[str, list[int]], data_files: dict[str, str] | None = None) -> dict:
    """What produced a result file: versions, task definitions, config, seeds, sets."""

    def _v(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    from lm_eval.loggers.utils import get_git_commit_hash

    return {
        "model": model_name, "model_path": str(model), "backend": cfg.backend,
        "lm_eval_version": _v("lm_eval"), "vllm_version": _v("vllm") if cfg.backend == "vllm" else None,
        "torch_version": _v("torch"), "transformers_version": _v("transformers"),
        "math_verify_version": _v("math-verify"), "rock_version": _v("rock"), "python": platform.python_version(),
        "git_hash": get_git_commit_hash(),
        "tasks": {b: {"name": taskset.name_of(b), "version": taskset.versions[b],
                      "dataset": str((data_files or {}).get(b) or taskset.tasks[b].config.dataset_path),
                      "metric": metric_of(b, cfg.ifeval_metric),
                      "generation_kwargs": dict(taskset.tasks[b].config.generation_kwargs)}
                  for b in taskset.tasks},
        "apply_chat_template": taskset.apply_chat_template,
        "config": dataclasses.asdict(cfg), "seeds": cfg.seeds,
        "suppression_sets": {str(k): [int(i) for i in v] for k, v in suppression_sets.items()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
