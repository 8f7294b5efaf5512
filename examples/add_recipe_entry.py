"""Add your own row to the recipe table and measure it.

A recipe entry is data: the technique, the step of finding a function it changes, the
benefit the lecture claims, and a baseline and a variant setting that differ in one knob.
Here: "Nesterov momentum (vs classic momentum)" on the digits, claimed to optimize better.

Run: python examples/add_recipe_entry.py [--small] [--out DIR]
Then the CLI knows it too, in this process: recipe.REGISTRY[entry.name] = entry.
"""

import sys
from pathlib import Path

from jaxopt_lectures.lab import recipe, report
from _small import small


def main():
    entry = recipe._entry(
        "nesterov",                               # name (used by --only and for the saved row)
        "Nesterov momentum (vs classic)",         # technique, as the table prints it
        "optimization",                           # the step it changes: a key of recipe.STEPS
        "optimization",                           # the lecture's claim: a key of recipe.CLAIMS
        "optimizer.nesterov",                     # the knob the two sides differ in
        {"data": {"name": "digits"}, "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}},
        {"optimizer": {"nesterov": True}},        # the variant: overrides merged into the baseline
        20, 4,                                    # epochs: full and --quick budgets
        note="a user-added row (examples/add_recipe_entry.py)",
    )
    recipe.REGISTRY[entry.name] = entry
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else None
    seeds = [0] if small() else [0, 1, 2]
    if small():  # CI: one epoch on each side
        import dataclasses

        entry = dataclasses.replace(entry, quick_epochs=1)
    table = report.run_table([entry], seeds, quick=True, out=out, progress=False)
    print(report.terminal(table), end="")
    if out is not None:
        print("wrote", ", ".join(str(p) for p in report.write_reports(table, out)))


if __name__ == "__main__":
    main()
