"""The vllm backend down to the arguments it builds, with a stand-in ``vllm`` module (no GPU here).

The stand-in records what lm-eval's ``VLLM`` and our ``RockVLLM`` pass to ``LLM(...)`` and
``SamplingParams(...)``; the real lm-eval 0.4.13 ``VLLM.generate_until`` runs unchanged.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import inspect
import json
import math
import sys
import types

import pytest
import torch

from rock.evaluate.benchmarks import build_tasks
from rock.evaluate.config import EvaluationConfig
from rock.evaluate.runner import Evaluator
from rock.evaluate.suppression import SUPPRESS_EXTRA_ARG, VLLM_PROCESSOR_FQCN, vllm_sampling_extras
from rock.evaluate.tiny import build_tiny_model

ROWS = [{"id": f"p{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(1, 4)]


class FakeSamplingParams:
    made: list[dict] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        FakeSamplingParams.made.append(kwargs)


class FakeLLM:
    inits: list[dict] = []

    def __init__(self, **kwargs):
        FakeLLM.inits.append(kwargs)
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=512))

    def generate(self, prompts, sampling_params, use_tqdm=False, lora_request=None):
        out = []
        for p, sp in zip(prompts, sampling_params):
            # answer "2" to every prompt: right for problem 1 only
            out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text="$\\boxed{2}$", token_ids=[7, 8])]))
        return out


class FakeAdapter:
    def __init__(self, vllm_config=None, device=None, is_pin_memory=False):
        pass


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    mod.__dict__.update(attrs)
    return mod


@pytest.fixture()
def fake_vllm(monkeypatch, tmp_path_factory):
    from transformers import AutoTokenizer

    FakeSamplingParams.made.clear()
    FakeLLM.inits.clear()
    mods = {
        "vllm": _module("vllm", LLM=FakeLLM, SamplingParams=FakeSamplingParams,
                        TokensPrompt=lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}),
        "vllm.lora": _module("vllm.lora"),
        "vllm.lora.request": _module("vllm.lora.request", LoRARequest=object),
        "vllm.renderers": _module("vllm.renderers"),
        "vllm.renderers.hf": _module("vllm.renderers.hf", resolve_chat_template=lambda **kw: None),
        "vllm.tokenizers": _module("vllm.tokenizers",
                                   get_tokenizer=lambda name, **kw: AutoTokenizer.from_pretrained(name)),
        "vllm.v1": _module("vllm.v1"),
        "vllm.v1.sample": _module("vllm.v1.sample"),
        "vllm.v1.sample.logits_processor": _module("vllm.v1.sample.logits_processor",
                                                   AdapterLogitsProcessor=FakeAdapter),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda pkg: "0.33.0" if pkg == "vllm" else real_version(pkg))
    for name in ("lm_eval.models.vllm_causallms", "rock.evaluate.vllm_lm", "rock.evaluate.vllm_processor"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    # each import of lm-eval's vllm module registers the 'vllm' model: restore the lazy entry afterwards
    from lm_eval.api.registry import model_registry

    monkeypatch.setitem(model_registry._objs, "vllm", model_registry._objs.get("vllm"))
    yield
    for name in ("lm_eval.models.vllm_causallms", "rock.evaluate.vllm_lm", "rock.evaluate.vllm_processor"):
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("vworld")
    model = build_tiny_model(root / "tiny", seed=1)
    (root / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return root, model


def test_sampling_extras():
    assert vllm_sampling_extras((), 3, "processor") == {"seed": 3}
    assert vllm_sampling_extras((5, 9), 3, "processor") == {"seed": 3, "extra_args": {SUPPRESS_EXTRA_ARG: [5, 9]}}
    lb = vllm_sampling_extras((5, 9), None, "logit_bias")
    assert list(lb) == ["logit_bias"] and all(type(k) is int for k in lb["logit_bias"])  # int keys, not str
    assert all(math.isinf(v) and v < 0 for v in lb["logit_bias"].values())


@pytest.mark.parametrize("mode", ["processor", "logit_bias"])
def test_rock_vllm_builds_engine_and_request_arguments(fake_vllm, world, mode):
    from rock.evaluate.models import make_lm

    root, model = world
    cfg = EvaluationConfig(backend="vllm", dataset_source="local", n_runs=2, seed=10, temperature=1.0, top_p=0.9,
                           max_gen_toks=32, tensor_parallel_size=2, vllm_suppression=mode, dtype="bfloat16")
    lm = make_lm(cfg, model, record_tokens=True)
    (init,) = FakeLLM.inits
    assert init["model"] == str(model) and init["tensor_parallel_size"] == 2 and init["seed"] == 10
    assert init["gpu_memory_utilization"] == 0.9 and init["dtype"] == "bfloat16"
    assert init.get("logits_processors") == ([VLLM_PROCESSOR_FQCN] if mode == "processor" else None)

    ts = build_tasks(["math500"], prompt_format="question_answer", data_files={"math500": root / "math500.jsonl"},
                     generation_kwargs=cfg.generation_kwargs())
    table = Evaluator(lm, ts, cfg, model_name="fake").run({"none": [], "k": [9, 5]})
    made = FakeSamplingParams.made
    assert len(made) == 2 * 2 * len(ROWS)  # sets x runs x problems, one SamplingParams per request
    by_call = [made[i:i + len(ROWS)] for i in range(0, len(made), len(ROWS))]
    for (sid, ids), run_seed, call in zip([("none", []), ("none", []), ("k", [5, 9]), ("k", [5, 9])],
                                          [10, 11, 10, 11], by_call):
        for kw in call:
            assert kw["seed"] == run_seed  # the run seed reaches every request's sampler
            assert kw["temperature"] == 1.0 and kw["top_p"] == 0.9 and kw["max_tokens"] == 32
            assert "Question:" in kw["stop"]
            if not ids:
                assert "extra_args" not in kw and "logit_bias" not in kw
            elif mode == "processor":
                assert kw["extra_args"] == {SUPPRESS_EXTRA_ARG: ids} and "logit_bias" not in kw
            else:
                assert kw["logit_bias"] == {5: float("-inf"), 9: float("-inf")} and "extra_args" not in kw
    # the fake answers "2": right for problem p1 (1+1) only, in every set and run
    assert table.groupby("problem_id").correct.mean().to_dict() == {"p1": 1.0, "p2": 0.0, "p3": 0.0}
    assert lm.generated_token_ids == [[7, 8]] * len(ROWS)


def test_vllm_processor_masks_only_requested_ids(fake_vllm):
    proc_mod = importlib.import_module("rock.evaluate.vllm_processor")
    proc = proc_mod.SuppressTokenIds(None, torch.device("cpu"), False)
    assert proc.is_argmax_invariant() is False
    assert proc.new_req_logits_processor(types.SimpleNamespace(extra_args=None)) is None
    assert proc.new_req_logits_processor(types.SimpleNamespace(extra_args={"other": 1})) is None
    fn = proc.new_req_logits_processor(types.SimpleNamespace(extra_args={SUPPRESS_EXTRA_ARG: [1, 3]}))
    # vLLM's AdapterLogitsProcessor passes (output_ids, logits_row) to a 2-parameter callable
    assert len(inspect.signature(fn).parameters) == 2
    row = torch.arange(6, dtype=torch.float32)
    out = fn([0, 2], row)
    assert out is row  # in place: the adapter keeps the row
    assert torch.isneginf(out[[1, 3]]).all() and out[[0, 2, 4, 5]].tolist() == [0.0, 2.0, 4.0, 5.0]
    assert int(torch.argmax(fn([], torch.tensor([0.0, 9.0, 1.0, 9.0])))) == 2  # argmax moves off suppressed ids
