"""docs/flax-orbax.md's "Checkpointing a jol optimizer state in your own Flax loop" runs as written."""

import re
from pathlib import Path

import jax

README = Path(__file__).resolve().parents[1] / "docs" / "flax-orbax.md"  # moved there from the README
TITLE = "## Checkpointing a jol optimizer state in your own Flax loop"


def snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(TITLE) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_orbax_snippet_round_trips_a_jol_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(compile(snippet(), f"{README}:{TITLE}", "exec"), env)  # its asserts check the round trip
    assert sorted(p.name for p in (tmp_path / "my_run").iterdir()) == ["2", "3"]  # max_to_keep=2
    assert type(env["back"]["opt_state"]) is type(env["opt_state"])
    assert jax.tree.leaves(env["back"]["opt_state"]) and env["back"]["opt_state"] is not env["opt_state"]
