"""``index.html``: the measured lecture table as one self-contained page (issue 23).

Reads nothing but the table (``recipe.json``'s dict), so ``jaxopt-lectures report DIR``
rebuilds the page without training. Everything is inline: the CSS, and every figure as an
SVG drawn by matplotlib's SVG backend (text kept as text). No script, font or image is fetched.

At the top the lecture's concluding table as the lecture draws it (方法名 / 改了那一個步驟 /
帶來什麼好處) with one mark per half (symbol, word and colour: never colour alone); then a
forest plot of every half; then one section per row (anchor ``row-<name>``) with the quote,
the claim, the design, the η grids, the budget and regime check, the curves, time to target,
the verdict with its statistic, the other settings reported beside, and the command that
reruns the row; a footer says how to read the statistics.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

TEMPLATE = "report.html.j2"

#: The lecture table's three steps (seed 000 lines 1951-1987; see :mod:`.claims.quotes`):
#: the lecture's words and an English gloss.
STEP_NAMES = {
    "loss": ("我要找什麼", "what we want (the loss and the data)"),
    "function_set": ("改變函式搜尋範圍", "change the set of functions searched"),
    "optimization": ("找最好的函式", "find the best function"),
}
#: Each half's result: symbol, word, CSS class (colour). A row's status overrides it where the
#: row is not counted (regime not reached, demonstration, ...).
RESULT_MARKS = {
    "holds": ("✓", "holds", "good"),
    "fails": ("✗", "fails", "bad"),
    "inconclusive": ("…", "inconclusive", "open"),
    "demonstration": ("▸", "demonstration", "demo"),
}
LABEL_MARKS = {
    "yes": ("✓", "yes", "good"),
    "no": ("✗", "no", "bad"),
    "partly": ("~", "partly", "mixed"),
    "inconclusive": ("…", "inconclusive", "open"),
    "regime not reached": ("?", "regime not reached", "regime"),
    "demonstration": ("▸", "demonstration", "demo"),
    "baseline never trains": ("!", "baseline never trains", "bad"),
    "not testable": ("·", "not testable", "open"),
}
#: Row labels under which no half is counted: the half's mark says so (its result stays beside).
ROW_STATUS = ("regime not reached", "demonstration", "baseline never trains", "not testable")
HALF_ORDER = ("optimization", "measure", "generalization")
COLORS = {"good": "#1a7f37", "bad": "#c62828", "open": "#6e7781", "regime": "#b35900", "demo": "#1f5fbf"}
ARM_STYLE = {"without": ("#6e7781", "--", "without"), "with": ("#1f5fbf", "-", "with")}
LR = "optimizer.learning_rate"


# ---------------------------------------------------------------------------------------
# Numbers as printed (the tests compare them with recipe.json's).


def fmt(x, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``n/a`` for None or non-finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:.0f}"  # 252 s, 4130 s: whole numbers, never 4.13e+03
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"


def effect(half: dict) -> str:
    """``×0.475`` for ratios, ``+2.10 pt`` for points (the half's estimate as printed)."""
    est = half.get("estimate")
    if est is None:
        return "n/a"
    return f"×{fmt(est)}" if half.get("scale") == "ratio" else f"{est:+.2f} pt"


def interval(half: dict) -> str:
    lo, hi = half.get("interval") or (None, None)
    if half.get("scale") == "ratio":
        return f"[{fmt(lo)}, {fmt(hi)}]"
    return f"[{'n/a' if lo is None else f'{lo:+.2f}'}, {'n/a' if hi is None else f'{hi:+.2f}'}]"


def margin_text(half: dict) -> str:
    m = half.get("margin")
    if m is None:
        return "n/a"
    if half.get("scale") == "ratio":
        return f"×{fmt(1 / m)} … ×{fmt(m)}"
    return f"±{fmt(m)} pt"


def config_text(config: dict | None) -> str:
    if not config:
        return "(fixed)"
    return ", ".join(f"{k.split('.')[-1]} = {fmt(v) if isinstance(v, int | float) else v}" for k, v in config.items())


def claim_word(name: str, half: dict) -> str:
    """What the lecture says this half does, in the table's words (帶來什麼好處)."""
    kind, better = half.get("kind"), half.get("better")
    if name == "measure":
        metric = half.get("metric", "the measure")
        return f"{'higher' if better == 'higher' else 'lower'} {metric}" if kind == "superiority" else metric
    what = name.capitalize()
    if kind == "superiority":
        return f"{'Worse' if better == 'higher' else 'Better'} {what}"
    if kind == "non_superiority":
        return f"not for {what}"
    if kind == "equivalence":
        return f"same {what} (a tie)"
    return f"{what} (shown)"


def _short(text: str, n: int = 34) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def claim_short(half: dict) -> str:
    """The direction the half is tested in, for the forest plot's labels."""
    kind, better = half.get("kind"), half.get("better")
    if kind == "superiority":
        return "claims lower" if better == "lower" else "claims higher"
    if kind == "non_superiority":
        return "claims not lower" if better == "lower" else "claims not higher"
    if kind == "equivalence":
        return "claims equal"
    return "shown"


def half_mark(row: dict, half: dict) -> dict:
    """The mark of one half in the table: its result, or the row's status where it is not counted."""
    if row["label"] in ROW_STATUS:
        sym, word, cls = LABEL_MARKS[row["label"]]
        return {"sym": sym, "word": word, "cls": cls, "measured": half.get("result")}
    sym, word, cls = RESULT_MARKS.get(str(half.get("result")), ("·", str(half.get("result")), "open"))
    return {"sym": sym, "word": word, "cls": cls, "measured": None}


def rerun_command(table: dict, row: dict) -> str:
    cmd = f"jaxopt-lectures recipe --only {row['name']}"
    if table.get("quick"):
        cmd += " --quick"
    seeds = [int(s) for s in table.get("seeds", [])]
    default = list(range(3 if table.get("quick") else 5))
    if seeds and seeds != default:
        cmd += " --seeds " + (str(len(seeds)) if seeds == list(range(len(seeds))) else ",".join(map(str, seeds)))
    return cmd


# ---------------------------------------------------------------------------------------
# Figures: matplotlib's SVG backend, one small figure per picture (a phone stacks them).


def _svg(fig, salt: str, label: str) -> str:
    """The figure as an inline ``<svg>``: text kept as text, ids unique per figure (the salt),
    no date, and no fixed width/height (CSS scales it to the column)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg") :], flags=re.S)
    text = _own_ids(text, re.sub(r"[^A-Za-z0-9_-]", "_", salt) + "-")
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    head += f' class="fig" role="img" aria-label="{safe}"'
    return head + text[head_end:]


def _own_ids(svg: str, prefix: str) -> str:
    """Prefix every id of one figure (and the references to it): matplotlib numbers its groups
    ``figure_1``, ``axes_1``, ... in every figure, and ids must be unique in the page."""
    ids = set(re.findall(r'\sid="([^"]+)"', svg))
    svg = re.sub(r'(\sid=")([^"]+)"', lambda m: f'{m[1]}{prefix}{m[2]}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m[1]})" if m[1] in ids else m[0], svg)
    return re.sub(r'(xlink:href|href)="#([^"]+)"', lambda m: f'{m[1]}="#{prefix}{m[2]}"' if m[2] in ids else m[0], svg)


def _figure(w: float, h: float, margins: dict | None = None):
    """A figure with fixed margins (a layout engine measuring every label costs most of the
    time of 170 small figures)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    fig.subplots_adjust(**(margins or {"left": 0.16, "right": 0.97, "bottom": 0.17, "top": 0.89}))
    return fig


def _log(ax, which: str, values=()) -> None:
    """A log scale with plain tick labels (0.2, 1, 5: no mathtext, which is slow to lay out)
    and no minor ticks; at most 6 distinct ``values`` (a grid) are the ticks themselves."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    grid = sorted({v for v in values if v is not None and math.isfinite(v) and v > 0})
    if 0 < len(grid) <= 6:
        axis.set_major_locator(FixedLocator(grid))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _wide(values) -> bool:
    """Positive values spanning more than a factor 3: worth a log axis."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 3


def _style(ax) -> None:
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color="0.92", lw=0.6)
    ax.set_axisbelow(True)


def _finite(xs) -> list[float]:
    return [math.nan if v is None else float(v) for v in xs]


def _positive(xs) -> bool:
    vals = [v for v in xs if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0


def forest_plot(table: dict) -> str:
    """Every half: the estimate and its 95 % interval on the verdict's scale (ratio on a log
    axis, points on a linear one), the margin as a grey band, marker and colour by result (the
    result also written at the right), each label linking to its row's section."""
    halves = [(r, k, r["halves"][k]) for r in table["rows"] for k in HALF_ORDER if k in r["halves"]]
    scales = [s for s in ("ratio", "points") if any(h.get("scale") == s for _, _, h in halves)] or ["ratio"]
    parts = []
    for scale in scales:
        items = [(r, k, h) for r, k, h in halves if h.get("scale") == scale]
        parts.append(_forest_panel(items, scale))
    return "\n".join(parts)


def _forest_panel(items: list, scale: str) -> str:
    n = max(len(items), 1)
    labels = [f"{_short(r['technique'])} · {k} ({claim_short(h)})" for r, k, h in items]
    left = min(0.075 * max([len(s) for s in labels] + [10]) + 0.2, 4.4)  # inches: ~0.075 per character at 8 pt
    width, height = left + 4.6, 0.25 * n + 1.4
    margins = {"left": left / width, "right": 1 - 1.5 / width, "bottom": 1.15 / height, "top": 1 - 0.1 / height}
    fig = _figure(width, height, margins)
    ax = fig.add_subplot()
    ratio = scale == "ratio"
    lim_lo, lim_hi = (1 / 50, 50) if ratio else (-100.0, 100.0)
    ends = []
    markers = {"holds": "o", "fails": "X", "inconclusive": "o", "demonstration": "D"}
    for y, (r, _k, h) in enumerate(items):
        m = float(h.get("margin") or (1.0 if ratio else 0.0))
        band = (1 / m, m) if ratio else (-m, m)
        ax.fill_betweenx([y - 0.42, y + 0.42], *band, color="0.88", lw=0, zorder=0)
        est = h.get("estimate")
        cls = half_mark(r, h)["cls"]
        color = COLORS[cls]
        result = h.get("result")
        if est is None:
            ax.text(1.0 if ratio else 0.0, y, "n/a", fontsize=7, va="center", ha="center", color=color)
        else:
            lo, hi = (est if v is None else v for v in h.get("interval") or (est, est))
            ends += [lo, hi, est]
            clo, chi = max(lo, lim_lo), min(hi, lim_hi)
            ax.plot([clo, chi], [y, y], color=color, lw=1.6, solid_capstyle="butt")
            filled = result != "inconclusive"
            ax.plot(
                [min(max(est, lim_lo), lim_hi)],
                [y],
                marker=markers.get(result, "o"),
                ms=5,
                color=color,
                mfc=color if filled else "white",
                mew=1.3,
            )
        word = half_mark(r, h)["word"]
        ax.text(1.01, y, word, transform=ax.get_yaxis_transform(), fontsize=8, va="center", color=color)
    if ratio:
        _log(ax, "x")
        finite = [v for v in ends if v is not None and math.isfinite(v) and v > 0]
        lo = max(min(finite + [1 / 1.5]) / 1.2, lim_lo)
        hi = min(max(finite + [1.5]) * 1.2, lim_hi)
        ax.set_xlim(lo, hi)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xlabel("ratio with / without, 95% interval (log scale; left of 1: lower with the technique)", fontsize=8)
    else:
        finite = [v for v in ends if v is not None and math.isfinite(v)]
        pad = max([abs(v) for v in finite] + [2.0]) * 1.15
        ax.set_xlim(-pad, pad)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_xlabel("difference with − without, percentage points, 95% interval", fontsize=8)
    ax.set_yticks(range(len(items)), labels, fontsize=8)
    for t, (r, _k, _h) in zip(ax.get_yticklabels(), items):
        t.set_url(f"#row-{r['name']}")
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="x", color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend = [
        Line2D([], [], color=COLORS["good"], marker="o", lw=1.6, label="✓ holds"),
        Line2D([], [], color=COLORS["bad"], marker="X", lw=1.6, label="✗ fails"),
        Line2D([], [], color=COLORS["open"], marker="o", mfc="white", lw=1.6, label="… inconclusive"),
        Line2D([], [], color=COLORS["regime"], marker="o", lw=1.6, label="? regime not reached (not counted)"),
        Line2D([], [], color=COLORS["demo"], marker="o", lw=1.6, label="▸ demonstration (not counted)"),
        Patch(color="0.88", label="margin: a change this small does not count"),
    ]
    fig.legend(handles=legend, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)
    return _svg(fig, f"forest-{scale}", f"forest plot of every half on the {scale} scale")


def _eta_x(points: list[dict]) -> tuple[list, str, bool]:
    """The x of an η-curve: the learning rate (or the one knob that varies), else the index."""
    keys = sorted({k for p in points for k in p["config"]})
    varying = [k for k in keys if len({repr(p["config"].get(k)) for p in points}) > 1]
    key = LR if LR in varying or (not varying and LR in keys) else (varying[0] if len(varying) == 1 else None)
    if key is not None and all(isinstance(p["config"].get(key), int | float) for p in points):
        xs = [float(p["config"][key]) for p in points]
        return xs, key.split(".")[-1], _positive(xs)
    return list(range(len(points))), "grid point", False


def chosen_indices(row: dict, arm: str, halves=HALF_ORDER) -> dict[int, list[str]]:
    """Which grid points of ``arm`` the ``halves`` picked (index -> what picked it)."""
    out: dict[int, list[str]] = {}
    points = row["arms"][arm]["eta_curve"]
    for name in halves:
        h = row["halves"].get(name)
        if not h:
            continue
        picks = []
        if "time_to_target" in h:
            picks.append(("fastest to target", h["time_to_target"][arm].get("chosen")))
        elif (h.get("chosen") or {}).get(arm) is not None:
            picks.append((f"picked for {name}", h["chosen"][arm]))
        for why, cfg in picks:
            for i, p in enumerate(points):
                if p["config"] == cfg:
                    out.setdefault(i, []).append(why)
    return out


def picks(row: dict, arm: str, split: str) -> dict[int, list[str]]:
    """The points to ring on ``split``'s grid plot: those the half judged on it picked (the
    training plot: optimization or the measure; validation: generalization), else every pick."""
    halves = ("generalization",) if split == "val" else ("optimization", "measure")
    return chosen_indices(row, arm, halves) or chosen_indices(row, arm)


def eta_plot(row: dict, split: str) -> str:
    """Final ``split`` loss at every grid point of both arms, the picked points ringed."""
    fig = _figure(4.3, 2.7)
    ax = fig.add_subplot()
    _style(ax)
    logx = False
    xlabel = "grid point"
    all_x, all_y = [], []
    for arm, (color, ls, name) in ARM_STYLE.items():
        points = row["arms"][arm]["eta_curve"]
        if not points:
            continue
        xs, xlabel, lx = _eta_x(points)
        logx = logx or lx
        ys = _finite(p.get(split) for p in points)
        all_x += xs
        all_y += ys
        ax.plot(xs, ys, ls, color=color, marker="o", ms=4, lw=1.3, label=name)
        for i in picks(row, arm, split):
            if i < len(xs) and math.isfinite(ys[i]):
                ax.plot([xs[i]], [ys[i]], "o", ms=10, mfc="none", mec=color, mew=1.6)
                if len(points) > 1 and i in (0, len(points) - 1):  # the best may lie outside the grid
                    ax.annotate(
                        "⚑ edge",
                        (xs[i], ys[i]),
                        xytext=(0, 8),
                        textcoords="offset points",
                        fontsize=7,
                        ha="center",
                        color=COLORS["regime"],
                    )
        for i, p in enumerate(points):
            if p.get("diverged"):
                ax.annotate(
                    f"{p['diverged']} diverged", (xs[i], 0.02), xycoords=("data", "axes fraction"), fontsize=6.5
                )
    if logx:
        _log(ax, "x", all_x)
    if _wide(all_y):
        _log(ax, "y")
    what = {"train": "training", "val": "validation", "test": "test"}[split]
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(f"final {what} loss", fontsize=8)
    ax.set_title(f"{what} loss over the grid (ringed: picked)", fontsize=8.5)
    ax.legend(fontsize=7)
    return _svg(fig, f"eta-{row['name']}-{split}", f"{row['technique']}: final {what} loss at every grid point")


def curve_plot(row: dict, split: str) -> str:
    """Loss per epoch of both arms at their picked point: mean (thick), ± 1 sd band, and each
    seed as a thin line when the table has them (``curves[arm][split]["seeds"]``)."""
    import numpy as np

    fig = _figure(4.3, 2.7)
    ax = fig.add_subplot()
    _style(ax)
    values = []
    upe = row.get("updates_per_epoch") or {}
    for arm, (color, ls, name) in ARM_STYLE.items():
        curve = (row["curves"].get(arm) or {}).get(split)
        if not curve:
            continue
        m = np.array(_finite(curve.get("mean", [])))
        s = np.array(_finite(curve.get("std", [0.0] * len(m))))
        step = upe.get(arm) or 1
        x = np.arange(1, len(m) + 1) * step
        for seed_curve in curve.get("seeds") or []:
            ys = _finite(seed_curve)
            ax.plot(np.arange(1, len(ys) + 1) * step, ys, ls, color=color, lw=0.6, alpha=0.45)
        ax.plot(x, m, ls, color=color, lw=1.8, marker="o" if len(m) <= 2 else None, ms=4, label=name)
        if len(s) == len(m):
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.13, lw=0)
        values += m.tolist()
    if _wide(values):
        _log(ax, "y")
    what = {"train": "training", "val": "validation"}[split]
    ax.set_xlabel("updates" if upe else "epoch", fontsize=8)
    ax.set_ylabel(f"{what} loss", fontsize=8)
    ax.set_title(f"{what} loss (mean ± 1 sd over seeds)", fontsize=8.5)
    ax.legend(fontsize=7)
    return _svg(fig, f"curve-{row['name']}-{split}", f"{row['technique']}: {what} loss per update, both arms")


def conditioning_rows(table: dict) -> list[dict]:
    """The rows judged where the inputs are ill-conditioned and measured in other settings beside
    (the optimizer rows, issue 24): the ones :func:`conditioning_plot` draws."""
    return [r for r in table["rows"] if (r.get("regime") or {}).get("check") == "ill_conditioned" and r.get("settings")]


def conditioning_plot(table: dict) -> str:
    """The lecture's picture of adaptive step sizes: the training loss per update of every
    optimizer row's two arms (SGD and the optimizer; for Nesterov, classic momentum and Nesterov),
    each at its own picked η, one panel per setting (the judged badly scaled inputs first, then
    the settings reported beside, e.g. the standardised control). Empty when no such row."""
    import numpy as np

    rows = conditioning_rows(table)
    if not rows:
        return ""
    panels = [rows[0].get("setting") or "judged setting", *rows[0]["settings"]]
    fig = _figure(3.3 * len(panels), 3.0, {"left": 0.07, "right": 0.99, "bottom": 0.16, "top": 0.86, "wspace": 0.25})
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    palette = ["#1f5fbf", "#c62828", "#1a7f37", "#b35900", "#7b3fbf", "#00838f"]
    values = []
    for ax, panel in zip(axes, panels):
        _style(ax)
        drawn: set[str] = set()
        for i, row in enumerate(rows):
            curves = row["curves"] if panel == panels[0] else (row["settings"].get(panel) or {}).get("curves") or {}
            upe = row.get("updates_per_epoch") or {}
            for arm in ("without", "with"):
                label = row["name"]
                if arm == "without":  # a baseline several rows share (tuned SGD) is drawn once
                    optimizer = ((row["arms"].get("without") or {}).get("setting") or {}).get("optimizer") or {}
                    key = json.dumps(optimizer, sort_keys=True)
                    if key in drawn:
                        continue
                    drawn.add(key)
                    label = optimizer.get("name", f"{row['name']}: without")
                    if optimizer.get("momentum"):
                        label += f" + momentum {optimizer['momentum']}"
                half = ((row if panel == panels[0] else row["settings"].get(panel) or {}).get("halves") or {}).get(
                    "optimization"
                ) or {}
                fastest = ((half.get("time_to_target") or {}).get(arm) or {}).get("train_curve")
                # at the arm's fastest η for the training target (the optimization half's pick), else
                # at its validation pick (recipe.json files made before the fastest point's curve was kept)
                mean = _finite(fastest or ((curves.get(arm) or {}).get("train") or {}).get("mean", []))
                if not mean:
                    continue
                x = np.arange(1, len(mean) + 1) * (upe.get(arm) or 1)
                style = "--" if arm == "without" else "-"
                color = "#6e7781" if arm == "without" else palette[i % len(palette)]
                ax.plot(x, mean, style, color=color, lw=1.4, label=label)
                values += mean
        ax.set_title(panel, fontsize=8.5)
        ax.set_xlabel("updates", fontsize=8)
    if _wide(values) and _positive(values):
        for ax in axes:
            _log(ax, "y")
    axes[0].set_ylabel("training loss (mean over seeds)", fontsize=8)
    axes[-1].legend(fontsize=6.5)
    return _svg(fig, "conditioning", "training loss per update of each optimizer and SGD, per setting")


# ---------------------------------------------------------------------------------------
# The page.


def _half_view(row: dict, name: str, h: dict) -> dict:
    view = {
        "name": name,
        "h": h,
        "claim": claim_word(name, h),
        "mark": half_mark(row, h),
        "effect": effect(h),
        "interval": interval(h),
        "margin": margin_text(h),
        "estimate_repr": repr(h.get("estimate")),
        "p_value": fmt(h.get("p_value")),
        "p_holds": fmt(h.get("p_holds")),
        "p_fails": fmt(h.get("p_fails")),
        "unadjusted": h.get("result_unadjusted"),
    }
    if "time_to_target" in h:
        ttt = []
        for arm in ("without", "with"):
            t = h["time_to_target"][arm]
            points = row["arms"][arm]["eta_curve"]
            grid = []
            for i, per_seed in enumerate(t.get("per_point") or []):
                cfg = points[i]["config"] if i < len(points) else {}
                grid.append(
                    {
                        "config": config_text(cfg),
                        "chosen": cfg == t.get("chosen"),
                        "per_seed": ["—" if u is None else str(u) for u in per_seed],
                    }
                )
            target = t.get("target") or {}
            metric = {"train": "training loss ≤", "train_acc": "training accuracy ≥"}.get(
                str(target.get("metric")), f"{target.get('metric')} at"
            )
            ttt.append(
                {
                    "arm": arm,
                    "target": f"{metric} {fmt(target.get('level'), 4)}",
                    "chosen": config_text(t.get("chosen")),
                    "updates": ["not reached" if u is None else str(u) for u in t.get("updates", [])],
                    "reached": t.get("reached"),
                    "n": len(t.get("updates", [])),
                    "cap": t.get("cap"),
                    "grid": grid,
                }
            )
        view["ttt"] = ttt
    te = h.get("test_error")
    if te:
        lo, hi = te.get("interval") or (None, None)
        view["test_error"] = {
            "estimate": "n/a" if te.get("estimate_points") is None else f"{te['estimate_points']:+.2f} pt",
            "interval": f"[{'n/a' if lo is None else f'{lo:+.2f}'}, {'n/a' if hi is None else f'{hi:+.2f}'}]",
            "p_value": fmt(te.get("p_value")),
            "tuned_on": te.get("tuned_on", ""),
        }
    if h.get("simple_effects"):  # an interaction row: the knob's effect at each level of the second factor
        view["simple_effects"] = [
            {
                "level": s.get("level", ""),
                "effect": effect({**s, "scale": "ratio"}),
                "interval": interval({**s, "scale": "ratio"}),
                "p_value": fmt(s.get("p_value")),
                "points": "n/a"
                if (s.get("test_error") or {}).get("estimate_points") is None
                else f"{s['test_error']['estimate_points']:+.2f} pt",
            }
            for s in h["simple_effects"]
        ]
    view.update(_matched_view(h))
    ftl = h.get("final_train_loss")
    if ftl:
        view["final_train_loss"] = {
            "estimate": f"×{fmt(ftl.get('estimate'))}",
            "interval": f"[{fmt((ftl.get('interval') or [None, None])[0])}, {fmt((ftl.get('interval') or [None, None])[1])}]",
            "p_value": fmt(ftl.get("p_value")),
        }
    if h.get("chosen"):
        view["chosen"] = {arm: config_text(c) for arm, c in h["chosen"].items()}
    edges = {arm: ks for arm, ks in (h.get("grid_edge") or {}).items() if ks}
    view["grid_edge"] = {arm: ", ".join(k.split(".")[-1] for k in ks) for arm, ks in edges.items()}
    return view


def _matched_view(h: dict) -> dict:
    """A "not better" half's readings: at matched training loss (the judged one, with the matched
    epochs per seed) and at the end of the runs (literal), or why it fell back to the latter."""
    matched, literal = h.get("matched"), h.get("literal")
    if not matched or not literal:
        return {}
    lo, hi = literal.get("interval") or (None, None)
    out = {
        "literal": {
            "metric": literal.get("metric", ""),
            "estimate": f"×{fmt(literal.get('estimate'))}",
            "interval": f"[{fmt(lo)}, {fmt(hi)}]",
            "p_value": fmt(literal.get("p_value")),
            "result": literal.get("result", ""),
        }
    }
    if matched.get("used"):
        seeds = matched.get("per_seed") or []
        out["matched"] = {
            "rule": matched.get("rule", ""),
            "epochs": ", ".join(
                f"{'—' if s['epoch']['without'] is None else s['epoch']['without'] + 1}/"
                f"{'—' if s['epoch']['with'] is None else s['epoch']['with'] + 1}"
                for s in seeds
            ),
        }
    else:
        out["matched"] = {"note": matched.get("note", "")}
    return out


def _row_view(table: dict, row: dict) -> dict:
    halves = [_half_view(row, k, row["halves"][k]) for k in HALF_ORDER if k in row["halves"]]
    arms = []
    for arm in ("without", "with"):
        points = row["arms"][arm]["eta_curve"]
        picked = chosen_indices(row, arm)
        arms.append(
            {
                "arm": arm,
                "epochs": (row.get("epochs") or {}).get(arm),
                "upe": (row.get("updates_per_epoch") or {}).get(arm),
                "fingerprint": row["arms"][arm].get("fingerprint"),
                "points": [
                    {
                        "config": config_text(p["config"]),
                        "train": fmt(p.get("train")),
                        "val": fmt(p.get("val")),
                        "test": fmt(p.get("test")),
                        "val_acc": fmt(p.get("val_acc")),
                        "test_acc": fmt(p.get("test_acc")),
                        "diverged": p.get("diverged", 0),
                        "picked": ", ".join(picked.get(i, [])),
                        "edge": bool(picked.get(i)) and len(points) > 1 and i in (0, len(points) - 1),
                    }
                    for i, p in enumerate(points)
                ],
            }
        )
    for a in arms:
        if a["epochs"] is not None and a["upe"] is not None:
            a["updates"] = a["epochs"] * a["upe"]
    settings = []
    for name, s in (row.get("settings") or {}).items():
        settings.append(
            {
                "name": name,
                "label": LABEL_MARKS.get(s.get("label"), ("·", s.get("label"), "open")),
                "halves": [
                    {
                        "name": k,
                        "effect": effect(h),
                        "interval": interval(h),
                        "mark": half_mark(s, h) if "label" in s else half_mark(row, h),
                        "metric": h.get("metric"),
                        "estimate_repr": repr(h.get("estimate")),
                    }
                    for k in HALF_ORDER
                    if (h := (s.get("halves") or {}).get(k))
                ],
                "regime": s.get("regime") or {},
                "stall": s.get("stall") or {},
                "flags": s.get("flags") or [],
            }
        )
    figures = []
    has_eta = all(row["arms"][a]["eta_curve"] for a in ("without", "with"))
    for split in ("train", "val"):
        figures.append(curve_plot(row, split))
    eta_figures = [eta_plot(row, split) for split in ("train", "val")] if has_eta else []
    return {
        "r": row,
        "anchor": f"row-{row['name']}",
        "step": STEP_NAMES.get(row["step"], (row["step"], row["step"])),
        "label": LABEL_MARKS.get(row["label"], ("·", row["label"], "open")),
        "halves": halves,
        "arms": arms,
        "settings": settings,
        "curve_figures": figures,
        "eta_figures": eta_figures,
        "rerun": rerun_command(table, row),
        "regime": row.get("regime") or {},
    }


def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("jaxopt_lectures.lab", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,  # optional fields of recipe.json read as empty
    )


def render(table: dict) -> str:
    """The page as a string (pure: reads only ``table``)."""
    from markupsafe import Markup

    rows = [_row_view(table, r) for r in table["rows"]]
    for v in rows:
        v["curve_figures"] = [Markup(f) for f in v["curve_figures"]]
        v["eta_figures"] = [Markup(f) for f in v["eta_figures"]]
    counts = table.get("labels") or {}
    return (
        _env()
        .get_template(TEMPLATE)
        .render(
            t=table,
            rows=rows,
            forest=Markup(forest_plot(table)),
            conditioning=Markup(conditioning_plot(table)),
            conditioning_detail=[
                (r["technique"], (r.get("regime") or {}).get("detail", "")) for r in conditioning_rows(table)[:1]
            ],
            # a --quick table has the optimizer rows but trains no settings beside them: say so
            conditioning_skipped=bool(table.get("quick"))
            and any((r.get("regime") or {}).get("check") == "ill_conditioned" for r in table["rows"]),
            counts=[(LABEL_MARKS.get(k, ("·", k, "open")), v) for k, v in counts.items() if v],
            null_table=table.get("null_table") or {},
            steps=STEP_NAMES,
            colors=COLORS,
            fmt=fmt,
        )
    )


def write_html(table: dict, path) -> Path:
    """Write the page for ``table`` to ``path`` (atomically) and return the path."""
    from jaxopt_lectures.lab._files import atomic_write

    text = render(table)
    return atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))
