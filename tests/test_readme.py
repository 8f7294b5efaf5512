"""The README starts with the library and stays short; everything it moved out is one link away."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MOVED = [
    "library",
    "formulas",
    "flax-orbax",
    "lab-guide",
    "measured-table",
    "recipe-json",
    "figures",
    "speed",
    "layout",
]


def _links(path: Path) -> list[str]:
    return [m for m in re.findall(r"\]\(([^)#\s]+)", path.read_text(encoding="utf-8")) if "://" not in m]


def test_the_readme_is_under_200_lines_and_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    assert text.index("## Two commands") < text.index("## The main job") < text.index("## Ten lines")


def test_every_relative_link_of_the_readme_and_the_guides_resolves():
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for link in _links(page):
            assert (page.parent / link).exists(), f"{page.name} links to {link}, which does not exist"


def test_every_moved_section_is_linked_from_the_readme():
    links = set(_links(README))
    for name in MOVED:
        assert f"docs/{name}.md" in links, f"the README does not link docs/{name}.md"
