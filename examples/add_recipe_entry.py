"""Add your own row to the lecture table and measure it.

A row is data in two parts: the *claim* (what the lecture says, quoted, with both halves:
the effect on the training loss and on the test loss) and the *design* (a baseline and a
variant setting that differ in one knob, what is tuned per arm on the validation split, and
the budget). Here: SGD with momentum 0.5 against plain SGD on the digits, each at its own η.

Run: python examples/add_recipe_entry.py [--small] [--out DIR]
"""

import dataclasses
import sys
from pathlib import Path

from _small import small

from jaxopt_lectures.lab import recipe, report
from jaxopt_lectures.lab.claims import quotes
from jaxopt_lectures.lab.claims.rows import make_row


def main():
    claim = quotes.Claim(
        name="momentum_half",
        technique="Momentum β = 0.5 (vs SGD)",
        step="optimization",
        train="better",
        val="not better",
        source="inferred",  # expected effect on training / test loss
        quotes=(quotes.CLAIMS["momentum"].quotes[0],),  # the lecture's words this row tests
        statement="a little momentum already trains better than SGD, not for generalization",
        condition="each arm at its own learning rate",
    )
    row = make_row(
        "momentum_half",
        "optimizer.momentum",
        {"data": {"name": "digits"}},
        {"optimizer": {"momentum": 0.5}},
        20,
        4,
        tune={"optimizer.learning_rate": (0.01, 0.1, 0.3)},
        note="a user-added row",
    )
    quotes.CLAIMS[row.name] = claim
    recipe.REGISTRY[row.name] = row  # now `recipe.select(["momentum_half"])` knows it, in this process
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else None
    seeds = [0, 1] if small() else [0, 1, 2]
    if small():  # CI: one epoch, two learning rates
        row = dataclasses.replace(row, quick_epochs=1, tune={"optimizer.learning_rate": (0.01, 0.1)})
    print(recipe.explain(row, seeds, quick=True))
    table = report.run_table([row], seeds, quick=True, out=out, progress=False)
    print(report.terminal(table), end="")
    if out is not None:
        print("wrote", ", ".join(str(p) for p in report.write_reports(table, out)))


if __name__ == "__main__":
    main()
