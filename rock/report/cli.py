"""``rock report check | render | golden | timings | contract | seed-config | seeds``: the claim
check and the report.

The stage itself is described in :mod:`rock.report`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from rock.errors import DataError

log = logging.getLogger(__name__)

SCALES = ("toy", "paper")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cmd", required=True,
                                metavar="{check,render,golden,timings,contract,seed-config,seeds}")

    def common(p: argparse.ArgumentParser, run_flag: str = "--run-dir") -> None:
        p.add_argument(run_flag, dest="run_dir", required=True, type=Path,
                       help="run directory (config key run_dir), e.g. results/toy")
        p.add_argument("--config", type=Path, default=None,
                       help="the run's config file (for config claims, seeds and provenance)")

    c = sub.add_parser("check", help="compare a run with expected tables, row by row")
    common(c)
    c.add_argument("--expected", nargs="+", required=True, type=Path,
                   help="expected-table files or directories (results/expected/paper, .../toy)")
    c.add_argument("--out", required=True, type=Path, help="claims_check.csv (a .md is written next to it)")
    c.add_argument("--scale", choices=SCALES, default=None,
                   help="scale of the run; default: the config's 'scale', else toy if the run has a "
                        "toy world, else paper")
    c.add_argument("--no-fail", action="store_true", help="exit 0 even on toy regressions")

    r = sub.add_parser("render", help="write the HTML and markdown report")
    common(r)
    r.add_argument("--check", type=Path, required=True, help="claims_check.csv from `rock report check`")
    r.add_argument("--out", required=True, type=Path, help="report.html (report.md is written next to it)")
    r.add_argument("--captions", type=Path, default=Path("workflow/report"),
                   help="directory of the .rst captions (default: workflow/report)")
    r.add_argument("--link-images", action="store_true",
                   help="link figures by relative path instead of embedding them")
    r.add_argument("--screenshot", type=Path, default=None,
                   help="also save a PNG of the page (needs chromium; skipped with a warning if absent)")

    g = sub.add_parser("golden", help="record the run's current numbers as golden values")
    common(g, "--from")
    g.add_argument("--out", required=True, type=Path, help="golden.csv to create or extend")
    g.add_argument("--update", action="store_true", help="re-record values of existing rows too")

    t = sub.add_parser("timings", help="print the wall-clock per stage of a workflow run (Snakemake benchmark files)")
    t.add_argument("--run-dir", required=True, type=Path, help="run directory, e.g. results/toy")

    sub.add_parser("contract", help="print the summary fields each stage should write and all metric keys")

    sc = sub.add_parser("seed-config", help="the toy config for another toy world seed (rock.report.seeds)")
    sc.add_argument("--config", required=True, type=Path, help="the toy config to start from")
    sc.add_argument("--seed", required=True, type=int, help="toy world and training seed")
    sc.add_argument("--run-dir", required=True, type=Path, help="the seed's run directory")
    sc.add_argument("--out", required=True, type=Path, help="config file to write")

    s = sub.add_parser("seeds", help="direction claims and planted truth per toy seed run; exit 1 if any fails")
    s.add_argument("--run-dirs", nargs="+", required=True, type=Path, help="finished toy runs")
    s.add_argument("--out", type=Path, default=None, help="also write the table as markdown here")


def run_scale(run_dir: Path, config: dict | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    if config and config.get("scale") in SCALES:
        return config["scale"]
    from rock import paths

    return "toy" if (paths.world_dir(run_dir) / "world.json").is_file() else "paper"


def _context(args):
    from rock.report.extract import Context

    if not args.run_dir.is_dir():
        log.warning("run directory %s does not exist: every row will be 'not run'", args.run_dir)
    from rock.config import stage_config

    cfg = stage_config(args)
    return Context(run_dir=args.run_dir, config=cfg, config_path=args.config), cfg


def run(args: argparse.Namespace) -> int:
    return {"check": _check, "render": _render, "golden": _golden, "timings": _timings,
            "contract": _contract, "seed-config": _seed_config, "seeds": _seeds}[args.cmd](args)


def _check(args) -> int:
    from rock.report import check as chk
    from rock.report import platform
    from rock.report.expected import load_expected

    ctx, cfg = _context(args)
    rows = load_expected(args.expected)
    scale = run_scale(args.run_dir, cfg, args.scale)
    table = chk.run_check(rows, ctx, scale)
    csv_path, md_path = chk.write_check(table, args.out)
    log.info("wrote %s and %s (%d rows, %s scale)", csv_path, md_path, len(table), scale)
    failed = _toy_gates(table, ctx, args, scale)
    regs = chk.regressions(table)
    gates, diff = platform.golden_gates(platform.recorded_for(args.expected), platform.current())
    level = logging.ERROR if gates else logging.WARNING
    for r in regs.itertuples():
        log.log(level, "toy regression %s %s: expected %s (%s), measured %s: %s",
                r.id, r.metric, r.expected, r.band, r.measured, r.detail)
    if failed and not gates:
        log.warning("%d toy direction claim(s) or ground-truth check(s) fail, but this toy world was "
                    "trained on another numerical platform than the recorded one (%s): its weights, "
                    "and so what it learnt, differ. Not failing; set %s=1 to fail anyway",
                    failed, "; ".join(diff), platform.STRICT_ENV)
    elif failed and not args.no_fail:
        log.error("%d toy direction claim(s) or ground-truth check(s) fail: see %s", failed, md_path)
        return 1
    if len(regs) and not gates:
        log.warning("%d golden row(s) disagree, but the golden numbers were recorded on another "
                    "numerical platform (%s): not failing. Re-record on this platform with `rock report "
                    "golden --update`, or set %s=1 to fail anyway (rock.report.platform)",
                    len(regs), "; ".join(diff), platform.STRICT_ENV)
        return 0
    if len(regs) and not args.no_fail:
        log.error("%d golden row(s) disagree: see %s", len(regs), md_path)
        return 1
    return 0


def _toy_gates(table, ctx, args, scale: str) -> int:
    """On a toy run: the direction claims and the planted ground truth (issue 14). They fail the
    check on the numerical platform the golden numbers were recorded on (or with
    ``ROCK_GOLDEN_STRICT=1``), as the golden rows do: the toy world is trained from scratch, and
    another platform's float32 kernels train another world (rock.report.platform). Writes
    ``ground_truth.csv`` next to the check (empty without a toy world); returns how many failed."""
    from rock.report import check as chk
    from rock.report import truth

    gt = truth.truth_frame(ctx)
    truth.write(gt, args.out.with_name("ground_truth.csv"))
    if scale != "toy":
        return 0
    dirs = chk.direction_failures(table)
    for r in dirs.itertuples():
        log.error("toy direction claim %s %s fails: measured %s, toy band %s (%s)",
                  r.id, r.metric, r.measured, r.toy_band, r.toy_reason)
    bad = truth.failures(gt)
    for r in bad.itertuples():
        log.error("planted ground truth not recovered: %s: %s", r.check, r.detail)
    return len(dirs) + len(bad)


def _render(args) -> int:
    import pandas as pd

    from rock.report import provenance, render

    ctx, cfg = _context(args)
    if not args.check.is_file():
        raise DataError("claim check table not found", file=str(args.check),
                        fix="run `rock report check ... --out` first")
    check = pd.read_csv(args.check, dtype=str, keep_default_na=False)
    prov = provenance.collect(args.run_dir, args.config, cfg)
    from rock.report.toy import read_truth

    html_path, md_path = render.write_report(ctx, check, prov, args.out, captions_dir=args.captions,
                                             embed_images=not args.link_images,
                                             truth=read_truth(args.check))
    log.info("wrote %s and %s", html_path, md_path)
    if args.screenshot:
        from rock.report import browser

        try:
            browser.screenshot(html_path, args.screenshot)
            log.info("wrote %s", args.screenshot)
        except browser.BrowserError as err:
            log.warning("no screenshot: %s", err)
    return 0


def _golden(args) -> int:
    from rock.report import golden, provenance

    ctx, cfg = _context(args)
    command = "rock report " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("golden"):]) \
        if "golden" in sys.argv else ""
    prov = provenance.collect(args.run_dir, args.config, cfg)
    golden.record(ctx, args.out, update=args.update, command=command, provenance=prov)
    return 0


def _timings(args) -> int:
    from rock import paths
    from rock.report.provenance import stage_times

    table = stage_times(args.run_dir)
    if table.empty:
        raise DataError("no Snakemake benchmark files: run the workflow first",
                        file=str(paths.benchmarks_dir(args.run_dir)))
    sys.stdout.write(f"wall-clock per stage of {args.run_dir} (seconds; Snakemake benchmark files)\n"
                     + table.to_string(index=False) + "\n")
    return 0


def _contract(args) -> int:
    from rock.report.extract import REGISTRY, summary_keys

    out = ["Summary fields the report reads (write them into these JSON files; dotted = nested):"]
    for path, keys in summary_keys().items():
        out.append(f"  {path}")
        out += [f"    {k}" for k in keys]
    out.append("")
    out.append("All metric keys:")
    out += [f"  {m.key:<55} {m.artifact}" for m in REGISTRY.values()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _seed_config(args) -> int:
    import yaml

    from rock.atomic import write_text
    from rock.config import stage_config, validate_config
    from rock.report.seeds import seed_config

    cfg = seed_config(stage_config(args), args.seed, args.run_dir)
    validate_config(cfg, str(args.out))   # as every stage will read it
    write_text(args.out, yaml.safe_dump(cfg, sort_keys=False))
    log.info("wrote %s (seed %d, run_dir %s)", args.out, args.seed, args.run_dir)
    return 0


def _seeds(args) -> int:
    from rock.report.seeds import summarize

    table = summarize(args.run_dirs)
    text = ("toy seeds: direction claims agreeing and planted ground truth recovered per run "
            "(rock.report.seeds)\n" + table.drop(columns="ok").to_markdown(index=False) + "\n")
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    bad = table[~table["ok"]]
    if len(bad):
        log.error("%d of %d seed run(s) miss a direction claim or a planted truth: %s",
                  len(bad), len(table), ", ".join(bad["run_dir"]))
        return 1
    return 0
