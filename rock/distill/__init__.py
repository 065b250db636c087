"""``rock distill``: the two-stage distillation pipeline of the paper [5.1, Appendix C].

    rock distill teacher-samples --config config.yaml      teacher answers (T=0.6, top-p 0.95)
    rock distill stage1 --config config.yaml               off-policy KD (forward KL + CE)
    rock distill stage2 --config config.yaml               on-policy KD (reverse KL), 7 checkpoints
    torchrun --nproc_per_node 4 -m rock.cli distill stage2 --config config.yaml   (FSDP2, vLLM)

Inputs and outputs default to the artifact layout of :mod:`rock.paths` under the config's
``run_dir`` (prompts from ``rock data``, stage 2 starts from the stage-1 model); flags override
them. Every field of the stage's config section can also be overridden by a flag of the same name
(``--max-steps 20``, ``--rollout-backend hf``). All stages resume after a kill.

Modules: :mod:`~rock.distill.losses` (chunked full-vocabulary KL/CE, token weights),
:mod:`~rock.distill.sampling` (hf/vllm generation, teacher samples), :mod:`~rock.distill.trainer`
(one KD optimizer step), :mod:`~rock.distill.loop` and :mod:`~rock.distill.checkpoint` (resumable
loop), :mod:`~rock.distill.stage1`, :mod:`~rock.distill.stage2`, :mod:`~rock.distill.fsdp` (GPU).
"""

from rock.distill.cli import add_arguments, run  # noqa: F401  (rock.cli calls rock.distill.run)
