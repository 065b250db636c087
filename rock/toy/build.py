"""Build the toy world: datasets, tokenizer, teacher, student, accuracy check (``rock toy build``).

Order: (1) draw the benchmarks and hold them out, (2) generate both pretraining corpora, (3) train
the tokenizer, (4) pretrain teacher and student (side by side in two worker processes when
``toy.threads >= 2``), (5) write the raw datasets, (6) greedy accuracy of both on toy MATH-500,
(7) ``world.json`` with the planted ground truth (:mod:`rock.toy.truth`). Everything is written into a temporary sibling directory
that replaces ``out`` only when all parts succeeded (DESIGN.md: atomic outputs).

Deterministic for a given seed on CPU: every random stream is derived from the seed by name,
torch runs with a fixed thread count and deterministic algorithms, so two builds give byte-identical
tokenizer, weights and jsonl files (``world.json`` differs only in its ``timings``).
"""

from __future__ import annotations

import logging
import platform
import random
import time
from contextlib import contextmanager
from pathlib import Path

from rock import atomic, paths
from rock.errors import ModelError
from rock.toy import accuracy, benchmarks, corpus, models, problems, tokenizer, truth
from rock.toy.config import ToyConfig

log = logging.getLogger(__name__)


def _layout(fn, *args) -> Path:
    """Path of an artifact relative to the world dir, as :mod:`rock.paths` defines it."""
    return fn(".", *args).relative_to(paths.world_dir("."))


def world_paths(out: str | Path) -> dict[str, Path]:
    """Where the build writes, for a world directory ``out`` (``paths.world_dir(run_dir)``)."""
    out = Path(out)
    files = {"tokenizer": out / _layout(paths.world_tokenizer),
             "teacher": out / _layout(paths.world_model, "teacher"),
             "student": out / _layout(paths.world_model, "student"),
             "world_json": out / _layout(paths.world_info)}
    files.update({name: out / _layout(paths.world_raw, name) for name in paths.RAW_DATASETS})
    return files


def rng_for(seed: int, stream: str) -> random.Random:
    """An independent, reproducible stream per purpose (str seeds hash with SHA-512)."""
    return random.Random(f"rock-toy/{seed}/{stream}")


def torch_seed(seed: int, stream: str) -> int:
    return rng_for(seed, stream).randrange(2**31)


@contextmanager
def _timed(timings: dict, name: str):
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    timings[name] = {"wall_s": round(time.perf_counter() - wall, 2),
                     "cpu_s": round(time.process_time() - cpu, 2)}
    log.info("%s: %.1f s wall, %.1f s CPU", name, timings[name]["wall_s"], timings[name]["cpu_s"])


def _set_torch(threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return {"torch": torch.__version__}


def pretrain_role(role: str, docs: list, mcfg, tokenizer_dir: str, vocab_rows: int, seed: int,
                  out_dir: str, max_seq_len: int, threads: int, init_dir: str | None = None) -> dict:
    """Encode ``docs``, pretrain one model with ``threads`` torch threads (from the weights saved in
    ``init_dir`` when given, else from scratch), save it to ``out_dir``; return its summary with a
    ``timing`` entry. Runs in a worker process when parallel."""
    from transformers import AutoTokenizer

    if not logging.getLogger().handlers:            # a spawned worker: log like the CLI does
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _set_torch(threads)
    wall, cpu = time.perf_counter(), time.process_time()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    data = models.encode_documents(docs, tok, max_seq_len)
    init = models.load_model(init_dir) if init_dir else None
    model, summary = models.pretrain(mcfg, models.qwen3_config(mcfg, tok, vocab_rows), data,
                                     tok.pad_token_id, seed, role, model=init)
    models.save_model(model, tok, out_dir)
    summary["timing"] = {"wall_s": round(time.perf_counter() - wall, 2),
                         "cpu_s": round(time.process_time() - cpu, 2), "threads": threads}
    log.info("pretrain_%s: %s", role, summary["timing"])
    return summary


def _run_pretraining(jobs: dict[str, tuple], parallel: bool) -> dict[str, dict]:
    """Teacher and student pretraining: two worker processes side by side (one thread each on
    the toy's 2 cores: batch-8 steps are too small to use 2 threads well), or one after another."""
    if not parallel:
        return {role: pretrain_role(*args) for role, args in jobs.items()}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {role: pool.submit(pretrain_role, *args) for role, args in jobs.items()}
        return {role: f.result() for role, f in futures.items()}


def _corpora(cfg: ToyConfig, seed: int, system_prompts: list[str]):
    """``(benchmarks, held-out problems, teacher documents, student documents)``, each from its own
    named seed stream."""
    bench, holdout = benchmarks.sample_benchmarks(rng_for(seed, "benchmarks"), cfg.corpus, cfg.sizes)
    t_docs = corpus.teacher_documents(cfg.teacher.steps * cfg.teacher.batch_size,
                                      rng_for(seed, "teacher-corpus"), cfg.corpus,
                                      system_prompts, holdout)
    beliefs = problems.Misconceptions(seed, cfg.corpus.student_misconception_rate,
                                      cfg.corpus.student_misconception_ops)
    s_docs = corpus.student_documents(cfg.student.steps * cfg.student.batch_size,
                                      rng_for(seed, "student-corpus"), cfg.corpus, holdout,
                                      beliefs)
    return bench, holdout, t_docs, s_docs


def _write_datasets(where: dict, cfg: ToyConfig, seed: int, bench: dict, holdout) -> None:
    """The raw datasets in their real formats: OpenThoughts-style prompts and the benchmarks."""
    atomic.write_jsonl(where["openthoughts"], benchmarks.openthoughts_rows(
        rng_for(seed, "openthoughts"), cfg.corpus, cfg.sizes, holdout))
    atomic.write_jsonl(where["math500"], benchmarks.math500_rows(bench["math500"]))
    atomic.write_jsonl(where["ifeval"], benchmarks.ifeval_rows(bench["ifeval"]))
    for name in benchmarks.COMPETITIONS:
        atomic.write_jsonl(where[name], benchmarks.competition_rows(name, bench[name]))


def _accuracies(where: dict, tok, math500: list, cfg: ToyConfig, seed: int,
                system_prompts: list[str], roles=("teacher", "student")) -> dict[str, float]:
    """Greedy toy MATH-500 accuracy of the teacher (with its hidden context) and the student."""
    accs = {}
    problems_ = [p.text for p in math500]
    answers = [p.answer for p in math500]
    for role in roles:
        model = models.load_model(where[role])
        accs[role], responses = accuracy.accuracy(
            model, tok, problems_, answers,
            system_prompts=system_prompts if role == "teacher" else None,
            seed=seed, max_new_tokens=cfg.eval.max_new_tokens,
            batch_size=cfg.eval.batch_size)
        log.info("%s toy MATH-500 greedy accuracy %.3f (%d problems); first response:\n%s",
                 role, accs[role], len(answers), responses[0])
    return accs


def _more_teacher_rounds(where: dict, tok, rows: int, cfg: ToyConfig, seed: int,
                         system_prompts: list[str], holdout, bench: dict, accs: dict,
                         summary: dict) -> None:
    """While the margin check fails and ``toy.eval.teacher_rounds`` allows: train the teacher
    another round (``toy.teacher.steps`` steps from its weights, its schedule restarted) on fresh
    documents of its corpus (stream ``teacher-corpus-round<k>``), then measure the teacher again
    (``accs["teacher"]`` is updated; the student has not changed). Each extra round's summary goes to the teacher's ``summary`` as
    ``later_rounds``; nothing changes when round 1 passes."""
    rounds = []
    for k in range(2, cfg.eval.teacher_rounds + 1):
        if accs["teacher"] - accs["student"] >= cfg.eval.min_margin:
            break
        log.info("teacher round %d: accuracy %.3f is not %s above the student's %.3f", k,
                 accs["teacher"], cfg.eval.min_margin, accs["student"])
        docs = corpus.teacher_documents(cfg.teacher.steps * cfg.teacher.batch_size,
                                        rng_for(seed, f"teacher-corpus-round{k}"), cfg.corpus,
                                        system_prompts, holdout)
        more = pretrain_role("teacher", docs, cfg.teacher, str(where["tokenizer"]), rows,
                             torch_seed(seed, f"teacher-round{k}"), str(where["teacher"]),
                             cfg.max_seq_len, cfg.threads, init_dir=str(where["teacher"]))
        accs.update(_accuracies(where, tok, bench["math500"], cfg, seed, system_prompts,
                                roles=("teacher",)))
        rounds.append({**more, "round": k, "accuracy_math500": dict(accs)})
    if rounds:
        summary["later_rounds"] = rounds


def _tokenizer(cfg: ToyConfig, t_docs: list[str], s_docs: list[str], out: Path):
    """The world's byte-level BPE, trained on half the documents of each model, saved to ``out``."""
    half = cfg.tokenizer.n_documents // 2
    texts = list(tokenizer.training_texts(t_docs[:half] + s_docs[:half]))
    tok = tokenizer.train_tokenizer(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
    tokenizer.save_tokenizer(tok, out)
    return tok


def build_world(out: str | Path, cfg: ToyConfig, seed: int, system_prompts: list[str]) -> dict:
    """Build the toy world into ``out`` and return the contents of its ``world.json``."""
    import tokenizers
    import transformers

    versions = _set_torch(cfg.threads)
    versions.update(transformers=transformers.__version__, tokenizers=tokenizers.__version__,
                    python=platform.python_version())
    timings: dict = {}
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with atomic.atomic_path(Path(out), directory=True) as tmp:
        where = world_paths(tmp)
        with _timed(timings, "corpus"):
            bench, holdout, t_docs, s_docs = _corpora(cfg, seed, system_prompts)
        with _timed(timings, "tokenizer"):
            tok = _tokenizer(cfg, t_docs, s_docs, where["tokenizer"])
        rows = models.padded_vocab(len(tok), cfg.tokenizer.pad_to_multiple)
        jobs = {role: (role, docs, mcfg, str(where["tokenizer"]), rows,
                       torch_seed(seed, f"{role}-init"), str(where[role]), cfg.max_seq_len,
                       max(1, cfg.threads // 2))
                for role, docs, mcfg in (("teacher", t_docs, cfg.teacher),
                                         ("student", s_docs, cfg.student))}
        with _timed(timings, "pretrain"):
            summaries = _run_pretraining(jobs, parallel=cfg.threads >= 2)
        for role in jobs:
            timings[f"pretrain_{role}"] = summaries[role].pop("timing")
        with _timed(timings, "datasets"):
            _write_datasets(where, cfg, seed, bench, holdout)
        with _timed(timings, "accuracy"):
            accs = _accuracies(where, tok, bench["math500"], cfg, seed, system_prompts)
        with _timed(timings, "teacher_rounds"):
            _more_teacher_rounds(where, tok, rows, cfg, seed, system_prompts, holdout, bench, accs,
                                 summaries["teacher"])
        # CPU of the whole build: this process plus the pretraining workers
        workers = sum(timings[f"pretrain_{r}"]["cpu_s"] for r in jobs) if cfg.threads >= 2 else 0
        timings["total"] = {"wall_s": round(time.perf_counter() - start_wall, 2),
                            "cpu_s": round(time.process_time() - start_cpu + workers, 2)}
        info = {
            "seed": seed,
            "teacher_system_prompts": list(system_prompts),
            "accuracy_math500": accs,
            "accuracy_margin": round(accs["teacher"] - accs["student"], 4),
            "tokenizer": {"size": len(tok), "embedding_rows": rows},
            "ground_truth": truth.ground_truth(tok, cfg),
            "parameters": {r: summaries[r]["parameters"] for r in summaries},
            "pretraining": summaries,
            "sizes": {name: sum(1 for _ in open(where[name])) for name in paths.RAW_DATASETS},
            "config": cfg.to_dict(),
            "versions": versions,
            "timings": timings,
        }
        atomic.write_json(where["world_json"], info)
    if info["accuracy_margin"] < cfg.eval.min_margin:
        raise ModelError(
            f"{out}: toy teacher accuracy {accs['teacher']:.3f} is not {cfg.eval.min_margin} above "
            f"the student's {accs['student']:.3f}, so distillation has nothing to show (fix: more "
            "toy.teacher.steps, or a lower toy.eval.min_margin for smoke builds)")
    log.info("toy world in %s: teacher %.3f, student %.3f, %d tokens, %.0f s", out,
             accs["teacher"], accs["student"], len(tok), timings["total"]["wall_s"])
    return info
