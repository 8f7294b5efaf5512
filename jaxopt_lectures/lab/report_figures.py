"""The lecture table's two pictures: effect bars with 95% intervals, and every row's curves.

``recipe.png``: per row, the mean relative change of the training loss and of the test loss
with the technique on (left = lower = better), each with the 95% interval of the paired
test, and the row's agreement. ``recipe_curves.png``: small multiples, one panel per row,
the training and validation loss per epoch of both arms (mean over seeds, band ± 1 sd).
"""

from __future__ import annotations

import math
from pathlib import Path

MARKS = {
    "yes": "✓",
    "no": "✗",
    "partly": "~",
    "regime not reached": "?",
    "baseline never trains": "!",
    "not testable": "·",
}


def _save(fig, path: Path) -> None:
    """Write a figure atomically (:func:`._files.atomic_write`)."""
    import matplotlib.pyplot as plt

    from jaxopt_lectures.lab._files import atomic_write

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


def _clip(x):
    return 0.0 if x is None or not math.isfinite(x) else max(min(x, 1.0), -1.0)


def plot_bars(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(10, 0.36 * len(rows) + 1.8))
    for y, r in enumerate(rows):
        for dy, key, color in ((-0.2, "train", "tab:blue"), (0.2, "test", "tab:orange")):
            c = r["comparisons"][key]
            m = _clip(c["rel_change"])
            lo, hi = (_clip(v) for v in c["interval"])
            ax.barh(y + dy, m, height=0.38, color=color, alpha=0.85 if c["direction"] else 0.35)
            if c["interval"][0] is not None:
                ax.errorbar(
                    m,
                    y + dy,
                    xerr=[[max(m - lo, 0)], [max(hi - m, 0)]],
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.8,
                    capsize=2,
                )
        ax.text(
            1.02,
            y,
            f"{MARKS.get(r['agrees'], '?')} {r['agrees']}",
            va="center",
            fontsize=7,
            transform=ax.get_yaxis_transform(),
        )
    ax.set_yticks(range(len(rows)), [r["technique"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.barh([], [], color="tab:blue", label="training loss (optimization)")
    ax.barh([], [], color="tab:orange", label="test loss (generalization)")
    ax.set_xlabel(
        "mean relative change with the technique on, 95% interval (left = lower = better; clipped at ±100%;"
        "\npale bars: no effect by the rule)"
    )
    ax.set_title(
        "What each technique did, each arm tuned on validation\n"
        "(✓ agrees with the lecture, ~ partly, ✗ no, ? regime not reached, ! baseline never trains)"
    )
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
