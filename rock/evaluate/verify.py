"""Math answer checking with math-verify, safely off the calling thread (paper Section 5.2).

math-verify protects ``parse``/``verify`` with ``signal.alarm`` timeouts, which only work in the
main thread of a process; called from any other thread they raise. We therefore run every check in
a child process (``multiprocessing`` ``spawn`` context, one worker by default) where math-verify
runs in that process's main thread with its own timeouts, and the parent waits at most
``timeout_s`` of wall-clock time. A check that overruns is counted as wrong, the stuck worker is
terminated and a fresh pool is started. This works from any thread of the parent, including the
worker threads of Snakemake or vLLM, and a pathological answer can never hang the evaluation.

    verifier = MathVerifier(timeout_s=30)
    verifier("\\frac{1}{2}", "... so the answer is $\\boxed{0.5}$")   # True
    verifier.close()

lm-eval's task functions (``rock.evaluate.scoring``) use the process-wide :func:`shared_verifier`,
started on first use and closed at interpreter exit: a pool of worker processes, not a cache of
results, so it carries no state that could change a score.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import threading

log = logging.getLogger(__name__)


def check_answer(gold: str, response: str) -> bool:
    """math-verify equivalence of the gold answer and the response's final answer.

    The gold answer (a bare LaTeX string such as ``\\frac{1}{2}`` or ``204``) is wrapped in ``$...$``
    so that math-verify's LaTeX extractor reads it; the response is parsed with math-verify's
    defaults (last ``\\boxed{}``, then LaTeX and plain expressions). Runs in the worker process.
    """
    from math_verify import parse, verify

    if not response.strip():
        return False
    gold_parsed = parse(f"${gold}$")
    if not gold_parsed:
        gold_parsed = parse(gold)
    pred_parsed = parse(response)
    return bool(verify(gold_parsed, pred_parsed))


class MathVerifier:
    """Callable ``(gold, response) -> bool`` running :func:`check_answer` in a worker process.

    ``fn`` replaces :func:`check_answer` (it must be a picklable module-level function); tests use it
    to simulate a check that never returns.
    """

    def __init__(self, timeout_s: float = 30.0, workers: int = 1, fn=check_answer):
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.fn = fn
        self._lock = threading.Lock()
        self._pool = None
        self.n_timeouts = 0

    def _get_pool(self):
        if self._pool is None:
            # spawn: the child does not inherit the parent's threads, CUDA context or model memory
            self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self._pool

    def __call__(self, gold: str, response: str) -> bool:
        with self._lock:
            pool = self._get_pool()
        job = pool.apply_async(self.fn, (str(gold), str(response)))
        try:
            return bool(job.get(timeout=self.timeout_s))
        except multiprocessing.TimeoutError:
            log.warning("math-verify exceeded %.1f s on a response of %d chars; counted as wrong, "
                        "restarting the verifier worker", self.timeout_s, len(response))
            with self._lock:
                self.n_timeouts += 1
                if self._pool is pool:
                    pool.terminate()
                    self._pool = None
            return False
        except Exception as err:  # math-verify raised inside the worker: unparsable answer
            log.debug("math-verify failed (%s: %s); counted as wrong", type(err).__name__, err)
            return False

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.terminate()
                self._pool.join()
                self._pool = None


_shared: MathVerifier | None = None
_shared_lock = threading.Lock()


def shared_verifier(timeout_s: float | None = None) -> MathVerifier:
    """The process-wide verifier used by the task YAMLs' ``process_results``.

    ``timeout_s`` (when given) updates its wall-clock limit; ``rock evaluate`` sets it from
    ``evaluation.verify_timeout_s`` before scoring.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MathVerifier()
            atexit.register(_shared.close)
        if timeout_s is not None:
            _shared.timeout_s = float(timeout_s)
        return _shared
