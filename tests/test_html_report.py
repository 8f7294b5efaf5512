"""The HTML report (issue 23): one self-contained page built from recipe.json alone.

Structural checks, no browser (tests/test_html_browser.py opens the page in Chromium): the
page parses, every row has its section and anchor, nothing is fetched from the network, and
the numbers printed are recipe.json's. Built from a synthetic table (verdict.judge on the
arms of tests/_arms.py) and from a real quick run (tests/data/recipe_sample.json, eleven rows of
`jaxopt-lectures recipe --quick`).
"""

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from _arms import arm, four_arms, noisy, point

from jaxopt_lectures import cli
from jaxopt_lectures.lab import html_report, recipe, report, verdict

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "recipe_sample.json"
SCHEMA = json.loads((HERE.parent / "docs" / "recipe.schema.json").read_text())
EXTERNAL = re.compile(r"^\s*(https?:|//|ftp:)", re.I)
LINK_ATTRS = {"src", "href", "xlink:href", "action", "poster", "data", "srcset", "formaction", "background"}


class Page(HTMLParser):
    """Every element's tag and attributes, the text of every ``.est`` element, open/close
    balance of the elements that must be closed."""

    VOID = {"meta", "br", "img", "hr", "input", "link", "col", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []
        self.est: list[tuple[dict, str]] = []
        self._est_depth = None
        self._est_text = ""
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if "est" in (a.get("class") or "").split():
            self._est_depth, self._est_attrs, self._est_text = len(self.stack), a, ""

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.mismatched.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        if self._est_depth == len(self.stack):
            self.est.append((self._est_attrs, self._est_text.strip()))
            self._est_depth = None
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._est_depth is not None:
            self._est_text += data

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.elements if "id" in a}


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def _synthetic_table() -> dict:
    rows = []
    for name in ("adam", "momentum_variants", "bias_correction", "accuracy_loss", "dropout", "flip"):
        base = arm([point(lr, [6] * 5, noisy(0.02), noisy(0.5)) for lr in (0.01, 0.1)])
        var = arm([point(lr, [3] * 5, noisy(0.01), noisy(0.4)) for lr in (0.01, 0.1)])
        row = verdict.judge(recipe.REGISTRY[name], base, var, range(5))
        row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0)
        rows.append(row)
    b1, v1, b2, v2 = four_arms((0.5, 0.4, 0.6, 0.63), acc=(0.80, 0.86, 0.78, 0.75))  # a 2 x 2 row
    row = verdict.judge(recipe.REGISTRY["dropout_relu_vs_sigmoid"], b1, v1, range(5), level2=(b2, v2))
    row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0)
    rows.append(row)
    rows = verdict.decide_table(rows)
    table = {
        "schema": report.SCHEMA_VERSION,
        "rows": rows,
        "quick": True,
        "seeds": [0, 1, 2, 3, 4],
        "jobs": 1,
        "wall_s": 12.5,
        "compile_s": 3.25,
        "extra_seeds_s": 0.0,
        "compiles": 7,
        "rows_reused": 0,
        "arms": 12,
        "programs": 6,
        "labels": {k: sum(r["label"] == k for r in rows) for k in verdict.LABELS},
        "multiplicity": verdict.MULTIPLICITY,
        "null_table": {"yes": 0.5, "no": 2.0, "inconclusive": 3.5},
        "rule": recipe.RULE,
        "backend": "cpu (1 x cpu)",
        "versions": {"jax": "0.0-test"},
    }
    return json.loads(json.dumps(table, allow_nan=False))  # what recipe.json holds


@pytest.fixture(scope="module", params=["synthetic", "sample"])
def built(request, tmp_path_factory):
    """(table as read back from recipe.json, the page's text), the page written by write_html."""
    table = _synthetic_table() if request.param == "synthetic" else json.loads(SAMPLE.read_text())
    out = tmp_path_factory.mktemp(request.param)
    (out / "recipe.json").write_text(json.dumps(table))
    path = html_report.write_html(json.loads((out / "recipe.json").read_text()), out / "index.html")
    return json.loads((out / "recipe.json").read_text()), path.read_text(encoding="utf-8")


def test_the_tables_match_the_schema(built):
    jsonschema.validate(built[0], SCHEMA)


def test_the_page_parses_and_is_one_closed_document(built):
    _, text = built
    assert text.startswith("<!DOCTYPE html>")
    page = parse(text)
    assert not page.mismatched, page.mismatched[:5]
    assert page.stack == [], page.stack
    tags = [t for t, _ in page.elements]
    assert tags.count("html") == tags.count("body") == 1
    assert any(t == "meta" and a.get("name") == "viewport" for t, a in page.elements)


def test_every_row_has_its_section_anchor_and_link(built):
    table, text = built
    page = parse(text)
    sections = {a["id"] for t, a in page.elements if t == "section" and a.get("id", "").startswith("row-")}
    names = [r["name"] for r in table["rows"]]
    assert sections == {f"row-{n}" for n in names}
    hrefs = [a.get("href") for t, a in page.elements if t == "a"]
    for n in names:
        assert f"#row-{n}" in hrefs, n  # linked from the top table
        assert f"jaxopt-lectures recipe --only {n}" in text  # the command that reruns the row
    internal = {h[1:] for h in hrefs if h and h.startswith("#")} | {
        a.get("xlink:href", "")[1:] for _, a in page.elements if a.get("xlink:href", "").startswith("#")
    }
    assert internal <= page.ids(), internal - page.ids()  # every internal link lands somewhere


def test_nothing_is_fetched_from_the_network(built):
    _, text = built
    page = parse(text)
    for tag, attrs in page.elements:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for k, v in attrs.items():
            if k in LINK_ATTRS and v:
                assert not EXTERNAL.match(v), (tag, k, v)
                if k in ("src", "data", "poster"):
                    assert v.startswith("data:"), (tag, k, v)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", text, re.S)
    assert styles, "the CSS is inline"
    for css in styles:
        assert "@import" not in css and not re.search(r"url\(\s*['\"]?(https?:)?//", css)
    assert "default-src 'none'" in text  # the page's own policy: the browser fetches nothing


def test_the_figures_are_inline_svg_with_content(built):
    table, text = built
    svgs = re.findall(r"<svg\b.*?</svg>", text, re.S)
    # the forest plot, then per row two curve plots (and two grid plots where both arms have a grid)
    assert len(svgs) >= 1 + 2 * len(table["rows"])
    for svg in svgs:
        assert 'viewBox="' in svg and 'class="fig"' in svg
        assert svg.count("<path") >= 5, svg[:200]
    ids = re.findall(r'\sid="([^"]+)"', "".join(svgs))
    assert len(ids) == len(set(ids)), "figure ids collide between the inline SVGs"


def _number(text: str) -> float:
    return float(text.replace("×", "").replace("pt", "").replace("−", "-").strip())


def test_the_printed_numbers_are_recipe_jsons(built):
    """Each half's estimate as printed (top table, verdict, other settings) against recipe.json."""
    table, text = built
    page = parse(text)
    by_key: dict[tuple, list] = {}
    for attrs, shown in page.est:
        by_key.setdefault(attrs["data-value"], []).append(shown)
    expected = []
    for r in table["rows"]:
        halves = list(r["halves"].values())
        halves += [h for s in (r.get("settings") or {}).values() for h in s["halves"].values()]
        for h in halves:
            expected.append(h)
            shown = by_key.get(repr(h["estimate"]))
            assert shown, (r["name"], h["metric"], h["estimate"])
            for s in shown:
                if h["estimate"] is None:
                    assert s == "n/a"
                else:
                    assert math.isclose(_number(s), h["estimate"], rel_tol=6e-3, abs_tol=6e-3), (s, h["estimate"])
    assert len(page.est) >= len(expected)
    # and each half's interval, as printed beside the estimate
    for r in table["rows"]:
        for h in r["halves"].values():
            lo, hi = h["interval"]
            if lo is None or hi is None:
                continue
            pattern = re.escape(html_report.interval(h))
            assert re.search(pattern, text), (r["name"], h["interval"])
            shown = re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", html_report.interval(h))
            assert [float(x) for x in shown] == pytest.approx([lo, hi], rel=6e-3, abs=6e-3)


def test_marks_carry_text_and_the_header_says_what_was_run(built):
    table, text = built
    page = parse(text)
    body = " ".join(page.text)
    for r in table["rows"]:
        for h in r["halves"].values():
            word = h["result"] if r["label"] not in html_report.ROW_STATUS else r["label"]
            assert word in body
    facts = re.search(r'<ul class="facts" id="run-facts">(.*?)</ul>', text, re.S).group(1)
    assert ", ".join(map(str, table["seeds"])) in facts
    assert ("quick" in facts) == table["quick"]
    assert html_report.fmt(table["wall_s"]) in facts and html_report.fmt(table["compile_s"]) in facts
    if "backend" in table:
        assert table["backend"] in facts
    assert table["rule"] in text and table["multiplicity"] in text
    for k, n in (table.get("null_table") or {}).items():
        assert f"{html_report.fmt(n)} {k}" in text  # the footer's no-effect table
    for step in {r["step"] for r in table["rows"]}:
        assert html_report.STEP_NAMES[step][0] in text  # the lecture's own step names
    for head in ("方法名", "改了那一個步驟", "帶來什麼好處"):
        assert head in text


def test_the_report_command_rebuilds_the_page(tmp_path, capsys):
    (tmp_path / "recipe.json").write_text(SAMPLE.read_text())
    assert cli.main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "row-adam" in page
    assert "index.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "not found"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"schema": 1, "rows": []}', "schema version 2"),
        (b"[1, 2]", "schema version 2"),
        (b'{"schema": 2, "rows": [{"name": "x"}]}', "not a complete recipe table"),
    ],
)
def test_a_missing_or_invalid_table_is_one_line_and_exit_2(tmp_path, capsys, content, says):
    if content is not None:
        (tmp_path / "recipe.json").write_bytes(content)
    assert cli.main(["report", str(tmp_path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "index.html").exists()


def test_an_interaction_row_shows_each_level_s_simple_effect(built):
    table, text = built
    rows = [r for r in table["rows"] if r["design"] == "interaction"]
    if not rows:
        pytest.skip("the quick sample run predates the interaction design")
    for s in rows[0]["halves"]["generalization"]["simple_effects"]:
        assert (
            f"with/without under {s['level']}</dt><dd>test cross-entropy {html_report.effect({**s, 'scale': 'ratio'})}"
            in text
        )


def test_a_not_better_half_shows_the_matched_reading_and_the_literal_one_beside(tmp_path):
    """ "Not for generalization" is judged at matched training loss; the page's half detail and
    the text table's cell print the end-of-run (literal) reading beside it, and a fallback says so."""
    train = [list(0.5 ** np.arange(10))] * 5
    test = [list(0.2 + 2 * 0.5 ** np.arange(10))] * 5
    slow = [list(np.repeat(0.5 ** np.arange(5), 2))] * 5
    base = arm([point(0.1, [6] * 5, [t[-1] for t in slow], noisy(0.3), curves={"train": slow, "test": test})])
    var = arm([point(0.1, [3] * 5, [t[-1] for t in train], noisy(0.2), curves={"train": train, "test": test})])
    row = verdict.judge(recipe.REGISTRY["adam"], base, var, range(5))
    row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0)
    table = _synthetic_table()
    table["rows"] = json.loads(json.dumps(verdict.decide_table([row]), allow_nan=False))
    gen = table["rows"][0]["halves"]["generalization"]
    text = html_report.write_html(table, tmp_path / "index.html").read_text(encoding="utf-8")
    assert "matched training loss" in text and "at the end of the runs" in text
    assert "9/5" in text  # seed 0: the baseline first at 2^-4 in epoch 9, the variant in epoch 5 (1-based)
    assert html_report.fmt(gen["literal"]["estimate"]) in text
    cell = report._half_cell(gen)
    assert (
        cell.startswith(verdict.MATCHED_METRIC) and f"at the end of the runs x{gen['literal']['estimate']:.2f}" in cell
    )
    plain = verdict.judge(recipe.REGISTRY["adam"], arm([point(0.1, [6] * 5, noisy(0.02), noisy(0.5))]), base, range(5))
    assert "no per-epoch test curves" in report._half_cell(plain["halves"]["generalization"])


def test_the_optimizer_rows_are_drawn_per_setting_where_the_lecture_places_them(tmp_path):
    """Issue 24 item 3: the report page shows the optimizers' training curves on the judged badly
    scaled inputs and in the settings beside (the standardised control, the deep narrow net), from
    recipe.json alone; a table without such rows has no such section."""
    table = json.loads(SAMPLE.read_text())
    rows = html_report.conditioning_rows(table)
    assert [r["name"] for r in rows] == ["adam"]  # the sample's one optimizer row
    text = html_report.write_html(table, tmp_path / "index.html").read_text(encoding="utf-8")
    section = text[text.index('<section id="conditioning">') : text.index('<section id="rows">')]
    assert "training loss per update of each optimizer and SGD, per setting" in section
    for panel in ["badly scaled inputs", *rows[0]["settings"]]:
        assert f">{panel}<" in section, panel
    assert "condition number" in section  # the judged setting's measured condition number, in words
    plain = dict(table, rows=[r for r in table["rows"] if r not in rows])
    assert html_report.conditioning_plot(plain) == "" and 'id="conditioning"' not in html_report.render(plain)


def test_a_quick_table_says_why_the_optimizers_are_not_drawn_per_setting(tmp_path):
    """--quick trains no settings beside a row (they are never part of a label): its page says
    so where the full table draws the optimizers per setting, instead of leaving the section out."""
    table = json.loads(SAMPLE.read_text())
    quick = dict(table, quick=True, rows=[dict(r, settings={}) for r in table["rows"]])
    assert html_report.conditioning_plot(quick) == ""
    text = html_report.render(quick)
    section = text[text.index('<section id="conditioning">') : text.index('<section id="rows">')]
    assert "Not drawn for a <code>--quick</code> table" in section
    full = dict(quick, quick=False)
    assert 'id="conditioning"' not in html_report.render(full)
    no_optimizer_rows = dict(quick, rows=[r for r in quick["rows"] if r["name"] != "adam"])
    assert 'id="conditioning"' not in html_report.render(no_optimizer_rows)
