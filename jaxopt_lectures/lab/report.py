"""Run the recipe table row by row, save each row at once, and write the reports.

Every finished row goes to ``<out>/rows/<name>.json`` atomically (temp file + rename), so
a crash or Ctrl-C loses at most the row in progress; rerunning the same command skips the
rows whose fingerprint (settings, seeds, budget) matches and gives the same table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from jaxopt_lectures.lab import recipe

COLUMNS = ("technique", "step", "claim", "train loss without -> with", "val loss without -> with", "verdict", "agrees")


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _row_path(out: Path, name: str) -> Path:
    return out / "rows" / f"{name}.json"


def load_finished(out: Path, entry: recipe.Entry, seeds, quick: bool) -> dict | None:
    path = _row_path(out, entry.name)
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return row if row.get("fingerprint") == entry.fingerprint(seeds, quick) else None


def timed_run(entry: recipe.Entry, seeds, quick: bool, progress: bool, run_entry: Callable = recipe.run_entry) -> dict:
    """One row, with its wall and compile time and its fingerprint (a worker process's job)."""
    recipe.CompileTimer.install()
    t0, c0 = time.perf_counter(), recipe.CompileTimer.total()
    row = run_entry(entry, seeds, quick, progress)
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    row["compile_s"] = round(recipe.CompileTimer.total() - c0, 2)
    row["fingerprint"] = entry.fingerprint(seeds, quick)
    return row


def _worker_init() -> None:
    from jaxopt_lectures.lab import enable_compilation_cache

    enable_compilation_cache()


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
        done = load_finished(out, entry, seeds, quick) if out is not None else None
        if done is not None:
            results[entry.name] = done
            reused += 1
            log(f"[{i}/{len(entries)}] {entry.name}: finished earlier, reusing {_row_path(out, entry.name)}")
        else:
            pending.append(entry)

    def finish(entry: recipe.Entry, row: dict) -> None:
        if out is not None:
            atomic_write(_row_path(out, entry.name), json.dumps(row, indent=1))
        results[entry.name] = row
        log(f"[{len(results)}/{len(entries)}] {entry.name}: {format_change(row['train'])} train, "
            f"{format_change(row['val'])} val -> {row['verdict']} (agrees: {row['agrees']}) in {row['wall_s']:.1f}s")

    if jobs <= 1 or len(pending) <= 1:
        for entry in pending:
            log(f"    running {entry.name}: {entry.technique}")
            finish(entry, timed_run(entry, seeds, quick, progress, run_entry))
    else:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = multiprocessing.get_context("spawn")  # JAX does not survive fork
        with ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=ctx,
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(timed_run, e, seeds, quick, False, run_entry): e for e in pending}
            bar = _bar(len(pending), progress)
            try:
                remaining = set(futures)
                while remaining:
                    done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                    for fut in done:
                        finish(futures[fut], fut.result())
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix_str(futures[fut].name)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                if bar is not None:
                    bar.close()
    rows = [results[e.name] for e in entries]
    agree = sum(r["agrees"] == "yes" for r in rows)
    return {
        "rows": rows,
        "quick": quick,
        "seeds": list(seeds),
        "jobs": jobs,
        "wall_s": round(time.perf_counter() - start, 2),
        "compile_s": round(sum(results[e.name]["compile_s"] for e in pending), 2),
        "rows_reused": reused,
        "agree": {"yes": agree, "mixed": sum(r["agrees"] == "mixed" for r in rows),
                  "no": sum(r["agrees"] == "no" for r in rows)},
        "rule": (f"an effect shows when the mean paired change exceeds max({recipe.REL_TOL:g} x |baseline|, "
                 f"{recipe.ABS_TOL:g}) and the seed-to-seed spread of the changes"),
    }


def _bar(total: int, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="techniques", unit="row")


# ---------------------------------------------------------------------------------------
# Formatting.


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if math.isinf(x):
        return "diverged"
    return f"{x:.3f}"


def format_change(metric: dict) -> str:
    w, v = metric["without"], metric["with"]
    return f"{_num(w['mean'])}±{_num(w['spread'])} -> {_num(v['mean'])}±{_num(v['spread'])}"


def row_cells(row: dict) -> list[str]:
    agrees = f"{row['agrees']} ({row['seeds_agreeing']}/{len(row['seeds'])} seeds)"
    verdict = row["verdict"] + (f" ({len(row['diverged'])} runs diverged)" if row.get("diverged") else "")
    return [row["technique"], row["step"], row["claim"], format_change(row["train"]),
            format_change(row["val"]), verdict, agrees]


def markdown(table: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table["rows"]:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row_cells(row)) + " |")
    a = table["agree"]
    notes = [f"- {row['technique']}: {d}" for row in table["rows"] for d in row.get("diverged", [])]
    if notes:
        lines += [""] + notes
    lines += [
        "",
        f"{len(table['rows'])} techniques, seeds {table['seeds']}, {'quick' if table['quick'] else 'full'} budget: "
        f"{a['yes']} agree with the lecture, {a['mixed']} mixed, {a['no']} do not.",
        f"Wall time {table['wall_s']:.0f} s; compiling took {table['compile_s']:.0f} s"
        + (f" summed over {table['jobs']} worker processes" if table.get("jobs", 1) > 1 else "")
        + (f" ({table['rows_reused']} rows reused from an earlier run)." if table["rows_reused"] else "."),
        f"Rule: {table['rule']}. Losses are cross-entropy on the whole split, mean ± std over seeds.",
    ]
    return "\n".join(lines) + "\n"


def terminal(table: dict) -> str:
    cells = [list(COLUMNS)] + [row_cells(r) for r in table["rows"]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    out = io.StringIO()
    for j, r in enumerate(cells):
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
        if j == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    tail = [line for line in markdown(table).splitlines() if line and not line.startswith("|")]
    out.write("\n" + "\n".join(tail) + "\n")
    return out.getvalue()


def to_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "technique", "step", "claim", "train_without", "train_with", "train_without_spread",
                "train_with_spread", "val_without", "val_with", "val_without_spread", "val_with_spread",
                "verdict", "agrees", "seeds_agreeing", "seeds", "epochs"])
    for r in table["rows"]:
        t, v = r["train"], r["val"]
        w.writerow([r["name"], r["technique"], r["step"], r["claim"], t["without"]["mean"], t["with"]["mean"],
                    t["without"]["spread"], t["with"]["spread"], v["without"]["mean"], v["with"]["mean"],
                    v["without"]["spread"], v["with"]["spread"], r["verdict"], r["agrees"], r["seeds_agreeing"],
                    len(r["seeds"]), r["epochs"]])
    return buf.getvalue()


def _relative_change(metric: dict) -> float:
    w, v = metric["without"]["mean"], metric["with"]["mean"]
    if not (math.isfinite(w) and math.isfinite(v)):
        return math.copysign(1.0, (v if math.isfinite(v) else 1e9) - (w if math.isfinite(w) else 1e9))
    return (v - w) / max(abs(w), 1e-12)


def plot(table: dict, path: Path) -> None:
    """Horizontal bars: relative change of train and val loss per technique (left = better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    names = [r["technique"] for r in rows]
    tr = [max(min(_relative_change(r["train"]), 1.0), -1.0) for r in rows]
    va = [max(min(_relative_change(r["val"]), 1.0), -1.0) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.6))
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], tr, height=0.4, label="training loss (optimization)", color="tab:blue")
    ax.barh([y + 0.2 for y in ys], va, height=0.4, label="validation loss (generalization)", color="tab:orange")
    for y, r in zip(ys, rows):
        mark = {"yes": "✓", "no": "✗", "mixed": "~"}[r["agrees"]]
        ax.text(1.02, y, f"{mark} {r['verdict']}", va="center", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("relative change of the loss with the technique on\n(left = lower = better; clipped at ±100%)")
    ax.set_title("What each technique did in this run\n(✓ agrees with the lecture, ✗ does not, ~ mixed)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_reports(table: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "recipe.md", out / "recipe.json", out / "recipe.csv", out / "recipe.png"]
    atomic_write(paths[0], markdown(table))
    atomic_write(paths[1], json.dumps(table, indent=1))
    atomic_write(paths[2], to_csv(table))
    plot(table, paths[3])
    return paths
