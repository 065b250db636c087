"""``rock toy``: the embedded toy world (DESIGN.md, "The toy world").

    rock toy build --config tests/config_toy/config.yaml
    rock toy build --config tests/config_toy/config.yaml --out /tmp/world --seed 1 \\
        --set teacher.steps=5 --set student.steps=5 --set eval.min_margin=-1

builds, on CPU and offline, a byte-level BPE tokenizer with a ChatML template, a small
Qwen3ForCausalLM teacher and a smaller student pretrained on synthetic multi-step arithmetic in two
styles (plus toy instruction following), and the datasets the pipeline reads, in the real formats.
It reads ``run_dir``, ``seed``, ``models.teacher_system_prompts`` and the ``toy:`` section
(:class:`rock.toy.config.ToyConfig`) of the config file; ``--out`` defaults to
``rock.paths.world_dir(run_dir)``. Modules:

- :mod:`rock.toy.problems`: arithmetic problems and the teacher/student solution styles
- :mod:`rock.toy.instructions`: toy IFEval instructions (real lm-eval ids) and responses
- :mod:`rock.toy.corpus`: the two pretraining mixtures (hidden system message for the teacher)
- :mod:`rock.toy.tokenizer`: byte-level BPE + chat template in Hugging Face format
- :mod:`rock.toy.models`: Qwen3 configs and the pretraining loop
- :mod:`rock.toy.benchmarks`: OpenThoughts3/MATH-500/IFEval/AIME/HMMT rows
- :mod:`rock.toy.accuracy`: greedy accuracy check on toy MATH-500
- :mod:`rock.toy.build`: the orchestration
"""

from rock.toy.cli import add_arguments, run, settings_from  # noqa: F401  (rock.cli calls rock.toy.run)
