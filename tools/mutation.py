"""``make mutation``: mutation testing of the core with mutmut (pinned in pyproject's ``dev`` extra),
over a deterministic sample of its mutants. Not part of CI (a full run is days on two cores).

Steps: (1) a fresh ``mutants/`` (mutmut's copy of the package, each function of the files in
``[tool.mutmut] only_mutate`` rewritten to dispatch to its mutants); (2) the list of every mutant,
sorted by name, and a sample of ``--sample`` of them drawn with ``random.Random(--seed)`` (or the
names in ``--names FILE``, one a line: the re-run of earlier survivors); (3) ``mutmut run`` on the
sample; (4) each mutant that mutmut reports alive ("survived", "no tests") or timed out, again
against the whole test files of its source module (``FILES_BY_SOURCE``, with ``-x``): mutmut runs
a mutant only against the tests that called the mutated function inside a test, so a
transformation built at a test module's import (``test_core_numerics``'s table of cases) never
counts for it; (5) a summary: the counts by status and each survivor's diff, printed and written to
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
CORE_TESTS = [
    "tests/test_core_numerics.py",
    "tests/test_core_edges.py",
    "tests/test_core_wrappers.py",
    "tests/test_core_errors.py",
    "tests/test_optax_conventions.py",
]
# the second look at a mutant mutmut reports alive: every test of these files (module prefix -> files)
FILES_BY_SOURCE = {
    "jaxopt_lectures.fused": ["tests/test_fused.py", "tests/test_mixed_precision.py"],
    "jaxopt_lectures.losses": ["tests/test_losses.py"],
    "jaxopt_lectures.transforms.partition": ["tests/test_partition.py", *CORE_TESTS],
    "jaxopt_lectures": [
        *CORE_TESTS,
        "tests/test_property_chains.py",
        "tests/test_mixed_precision.py",
        "tests/test_reliability_core_cases.py",
    ],
}
SECOND_LOOK_TIMEOUT_S = 600


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


def second_look(name: str, env: dict[str, str]) -> str:
    """ "killed" or "survived": the mutant against the whole test files of its module (see above)."""
    from mutmut.configuration import config

    module = name.rsplit(".", 1)[0]
    files = next(f for prefix, f in FILES_BY_SOURCE.items() if module.startswith(prefix))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "--rootdir=.", *config().pytest_add_cli_args, *files]
    try:
        done = subprocess.run(
            command,
            cwd=MUTANTS,
            env={**env, "MUTANT_UNDER_TEST": name},
            capture_output=True,
            timeout=SECOND_LOOK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return {0: "survived", 5: "survived"}.get(done.returncode, "killed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=150, help="how many mutants to draw (default 150)")
    parser.add_argument("--seed", type=int, default=25, help="the sample's random seed (default 25)")
    parser.add_argument("--names", type=Path, help="run these mutants (one name a line) instead of a sample")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no new run: the second look and the summary for the sample of the run in mutants/",
    )
    args = parser.parse_args()

    os.chdir(ROOT)  # mutmut reads its [tool.mutmut] from ./pyproject.toml
    start = time.monotonic()
    if not args.report_only:
        generate()
    everything = sorted(exit_codes())
    if args.report_only:
        chosen = (MUTANTS / "sample.txt").read_text().split()
        rule = (MUTANTS / "rule.txt").read_text().strip() if (MUTANTS / "rule.txt").exists() else "the last run's"
    elif args.names:
        chosen = sorted({line.strip() for line in args.names.read_text().splitlines() if line.strip()})
        rule = f"the {len(chosen)} mutants named in {args.names}"
    else:
        chosen = sorted(random.Random(args.seed).sample(everything, min(args.sample, len(everything))))
        rule = f"random.Random({args.seed}).sample(sorted names, {len(chosen)})"
    (MUTANTS / "sample.txt").write_text("\n".join(chosen) + "\n")
    (MUTANTS / "rule.txt").write_text(rule + "\n")
    print(f"{len(everything)} mutants in scope; running {rule}", flush=True)

    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(MUTANTS / "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    returncode = 0
    if not args.report_only:
        returncode = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *chosen],
            cwd=ROOT,
            env=env,
            check=False,
        ).returncode
    codes = exit_codes()
    final = {name: status(codes.get(name)) for name in chosen}
    for name in chosen:
        if final[name] in ("survived", "no tests", "timeout"):
            final[name] = f"{final[name]}; the whole files: {second_look(name, env)}"
            print(name, final[name], flush=True)
    wall = time.monotonic() - start

    by_status = collections.Counter(final.values())
    per_file = collections.Counter(name.rsplit(".", 1)[0] for name in everything)
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
        if final[name] != "killed":
            lines += [f"### {name} ({final[name]})", "```diff", diff(name), "```", ""]
    summary = "\n".join(lines)
    (MUTANTS / "summary.md").write_text(summary)
    print(summary)
    return returncode


if __name__ == "__main__":
    sys.exit(main())
