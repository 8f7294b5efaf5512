"""``jaxopt-lectures``: the command line.

jaxopt-lectures recipe                 # the lecture's concluding table, measured (3 seeds)
jaxopt-lectures recipe --quick         # the same table on smaller budgets
jaxopt-lectures recipe --only dropout,adam --seeds 5 --out results/
jaxopt-lectures report results/        # rebuild results/index.html from results/recipe.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from jaxopt_lectures._cli_common import (
    EXIT_USAGE,
    MAX_SEED,
    MAX_SEEDS,
    Bounds,
    UsageError,
    add_number,
    check,
    check_numbers,
    writable_dir as _writable_dir,
)

#: ``recipe --seeds``: a count, or a list of seeds. A row still inconclusive adds blocks of seeds
#: ``1000 * k + seed`` (``run.extension_seeds``, k < ``stats.SEED_SCHEDULE[-1]``), which must
#: still be seeds (tests/test_reliability_v2_lab.py checks the margin).
SEED_COUNT = Bounds(1, MAX_SEEDS)
RECIPE_SEED = Bounds(0, MAX_SEED - 20_000)  # room for 19 blocks: one seed growing to a cap of 20
JOBS = Bounds(1, 64)


def _recipe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipe",
        help="measure the lecture's concluding table (technique -> step it changes -> what it buys)",
        description=(
            "Train a baseline and a variant for each technique of the lectures on the same seeds and "
            "report whether switching it on lowered the training loss (better optimization) and/or the "
            "validation loss (better generalization), and whether that agrees with the lecture. Each "
            "finished row is saved at once; rerunning the same command resumes where it stopped."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer epochs and 3 seeds, the full table's grids, no extra seed blocks and none of the other settings "
        "reported beside a row: it may only be less decided (more inconclusive) than the full table",
    )
    p.add_argument(
        "--only", default="", metavar="NAMES", help="comma-separated technique names (default: all; see --list)"
    )
    p.add_argument(
        "--seeds",
        default=None,
        metavar="N|LIST",
        help=f"a count N (seeds 0..N-1; default 5, or 3 with --quick; N {SEED_COUNT.describe()}) or a "
        f"comma-separated list of at most {MAX_SEEDS} distinct seeds ({RECIPE_SEED.describe()}), "
        "e.g. 5,6,7,8,9 to rerun the table on a disjoint seed set; each seed has its own data split",
    )
    p.add_argument(
        "--explain",
        default=None,
        metavar="NAME",
        help="print one row's quote, design, regime check, grids, seeds and budget, and exit",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="where recipe.md/.json/.csv/.png and the per-row files go (default: results/)",
    )
    add_number(
        p,
        "--jobs",
        JOBS,
        min(os.cpu_count() or 1, 4),
        "rows trained at once in worker processes (default: cores, at most 4); compiling "
        "is single-threaded, so J = cores finishes sooner",
        metavar="J",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list the techniques and exit")
    p.set_defaults(run=_run_recipe)


def parse_seeds(text: str | None, quick: bool) -> list[int]:
    """``--seeds``: a count N (seeds 0..N-1) or a comma-separated list of distinct seeds, each
    count and seed checked against its range (:data:`SEED_COUNT`, :data:`RECIPE_SEED`)."""
    if text is None:
        return list(range(3 if quick else 5))
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--seeds {text!r} is not a count or a comma-separated list of integers") from None
    if len(values) == 1 and "," not in str(text):
        check("seeds", values[0], SEED_COUNT)
        return list(range(values[0]))
    if len(set(values)) != len(values):
        raise UsageError(f"--seeds {text!r}: a list needs distinct seeds")
    if len(values) > MAX_SEEDS:
        raise UsageError(f"--seeds lists {len(values)} seeds; allowed: at most {MAX_SEEDS}")
    for v in values:
        check("seeds", v, RECIPE_SEED, why="a seed of the list")
    return values


def _run_recipe(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds, args.quick)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if args.only.strip() and not names:
        raise UsageError(f"--only {args.only!r} names no technique; leave it out for all, or see --list")
    from jaxopt_lectures.lab import recipe, report  # Flax and the lab load only here
    from jaxopt_lectures.lab.claims.quotes import CLAIMS

    if args.list:
        for e in recipe.REGISTRY.values():
            c = CLAIMS[e.name]
            print(f"{e.name:24s} {c.technique}  [{recipe.STEPS[c.step]}; {c.source}: {c.statement}]")
        return 0
    if args.explain is not None:
        try:
            (entry,) = recipe.select([args.explain])
        except KeyError as e:
            raise UsageError(str(e.args[0])) from None
        print(recipe.explain(entry, seeds, args.quick), end="")
        return 0
    try:
        entries = recipe.select(names)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    out = _writable_dir(args.out)
    for name in ("recipe.md", "recipe.json", "recipe.csv", "recipe.png", "recipe_curves.png", "index.html"):
        if (out / name).is_dir():  # audit case 78: found before training, not after
            raise UsageError(f"--out {str(out)!r}: {name} there is a directory; move it or choose another --out")
    from jaxopt_lectures.lab import enable_compilation_cache

    # On a GPU, JAX grabs 75% of its memory per process by default: with --jobs workers (and
    # this process) that is an out-of-memory crash. Allocate on demand instead (workers
    # inherit the environment); a value the user set is kept.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    enable_compilation_cache()
    from jaxopt_lectures.lab import run

    print(f"running on {_device_line()}", flush=True)

    os.environ.setdefault(run.ARM_CACHE_ENV, str(out / "arms"))  # rows sharing an arm train it once
    table = report.run_table(entries, seeds, args.quick, out, progress=not args.no_progress, jobs=args.jobs)
    try:
        paths = report.write_reports(table, out)
    except OSError as e:  # a full disk or read-only --out (audit v2 L05): the table is still shown
        print()
        print(report.terminal(table), end="")
        print(f"jaxopt-lectures recipe: error: could not write the reports in {out} ({e})", file=sys.stderr)
        return 1
    print()
    print(report.terminal(table), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild DIR/index.html from DIR/recipe.json (no training)",
        description=(
            "Rebuild the HTML report of a finished `jaxopt-lectures recipe` run: reads DIR/recipe.json "
            "and nothing else, writes DIR/index.html (one self-contained page: open it offline)."
        ),
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="a results folder holding recipe.json (e.g. results/)")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    import json

    source = args.dir / "recipe.json"
    try:
        table = json.loads(source.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{str(source)!r} not found (run `jaxopt-lectures recipe --out {args.dir}` first)") from None
    except OSError as e:
        raise UsageError(f"{str(source)!r} cannot be read ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise UsageError(f"{str(source)!r} is not valid JSON ({type(e).__name__}: {e})") from None
    from jaxopt_lectures.lab import report

    if (
        not isinstance(table, dict)
        or table.get("schema") != report.SCHEMA_VERSION
        or not isinstance(table.get("rows"), list)
    ):
        found = table.get("schema") if isinstance(table, dict) else type(table).__name__
        raise UsageError(
            f"{str(source)!r} is not a recipe table of schema version {report.SCHEMA_VERSION} (found {found!r})"
        )
    from jaxopt_lectures.lab import html_report

    target = args.dir / "index.html"
    if target.is_dir():
        raise UsageError(f"{str(target)!r} is a directory; move it aside")
    try:
        path = html_report.write_html(table, target)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        raise UsageError(f"{str(source)!r} is not a complete recipe table ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise UsageError(f"cannot write {str(target)!r} ({e.strerror or e})") from None
    print(f"wrote {path}")
    return 0


def _device_line() -> str:
    """The backend and device the runs use, e.g. ``cpu (1 x cpu)`` or ``gpu (1 x NVIDIA H100)``."""
    import jax

    devices = jax.devices()
    return f"{jax.default_backend()} ({len(devices)} x {devices[0].device_kind}), jax {jax.__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxopt-lectures",
        description="The lectures' training tricks, measured: optimizers, regularization, architecture, data.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _recipe_parser(sub)
    _report_parser(sub)
    from jaxopt_lectures import figures_cli  # no Flax or matplotlib here: they load inside the commands

    figures_cli.register(sub)
    return parser


#: Top-level modules that only the ``[lab]`` extra installs.
LAB_MODULES = frozenset({"flax", "orbax", "sklearn", "mnist1d", "tqdm", "matplotlib", "jinja2", "markupsafe"})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_numbers(args)  # every declared CLI number, before any work
        code = _run_once_more_without_the_cache(args)
        sys.stdout.flush()  # a closed stdout fails here, inside the handlers below, not at exit
        return code
    except UsageError as e:
        print(f"jaxopt-lectures {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in LAB_MODULES:
            print(
                f"jaxopt-lectures {args.command}: needs the lab extra (missing module {e.name!r}): "
                "pip install 'jaxopt_lectures[lab]'",
                file=sys.stderr,
            )
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("\ninterrupted: finished rows are saved; rerun the same command to resume.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed by its reader (`| head`): one line, no traceback (audit v2)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        print(f"jaxopt-lectures {args.command}: stdout was closed; finished rows are saved", file=sys.stderr)
        return 1
    except (RuntimeError, AssertionError) as e:
        if not _backend_failure(e):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(
            f"jaxopt-lectures {args.command}: error: JAX could not start a backend ({type(e).__name__}"
            f"{': ' + first if first else ''}); check JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _run_once_more_without_the_cache(args: argparse.Namespace) -> int:
    """``args.run(args)``; if it fails while the lab's compilation cache is on and holds entries,
    the cache is moved aside (one warning line names both folders) and the command runs once
    more, compiling afresh (audit v2 L15: entries rotated between keys made every run fail,
    with nothing pointing at the cache). Finished rows are saved, so a rerun resumes."""
    try:
        return args.run(args)
    except (UsageError, OSError, MemoryError, ImportError):
        raise
    except Exception as e:
        if "jaxopt_lectures.lab._paths" not in sys.modules or _backend_failure(e):
            raise
        from jaxopt_lectures.lab import _paths

        moved = _paths.set_aside_compilation_cache()
        if moved is None:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:200]
        print(
            f"jaxopt-lectures {args.command}: warning: failed ({type(e).__name__}: {first}) with JAX's "
            f"compilation cache {moved[0]}, whose entries may be damaged or stale; moved it to {moved[1]} "
            "(delete it when done) and running once more with an empty cache",
            file=sys.stderr,
            flush=True,
        )
    return args.run(args)


def _backend_failure(e: BaseException) -> bool:
    """Whether ``e`` came from JAX failing to start its backend (a bad ``JAX_PLATFORMS``, a
    platform without its plugin: audit v2 L20): then asking for the devices fails too. (JAX
    filters its own frames out of tracebacks, so they cannot tell.)"""
    if "jax" not in sys.modules:
        return False
    import jax

    try:
        jax.devices()
    except Exception:  # noqa: BLE001 - any failure here is the backend's
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
