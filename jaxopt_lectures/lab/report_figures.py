"""The lecture table's two pictures: a forest plot of every half, and every row's curves.

``recipe.png``: per row and half, the ratio with the technique on against off (left = lower =
better) with its 95% interval and the margin, coloured by the half's result, and the row's
label. ``recipe_curves.png``: small multiples, one panel per row,
the training and validation loss per epoch of both arms (mean over seeds, band ± 1 sd).
"""

from __future__ import annotations

import math
from pathlib import Path

MARKS = {
    "yes": "✓",
    "no": "✗",
    "partly": "~",
    "inconclusive": "…",
    "regime not reached": "?",
    "demonstration": "▸",
    "baseline never trains": "!",
    "not testable": "·",
}
RESULT_COLORS = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "0.55"}


def _save(fig, path: Path) -> None:
    """Write a figure atomically (:func:`._files.atomic_write`)."""
    import matplotlib.pyplot as plt

    from jaxopt_lectures.lab._files import atomic_write

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


def plot_bars(table: dict, path: Path) -> None:
    """A forest plot: every ratio-scale half of every row, the ratio (variant / baseline) with its
    interval on a log axis, the margin's boundary as a band, coloured by the half's result (and
    named in text beside the row: colour is never the only mark)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(10, 0.36 * len(rows) + 1.8))
    offsets = {"optimization": -0.2, "measure": -0.2, "generalization": 0.2}
    for y, r in enumerate(rows):
        for name, h in r["halves"].items():
            if h["scale"] != "ratio" or h["estimate"] is None:
                continue
            lo, hi = (h["estimate"] if v is None else v for v in h["interval"])
            yy = y + offsets.get(name, 0.0)
            color = RESULT_COLORS.get(h["result"], "0.3")
            marker = "o" if name != "generalization" else "s"
            ax.plot([lo, hi], [yy, yy], color=color, lw=1.4)
            ax.plot([h["estimate"]], [yy], marker=marker, color=color, ms=4)
            m = float(h["margin"])
            ax.plot([1 / m, m], [yy, yy], color="0.85", lw=5, zorder=0, solid_capstyle="butt")
        text = f"{MARKS.get(r['label'], '?')} {r['label']}"
        ax.text(1.02, y, text, va="center", fontsize=7, transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [r["technique"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.plot([], [], "o", color="0.3", label="optimization (updates to target, or the measure)")
    ax.plot([], [], "s", color="0.3", label="generalization (test cross-entropy)")
    for result, color in RESULT_COLORS.items():
        ax.plot([], [], "-", color=color, label=result)
    ax.set_xlabel(
        "ratio with / without the technique, 95% interval, log scale (left = lower = better); grey band: margin"
    )
    ax.set_title("What each technique did, each half tuned and judged on its own metric")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_curves(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullLocator

    rows = table["rows"]
    cols = 6
    nrows = max(math.ceil(len(rows) / cols), 1)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.1 * nrows), squeeze=False)
    for ax in axes.ravel()[len(rows) :]:
        ax.axis("off")
    for ax, r in zip(axes.ravel(), rows):
        for arm, style in (("without", "--"), ("with", "-")):
            for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
                curve = r["curves"][arm][split]
                m = np.array([np.nan if v is None else v for v in curve["mean"]])
                s = np.array([np.nan if v is None else v for v in curve["std"]])
                e = np.arange(1, len(m) + 1)
                ax.plot(
                    e, m, style, color=color, lw=1, label=f"{split}, {arm}", marker="o" if len(m) == 1 else None, ms=3
                )
                ax.fill_between(e, m - s, m + s, color=color, alpha=0.12, lw=0)
        ax.set_title(r["technique"], fontsize=7)
        ax.set_yscale("log")
        # log axes' minor ticks (and tight_layout measuring them) cost most of the figure's time
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=5, loc="upper right")
    fig.suptitle(
        "Training (blue) and validation (orange) cross-entropy per epoch; dashed: without, solid: with "
        "the technique; mean ± 1 sd over seeds, each arm at its tuned setting",
        fontsize=8,
        y=1 - 0.12 / (2.1 * nrows),
        va="top",
    )
    # fixed margins, not tight_layout: measuring 48 log axes took half of the figure's time
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.03, top=1 - 0.6 / (2.1 * nrows), wspace=0.3, hspace=0.45)
    _save(fig, path)
