"""rock-repro: regenerate "Cornerstones or Stumbling Blocks? Deciphering the Rock Tokens in
On-Policy Distillation" (arXiv 2605.09253).

One module per paper stage (see ``rock.cli.STAGES``); each exposes ``add_arguments(parser)`` and
``run(args) -> int`` so that ``rock <stage> ...`` and the Snakemake rules share one entry point.
"""

__version__ = "0.1.0"
