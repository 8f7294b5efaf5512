"""The quoted claims of the lecture table (issue 10, items 1 and 6): every row has a claim, every
quote is found in the seed file it cites, and the vocabulary is the one the verdict understands.

Quotes are compared after collapsing every run of whitespace to one space on both sides (the seeds
are slide text extracted line by line: phrases break across lines and carry trailing blanks)."""

import re
from pathlib import Path

import pytest

from jaxopt_lectures.lab.claims import quotes
from jaxopt_lectures.lab.claims.quotes import CLAIMS, EFFECTS, SOURCES, STEPS

SEEDS_DIR = Path(__file__).parents[1] / "docs" / "seeds"

EXISTING = (
    "adagrad rmsprop momentum adam warmup decay adamw dropout weight_decay l1 early_stopping init pretrain cnn "
    "skip batchnorm layernorm sigmoid maxout accuracy_loss mse_loss more_data mixup flip entropy graph batch_size"
).split()
NEW = (
    "nesterov bias_correction rmsprop_first_grad momentum_variants rmsprop_vs_adagrad l1_vs_l2_sparsity "
    "l2_in_loss dropout_test_scaling dropout_relu_vs_sigmoid leaky_relu prelu full_batch depth_degradation "
    "hinge init_minimum adamw_vs_adam"
).split()


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _seed_lines(seed: str) -> list[str]:
    return (SEEDS_DIR / seed).read_text(encoding="utf-8").split("\n")


def test_every_row_of_the_table_has_a_claim():
    assert set(EXISTING) | set(NEW) <= set(CLAIMS)
    assert len(EXISTING) == 27 and len(NEW) == 16
    for name, claim in CLAIMS.items():
        assert claim.name == name


def test_the_seed_files_are_in_the_repository():
    assert SEEDS_DIR.is_dir(), SEEDS_DIR
    for seed in quotes.SEEDS:
        assert (SEEDS_DIR / seed).is_file(), seed


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_each_quote_occurs_in_the_lines_it_cites(name):
    claim = CLAIMS[name]
    assert claim.quotes, f"{name}: no quote"
    for q in claim.quotes:
        assert isinstance(q, quotes.Quote)
        assert (SEEDS_DIR / q.seed).is_file(), f"{name}: seed {q.seed!r} not under {SEEDS_DIR}"
        lines = _seed_lines(q.seed)
        first, last = q.lines
        assert isinstance(first, int) and isinstance(last, int)
        assert 1 <= first <= last <= len(lines), f"{name}: lines {q.lines} outside 1..{len(lines)} of {q.seed}"
        block = _collapse("\n".join(lines[first - 1 : last]))
        text = _collapse(q.text)
        assert text, f"{name}: empty quote"
        assert text in block, f"{name}: {q.text!r} not in {q.seed} lines {first}-{last}"
        assert q.gloss.strip(), f"{name}: quote without a gloss"


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_each_claim_uses_the_vocabulary_and_says_what_and_when(name):
    c = CLAIMS[name]
    assert c.step in STEPS, c.step
    assert c.train in EFFECTS and c.val in EFFECTS, (c.train, c.val)
    assert c.source in SOURCES, c.source
    assert c.technique.strip()
    assert c.statement.strip(), f"{name}: no statement"
    assert c.condition.strip(), f"{name}: no condition"


def test_the_vocabulary_is_the_one_the_verdict_understands():
    assert set(STEPS) == {"loss", "function_set", "optimization"}
    assert set(EFFECTS) == {"better", "not better", "worse", None}
    assert set(SOURCES) == {"lecture", "inferred", "linked lecture"}


def test_the_negative_halves_of_the_lecture_are_kept():
    c = CLAIMS
    for name in ("adagrad", "rmsprop", "momentum", "adam"):  # "(not for Generalization)", 000 l.751
        assert (c[name].train, c[name].val) == ("better", "not better")
    assert (c["dropout"].train, c["dropout"].val) == ("worse", "better")  # "(Worse Optimization)", 000 l.769
    for name in (
        "weight_decay",
        "more_data",
        "mixup",
        "entropy",
        "graph",
        "l1",
        "l2_in_loss",
    ):  # "Not for Optimization"
        assert (c[name].train, c[name].val) == ("not better", "better"), name
    assert (c["accuracy_loss"].train, c["accuracy_loss"].val) == ("better", "not better")  # 000 l.1589
    assert c["batchnorm"].val is None and c["layernorm"].val is None  # "(Sometimes Better Generalization)"
    assert c["adamw_vs_adam"].val == "better" and c["adamw_vs_adam"].source == "lecture"  # "cf. Adam"


def test_claims_the_lectures_do_not_make_are_labelled():
    for name in ("maxout", "init", "mse_loss", "hinge", "leaky_relu", "prelu", "nesterov", "adamw"):
        assert CLAIMS[name].source in ("inferred", "linked lecture"), name


def test_the_seed_copies_are_the_lectures_files():
    # the five seeds, whole: 000 ends with the concluding table, 004 with the dropout/maxout remark
    assert "Concluding Remarks" in (SEEDS_DIR / quotes.S000).read_text(encoding="utf-8")
    assert "Maxout 跟 dropout" in (SEEDS_DIR / quotes.S004).read_text(encoding="utf-8")
