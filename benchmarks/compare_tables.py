"""Compare two measured tables (recipe.json of two disjoint seed sets): how often the label holds.

    python benchmarks/compare_tables.py results-0-4/recipe.json results-5-9/recipe.json

Prints, per row, both labels, and the counts the verdicts issue asks for: the share of rows
decided on both (not inconclusive), the share of those with the same label, the share decided
on each set. A row is *decided* when its label is yes, no or partly (inconclusive, regime not
reached, demonstration and the rest are not decisions about the claim).
"""

from __future__ import annotations

import json
import sys

DECIDED = ("yes", "no", "partly")


def load(path: str) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return {r["name"]: r for r in json.load(f)["rows"]}


def compare(a: dict[str, dict], b: dict[str, dict]) -> dict:
    names = [n for n in a if n in b]
    both = [n for n in names if a[n]["label"] in DECIDED and b[n]["label"] in DECIDED]
    same = [n for n in both if a[n]["label"] == b[n]["label"]]
    return {
        "rows": len(names),
        "decided_first": sum(a[n]["label"] in DECIDED for n in names),
        "decided_second": sum(b[n]["label"] in DECIDED for n in names),
        "decided_both": len(both),
        "same_label_among_decided": len(same),
        "same_label_all": sum(a[n]["label"] == b[n]["label"] for n in names),
        "flips": [n for n in both if n not in same],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a, b = load(argv[0]), load(argv[1])
    for name in a:
        if name in b:
            print(f"{name:24s} {a[name]['label']:20s} {b[name]['label']:20s}")
    c = compare(a, b)
    print(json.dumps(c, indent=1))
    if c["decided_both"]:
        print(
            f"decided on both: {c['decided_both']} of {c['rows']}; same label on "
            f"{c['same_label_among_decided']} of them ({c['same_label_among_decided'] / c['decided_both']:.0%}); "
            f"decided: {c['decided_first']} and {c['decided_second']} of {c['rows']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
