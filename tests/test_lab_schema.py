"""recipe.json's documented contract (docs/recipe.schema.json, docs/recipe-json.md)."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from _arms import arm, noisy, point

from jaxopt_lectures.lab import recipe, report, verdict

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEMA = json.loads((DOCS / "recipe.schema.json").read_text())


def _table(rows):
    return {
        "schema": report.SCHEMA_VERSION,
        "rows": verdict.decide_table(rows),
        "quick": True,
        "seeds": [0, 1, 2, 3, 4],
        "jobs": 1,
        "wall_s": 1.0,
        "compile_s": 0.5,
        "extra_seeds_s": 0.0,
        "compiles": 2,
        "rows_reused": 0,
        "arms": 2,
        "programs": 1,
        "labels": {k: 0 for k in verdict.LABELS},
        "multiplicity": verdict.MULTIPLICITY,
        "null_table": {},
        "rule": recipe.RULE,
    }


@pytest.mark.parametrize("name", ["adam", "momentum_variants", "bias_correction", "accuracy_loss", "dropout"])
def test_synthetic_rows_of_every_design_match_the_schema(name):
    base = arm([point(lr, [6] * 5, noisy(0.02), noisy(0.5)) for lr in (0.01, 0.1)])
    var = arm([point(lr, [3] * 5, noisy(0.01), noisy(0.4)) for lr in (0.01, 0.1)])
    row = verdict.judge(recipe.REGISTRY[name], base, var, range(5))
    row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0)
    table = json.loads(json.dumps(_table([row]), allow_nan=False))
    jsonschema.validate(table, SCHEMA)


def test_a_row_with_another_setting_and_its_stall_check_matches_the_schema():
    base = arm([point(lr, [None, 6, None, 6, 6], noisy(0.3), noisy(0.5)) for lr in (0.01, 0.1)])
    var = arm([point(lr, [3] * 5, noisy(0.01), noisy(0.4)) for lr in (0.01, 0.1)])
    row = verdict.judge(recipe.REGISTRY["init"], base, var, range(5))
    other = {k: row[k] for k in ("label", "halves", "regime", "flags", "arms", "curves")}
    row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0, setting="deep net")
    row.update(settings={"deep narrow net": {**other, "stall": verdict.stall_check(base, var)}}, settings_s=1.0)
    table = json.loads(json.dumps(_table([row]), allow_nan=False))
    jsonschema.validate(table, SCHEMA)
    assert table["rows"][0]["settings"]["deep narrow net"]["stall"]["never_reached"] == {"without": 2, "with": 0}
    bad = json.loads(json.dumps(table))
    del bad["rows"][0]["settings"]["deep narrow net"]["stall"]["stalls"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_the_schema_version_is_the_one_documented():
    assert SCHEMA["properties"]["schema"]["const"] == report.SCHEMA_VERSION
    assert f"schema version {report.SCHEMA_VERSION}" in (DOCS / "recipe-json.md").read_text()


def test_every_row_field_of_the_schema_is_documented():
    text = (DOCS / "recipe-json.md").read_text()
    for field in SCHEMA["$defs"]["row"]["required"] + SCHEMA["$defs"]["half"]["required"]:
        assert f"`{field}`" in text, field


def test_each_arm_records_what_it_trained_including_the_seeded_feature_scales():
    """Issue 24 item 4: the scale draws and network sizes are in recipe.json, per arm."""
    base = arm([point(lr, [6] * 5, noisy(0.02), noisy(0.5)) for lr in (0.01, 0.1)])
    var = arm([point(lr, [3] * 5, noisy(0.01), noisy(0.4)) for lr in (0.01, 0.1)])
    entry = recipe.REGISTRY["adam"]
    row = json.loads(json.dumps(verdict.judge(entry, base, var, range(5))))
    assert row["arms"]["without"]["setting"]["data"]["feature_scale"] == {"low": -2.0, "high": 1.0, "seed": 0}
    assert row["arms"]["with"]["setting"]["optimizer"]["name"] == "adam"
    narrow = json.loads(json.dumps(verdict.judge(entry.in_setting("deep narrow net"), base, var, range(5))))
    assert narrow["arms"]["without"]["setting"]["model"]["hidden"] == [16] * 12
    bad = json.loads(json.dumps(_table([dict(row, wall_s=1.0, compile_s=0.5, fingerprint="x")])))
    bad["rows"][0]["arms"]["with"]["setting"] = {"data": {}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def _interaction_row():
    from _arms import four_arms

    b1, v1, b2, v2 = four_arms((0.5, 0.4, 0.6, 0.63), acc=(0.80, 0.86, 0.78, 0.75))
    row = verdict.judge(recipe.REGISTRY["dropout_relu_vs_sigmoid"], b1, v1, range(5), level2=(b2, v2))
    row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0)
    return row


def test_an_interaction_row_with_its_four_arms_and_simple_effects_matches_the_schema():
    table = json.loads(json.dumps(_table([_interaction_row()]), allow_nan=False))
    jsonschema.validate(table, SCHEMA)
    row = table["rows"][0]
    assert row["design"] == "interaction" and len(row["halves"]["generalization"]["simple_effects"]) == 2
    assert {"level2_without", "level2_with"} <= set(row["arms"])
    bad = json.loads(json.dumps(table))
    del bad["rows"][0]["halves"]["generalization"]["simple_effects"][1]["level"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_the_markdown_cell_of_an_interaction_row_gives_both_simple_effects():
    half = _interaction_row()["halves"]["generalization"]
    cell = report._half_cell(half)
    first, second = half["simple_effects"]
    assert (
        f"under ReLU + He x{first['estimate']:.2f}" in cell
        and f"under sigmoid + Glorot x{second['estimate']:.2f}" in cell
    )
    assert f"{first['test_error']['estimate_points']:+.1f} pt" in cell and cell.startswith(
        "test cross-entropy: the ratio"
    )


def test_a_not_better_half_at_matched_training_loss_matches_the_schema():
    """The "not for generalization" half with its matched reading and the literal one beside;
    a per-seed entry without its epochs is refused."""
    curves = {"train": [list(np.geomspace(1.0, 0.05, 10))] * 5, "test": [list(np.geomspace(1.0, 0.3, 10))] * 5}
    pts = lambda: [point(0.1, [6] * 5, [0.05] * 5, noisy(0.3), curves=curves)]  # noqa: E731
    row = verdict.judge(recipe.REGISTRY["adam"], arm(pts()), arm(pts()), range(5))
    assert row["halves"]["generalization"]["matched"]["used"] is True
    row.update(wall_s=1.0, compile_s=0.5, fingerprint="x", seed_blocks=1, extra_seeds_s=0.0)
    table = json.loads(json.dumps(_table([row]), allow_nan=False))
    jsonschema.validate(table, SCHEMA)
    del table["rows"][0]["halves"]["generalization"]["matched"]["per_seed"][0]["epoch"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(table, SCHEMA)
