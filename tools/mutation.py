"""``make mutation``: mutation testing of the core with mutmut (pinned in pyproject's ``dev`` extra),
over a deterministic sample of its mutants. Not part of CI (a full run is days on two cores).

Steps: (1) a fresh ``mutants/`` (mutmut's copy of the package, each function of the files in
``[tool.mutmut] only_mutate`` rewritten to dispatch to its mutants); (2) the list of every mutant,
sorted by name, and a sample of ``--sample`` of them drawn with ``random.Random(--seed)`` (or the
names in ``--names FILE``, one a line: the re-run of earlier survivors); (3) ``mutmut run`` on the
sample; (4) a summary: the counts by status and each survivor's diff, printed and written to
``mutants/summary.md`` (docs/mutation.md keeps the last one, with the survivors' analysis).

A persistent JAX compilation cache under ``mutants/`` lets a mutant's tests reuse what the
unmutated run compiled for the functions the mutant does not change.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"


def generate() -> None:
    """A fresh mutants/ folder, in a child process (mutmut's generation sets up sys.path for the copy)."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    code = (
        "import os; from mutmut.__main__ import copy_src_dir, copy_also_copy_files, setup_source_paths, create_mutants;"
        "from mutmut.mutation.trampoline import set_mutant_under_test;"
        "set_mutant_under_test('mutant_generation'); os.makedirs('mutants', exist_ok=True);"
        "copy_src_dir(); copy_also_copy_files(); setup_source_paths(); print(create_mutants(2))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def exit_codes() -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def status(code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[code]


def diff(name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    return "\n".join(line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=120, help="how many mutants to draw (default 120)")
    parser.add_argument("--seed", type=int, default=25, help="the sample's random seed (default 25)")
    parser.add_argument("--names", type=Path, help="run these mutants (one name a line) instead of a sample")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    args = parser.parse_args()

    start = time.monotonic()
    generate()
    everything = sorted(exit_codes())
    if args.names:
        chosen = sorted({line.strip() for line in args.names.read_text().splitlines() if line.strip()})
        rule = f"the {len(chosen)} mutants named in {args.names}"
    else:
        chosen = sorted(random.Random(args.seed).sample(everything, min(args.sample, len(everything))))
        rule = f"random.Random({args.seed}).sample(sorted names, {len(chosen)})"
    (MUTANTS / "sample.txt").write_text("\n".join(chosen) + "\n")
    print(f"{len(everything)} mutants in scope; running {rule}", flush=True)

    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(MUTANTS / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    run = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *chosen],
        cwd=ROOT,
        env=env,
        check=False,
    )
    wall = time.monotonic() - start

    codes = exit_codes()
    by_status = collections.Counter(status(codes.get(name)) for name in chosen)
    per_file = collections.Counter(name.rsplit(".x_", 1)[0] for name in everything)
    lines = [
        f"mutmut {importlib.metadata.version('mutmut')}; {len(everything)} mutants in scope "
        + "("
        + ", ".join(f"{module} {n}" for module, n in sorted(per_file.items()))
        + ")",
        f"sample: {rule}; wall time {wall / 60:.1f} min (generation, recorded run, clean run, mutants)",
        "status: " + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())),
        "",
    ]
    for name in chosen:
        if status(codes.get(name)) != "killed":
            lines += [f"### {name} ({status(codes.get(name))})", "```diff", diff(name), "```", ""]
    summary = "\n".join(lines)
    (MUTANTS / "summary.md").write_text(summary)
    print(summary)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
