"""Run the recipe table row by row, save each row at once, and write the reports.

Every finished row goes to ``<out>/rows/<name>.json`` atomically (temp file + rename), so
a crash or Ctrl-C loses at most the row in progress; rerunning the same command skips the
rows whose fingerprint (settings, seeds, budget) matches and gives the same table.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxopt_lectures.lab import _files, recipe, verdict


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` so that readers never see it half-written (:func:`._files.atomic_write`)."""
    _files.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _row_path(out: Path, name: str) -> Path:
    return out / "rows" / f"{name}.json"


#: Keys every saved row must have to be reused (anything less is redone).
ROW_KEYS = ("name", "label", "halves", "regime", "seeds", "arms")


def load_finished(
    out: Path, entry: recipe.Entry, seeds, quick: bool, warn: Callable[[str], None] | None = None
) -> dict | None:
    """The saved row of ``entry`` if it was made with these settings, seeds, budget, package
    version and rule; ``None`` (redo the row) if it is missing, another run's, or unreadable:
    a damaged file (not UTF-8, not JSON, not an object, keys missing) gets a one-line warning."""
    path = _row_path(out, entry.name)
    if not os.path.lexists(path):
        return None
    try:  # a FIFO or device there is refused without blocking (audit v2 L08)
        row = json.loads(_files.read_bytes(path, follow=False).decode("utf-8"))
    except _files.NotARegularFile as e:
        (warn or _stderr)(f"{e}; redoing the row")
        return None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        (warn or _stderr)(f"{path}: unreadable ({type(e).__name__}); redoing the row")
        return None
    if not isinstance(row, dict) or row.get("fingerprint") != recipe.row_fingerprint(entry, seeds, quick):
        if not isinstance(row, dict):
            (warn or _stderr)(f"{path}: not a row object; redoing the row")
        return None
    missing = [k for k in ROW_KEYS if k not in row]
    if missing or row.get("name") != entry.name:
        (warn or _stderr)(f"{path}: incomplete row (missing {missing or ['name']}); redoing the row")
        return None
    return row


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def timed_run(
    entry: recipe.Entry, seeds, quick: bool, progress: bool, run_entry: Callable = recipe.run_entry, blocks: int = 1
) -> dict:
    """One row, with its wall and compile time and its fingerprint (a worker process's job);
    ``blocks`` > 1 asks for at least that many blocks of seeds (:func:`.run.run_row`)."""
    recipe.CompileTimer.install()
    t0, c0, n0 = time.perf_counter(), recipe.CompileTimer.total(), recipe.CompileTimer.count()
    row = (
        run_entry(entry, seeds, quick, progress)
        if blocks <= 1
        else run_entry(entry, seeds, quick, progress, blocks=blocks)
    )
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    row["compile_s"] = round(recipe.CompileTimer.total() - c0, 2)
    row["compiles"] = recipe.CompileTimer.count() - n0
    row["fingerprint"] = recipe.row_fingerprint(entry, seeds, quick)
    return row


def _worker_init(parent: int | None = None) -> None:
    """A worker's first act: tie its life to ``parent`` (the pid of the process that started
    it, passed by the pool as ``initargs``), then turn on the compilation cache."""
    _die_with_parent(parent)
    from jaxopt_lectures.lab import enable_compilation_cache

    enable_compilation_cache()


def _die_with_parent(parent: int | None = None, poll_s: float = 1.0) -> None:
    """A worker exits when the process that started it is gone (audit case 84: after a
    ``kill -9`` of ``recipe`` its workers were reparented and lived on, ~470 MB each).

    ``parent`` is the starter's pid as it passed it: a worker whose parent died while it was
    still importing (audit v2 L03) sees another parent already and exits at once, where
    ``os.getppid()`` read now would be the adoptive one. On Linux the kernel also sends
    SIGKILL when the parent ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread polls."""
    import threading

    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:
        os._exit(1)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread below suffices
            pass
        if os.getppid() != parent:  # died between the check and the prctl
            os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def run_table(
    entries: Sequence[recipe.Entry],
    seeds: Sequence[int],
    quick: bool,
    out: Path | None,
    progress: bool = True,
    run_entry: Callable = recipe.run_entry,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    jobs: int = 1,
) -> dict:
    """Runs (or reloads) every entry; returns the table as a JSON-ready dict.

    With ``jobs > 1`` rows run in that many worker processes at once: compiling is
    single-threaded, so on a 2-core machine two rows compile in the time of one. Each
    row's numbers do not depend on where it ran.
    """
    start = time.perf_counter()
    seeds = [int(s) for s in seeds]
    results: dict[str, dict] = {}
    pending, reused = [], 0
    for i, entry in enumerate(entries, 1):
        done = load_finished(out, entry, seeds, quick, warn=log) if out is not None else None
        if done is not None and out is not None:
            results[entry.name] = done
            reused += 1
            log(f"[{i}/{len(entries)}] {entry.name}: finished earlier, reusing {_row_path(out, entry.name)}")
        else:
            pending.append(entry)

    spent = dict.fromkeys(("compile_s", "extra_seeds_s", "settings_s", "compiles"), 0.0)

    def finish(entry: recipe.Entry, row: dict, more: bool = False) -> None:
        if out is not None:
            path = _row_path(out, entry.name)
            if path.is_dir() and not path.is_symlink():  # audit case 91: keep the training, move the obstacle
                path.rename(path.with_name(f"{path.name}.not-a-row-{os.getpid()}"))
                log(f"warning: {path} was a directory; moved it aside")
            # a full disk or unwritable rows/ (audit v2 L05, L06): the row trained, keep it and say so
            _files.write_or_keep(path, json.dumps(row, indent=1).encode("utf-8"), log, what="row")
        results[entry.name] = row
        for k in spent:
            spent[k] += row.get(k, 0.0)
        cells = row_cells(row)
        where = f"+{len(row.get('seeds', ())) - len(seeds)} seeds" if more else f"{len(results)}/{len(entries)}"
        log(
            f"[{where}] {entry.name}: optimization {cells[3]}; generalization {cells[4]} "
            f"-> {row['label']} in {row['wall_s']:.1f}s"
        )

    with contextlib.ExitStack() as stack:
        pool = None
        workers = 1  # the worker processes actually used (audit v2 L33): one row left, or --jobs 1, runs here

        def execute(todo: list[tuple[recipe.Entry, int]]) -> None:
            """Run ``(entry, blocks)`` pairs, in the worker pool when there are several."""
            nonlocal pool, workers
            if jobs <= 1 or len(todo) <= 1:
                for entry, blocks in todo:
                    log(f"    running {entry.name}: {entry.technique}")
                    finish(entry, timed_run(entry, seeds, quick, progress, run_entry, blocks), blocks > 1)
                return
            if pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                ctx = multiprocessing.get_context("spawn")  # JAX does not survive fork
                workers = min(jobs, len(todo))
                pool = stack.enter_context(
                    ProcessPoolExecutor(
                        max_workers=workers,
                        mp_context=ctx,
                        initializer=_worker_init,
                        initargs=(os.getpid(),),
                    )
                )
            _run_in_pool(pool, todo, seeds, quick, run_entry, finish, progress)

        execute([(e, 1) for e in pending])
        rows = verdict.decide_table([results[e.name] for e in entries])
        # The seed schedule decided on the corrected table (:func:`.stats.simulate_table`): a half
        # decided alone but inconclusive after the multiplicity correction gets another block of
        # seeds too, then the table is decided again, until every such row is decided or at the cap.
        asked: dict[str, int] = {}
        while more := [
            (e, r.get("seed_blocks", 1) + 1)
            for e, r in zip(entries, rows)
            if wants_more_seeds(r) and asked.get(e.name, 0) < r.get("seed_blocks", 1) + 1
        ]:
            log(
                f"    {len(more)} row(s) inconclusive after the table's correction get more seeds: "
                + ", ".join(e.name for e, _ in more)
            )
            asked.update((e.name, b) for e, b in more)  # each count asked once: no loop on a row that cannot grow
            execute(more)
            rows = verdict.decide_table([results[e.name] for e in entries])
    return {
        "schema": SCHEMA_VERSION,
        "rows": rows,
        "quick": quick,
        "seeds": list(seeds),
        "jobs": workers,
        "wall_s": round(time.perf_counter() - start, 2),
        "compile_s": round(spent["compile_s"], 2),
        "extra_seeds_s": round(spent["extra_seeds_s"], 2),
        "settings_s": round(spent["settings_s"], 2),
        "compiles": int(spent["compiles"]),
        "rows_reused": reused,
        "arms": len({a["fingerprint"] for r in rows for a in r["arms"].values()}),
        "programs": len({a["program"] for r in rows for a in r["arms"].values() if a.get("program")}),
        "labels": {k: sum(r["label"] == k for r in rows) for k in LABELS},
        "multiplicity": verdict.MULTIPLICITY,
        "null_table": verdict.null_table_counts(rows),
        "rule": recipe.RULE,
    }


def wants_more_seeds(row: dict) -> bool:
    """Does this (table-decided) row get another block of seeds? Yes when it takes more
    (``extendable``, set by :func:`.run.run_row`: below the cap, not a demonstration or measure
    row, not ``--quick``) and a half is inconclusive after the correction."""
    return bool(row.get("extendable")) and any(h.get("result") == "inconclusive" for h in row["halves"].values())


def _run_in_pool(pool, todo, seeds, quick: bool, run_entry: Callable, finish: Callable, progress: bool) -> None:
    """``todo``'s rows in the worker ``pool``, each finished (saved, logged) as it completes."""
    from concurrent.futures import FIRST_COMPLETED, wait

    entries = [e for e, _ in todo]
    blocks = dict((e.name, b) for e, b in todo)
    order = recipe.dispatch_order(entries, seeds, quick) if run_entry is recipe.run_entry else entries
    futures = {pool.submit(timed_run, e, seeds, quick, False, run_entry, blocks[e.name]): e for e in order}
    bar = _bar(len(todo), progress)
    try:
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in done:
                e = futures[fut]
                finish(e, fut.result(), blocks[e.name] > 1)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(e.name)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="techniques", unit="row")


# ---------------------------------------------------------------------------------------
# Formatting.

#: The version of recipe.json's layout (docs/recipe-json.md; tests/test_lab_schema.py checks it).
SCHEMA_VERSION = 2
COLUMNS = (
    "technique",
    "step",
    "lecture's claim",
    "optimization: effect [95% interval] -> result",
    "generalization: test CE [95% interval] -> result; test error",
    "regime",
    "label",
    "seeds",
)
LABELS = verdict.LABELS


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _effect(half: dict) -> str:
    """``x0.82 [0.79, 0.85]`` for ratios, ``+2.1 pt [0.4, 3.8]`` for points."""
    est, (lo, hi) = half["estimate"], half["interval"]
    if half["scale"] == "ratio":
        return f"x{_num(est, 2)} [{_num(lo, 2)}, {_num(hi, 2)}]"
    return f"{est:+.1f} pt [{_num(lo, 1)}, {_num(hi, 1)}]" if est is not None else "n/a"


def _half_cell(half: dict | None) -> str:
    if half is None:
        return "-"
    text = f"{half['metric']}: {_effect(half)} -> {half['result']}"
    if "time_to_target" in half:
        t = half["time_to_target"]
        n = len(t["without"]["updates"])
        text += f" (reached {t['without']['reached']}/{n} vs {t['with']['reached']}/{n})"
    if "test_error" in half and half["test_error"]["estimate_points"] is not None:
        e = half["test_error"]
        lo, hi = e["interval"]
        text += f"; accuracy {e['estimate_points']:+.1f} pt [{_num(lo, 1)}, {_num(hi, 1)}]"
    return text + _simple_effects_text(half) + _literal_note(half)


def _simple_effects_text(half: dict) -> str:
    """An interaction half's simple effects: ``; with/without under A x0.86 [..], +6.0 pt; under B ...``."""
    parts = []
    for s in half.get("simple_effects") or ():
        pts = s["test_error"]["estimate_points"]
        parts.append(
            f"under {s['level']} {_effect({**s, 'scale': 'ratio'})}" + ("" if pts is None else f", {pts:+.1f} pt")
        )
    return "; with/without " + "; ".join(parts) if parts else ""


def _literal_note(half: dict) -> str:
    """A "not better" half's end-of-run reading beside its matched-training-loss one, or the
    word that the arms had no test curves to match on."""
    matched, literal = half.get("matched"), half.get("literal")
    if not matched or not literal:
        return ""
    if not matched.get("used"):
        return "; not at matched training loss (no per-epoch test curves)"
    lit = {"scale": "ratio", "estimate": literal["estimate"], "interval": literal["interval"]}
    return f"; at the end of the runs {_effect(lit)}: {literal['result']}"


def _regime(row: dict) -> str:
    r = row["regime"]
    return "-" if r["reached"] is None else ("reached" if r["reached"] else "not reached")


def row_cells(row: dict) -> list[str]:
    claim = row["claim"] + ("" if row["source"] == "lecture" else f" [{row['source']}]")
    label = row["label"] + (f" ({'; '.join(row['flags'])})" if row.get("flags") else "")
    halves = row["halves"]
    first = halves.get("optimization") or halves.get("measure")
    return [
        row["technique"],
        row["step"],
        claim,
        _half_cell(first),
        _half_cell(halves.get("generalization")),
        _regime(row),
        label,
        str(len(row["seeds"])),
    ]


def _footer(table: dict) -> list[str]:
    rows = table["rows"]
    counts = table.get("labels") or {k: sum(r["label"] == k for r in rows) for k in LABELS}
    null = table.get("null_table") or {}
    workers = table.get("jobs", 1)  # the worker processes used (audit v2 L33)
    lines = [
        f"{len(rows)} rows, seeds {table['seeds']} (+ blocks while inconclusive), "
        f"{'quick' if table['quick'] else 'full'} budget: "
        + ", ".join(f"{counts[k]} {k}" for k in LABELS if counts.get(k))
        + ".",
        f"Multiplicity: {table.get('multiplicity', verdict.MULTIPLICITY)}."
        + (
            " A table with no real effect anywhere would read about "
            + ", ".join(f"{v:.1f} {k}" for k, v in null.items())
            + " (simulated at the measured seed spread)."
            if null
            else ""
        ),
        f"Wall time {table['wall_s']:.0f} s: compiling {table['compile_s']:.0f} s"
        + (f" summed over {workers} worker processes" if workers > 1 else " in this process (no worker processes)")
        + f", extra seed blocks {table.get('extra_seeds_s', 0):.0f} s, the rows' other settings "
        + f"{table.get('settings_s', 0):.0f} s{' (both summed over workers)' if workers > 1 else ''}; "
        + f"{table.get('compiles', 0)} XLA compilations"
        + (f"; {table['programs']} training programs for {table['arms']} arms" if table.get("programs") else "")
        + (f" ({table['rows_reused']} rows reused from an earlier run)." if table["rows_reused"] else "."),
        f"Rule: {table['rule']}.",
    ]
    missed = [r for r in rows if r["regime"]["reached"] is False]
    if missed:
        lines.append(
            "Regime not reached: "
            + "; ".join(f"{r['name']} ({r['regime']['condition']}: {r['regime']['detail']})" for r in missed)
        )
    flagged = [f"{r['name']} ({'; '.join(r['flags'])})" for r in rows if r.get("flags")]
    if flagged:
        lines.append("Flags: " + ", ".join(flagged) + ".")
    shared: dict[str, list[str]] = {}
    for r in rows:
        for a in r["arms"].values():
            shared.setdefault(a["fingerprint"], []).append(r["name"])
    groups = sorted({tuple(dict.fromkeys(v)) for v in shared.values() if len(set(v)) > 1})
    if groups:
        lines.append(
            "Rows sharing an arm (not independent confirmations): " + "; ".join(", ".join(g) for g in groups) + "."
        )
    return lines


def markdown(table: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table["rows"]:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row_cells(row)) + " |")
    return "\n".join(lines + [""] + _footer(table)) + "\n"


def terminal(table: dict) -> str:
    out = io.StringIO()
    for row in table["rows"]:
        c = row_cells(row)
        out.write(
            f"{c[0]} [{c[1]}] - {c[2]}\n    optimization   {c[3]}\n    generalization {c[4]}\n"
            f"    regime {c[5]}; seeds {c[7]}; label: {c[6]}\n"
        )
    out.write("\n" + "\n".join(_footer(table)) + "\n")
    return out.getvalue()


def to_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "name",
            "technique",
            "step",
            "source",
            "half",
            "metric",
            "kind",
            "estimate",
            "lo",
            "hi",
            "margin",
            "result",
            "seeds",
            "regime_reached",
            "label",
        ]
    )
    for r in table["rows"]:
        for half, h in r["halves"].items():
            w.writerow(
                [
                    r["name"],
                    r["technique"],
                    r["step"],
                    r["source"],
                    half,
                    h["metric"],
                    h["kind"],
                    h["estimate"],
                    *h["interval"],
                    h["margin"],
                    h["result"],
                    h["seeds"],
                    r["regime"]["reached"],
                    r["label"],
                ]
            )
    return buf.getvalue()


def write_reports(table: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "recipe.md", out / "recipe.json", out / "recipe.csv", out / "recipe.png", out / "recipe_curves.png"]
    atomic_write(paths[0], markdown(table))
    atomic_write(paths[1], json.dumps(table, indent=1))
    atomic_write(paths[2], to_csv(table))
    from jaxopt_lectures.lab import html_report, report_figures

    report_figures.plot_bars(table, paths[3])
    report_figures.plot_curves(table, paths[4])
    paths.append(html_report.write_html(table, out / "index.html"))  # the page: docs/img/report-*.png
    return paths
