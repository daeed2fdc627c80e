"""Factor.create: the table is full and explicit, and every malformed declaration names its path."""

from __future__ import annotations

import math

import pytest

from graphs import Factor, GraphError

INSURANCE_VALUES = {"private": ["private"], "public": ["Medicaid", "public"], "none": ["no"]}
AGE = {"age": ["young", "old"]}
INSURANCE_TABLE = {
    "young": {"private": 0.6, "public": 0.2, "none": 0.2},
    "old": {"private": 0.4, "public": 0.5, "none": 0.1},
}


def insurance(**overrides) -> Factor:
    options = {
        "values": INSURANCE_VALUES,
        "parents": ["age"],
        "parent_values": AGE,
        "distribution": INSURANCE_TABLE,
    }
    return Factor.create("insurance", **{**options, **overrides})


def test_root_factor_without_distribution_is_uniform():
    factor = Factor.create("age", {"young": ["24", "31"], "old": ["67"]})
    assert factor.parents == ()
    assert dict(factor.table) == {(): {"young": 0.5, "old": 0.5}}
    assert factor.values["young"] == ("24", "31")


def test_root_factor_distribution_and_missing_values_get_zero():
    factor = Factor.create("sex", {"female": ["woman"], "male": ["man"], "other": ["person"]}, distribution={"male": 1})
    assert dict(factor.table[()]) == {"female": 0.0, "male": 1.0, "other": 0.0}
    assert list(factor.table[()]) == ["female", "male", "other"]  # `values` order


def test_child_factor_table_is_keyed_by_parent_tuples():
    factor = insurance()
    assert factor.parents == ("age",)
    assert set(factor.table) == {("young",), ("old",)}
    assert factor.table[("old",)]["public"] == 0.5
    assert math.fsum(factor.table[("young",)].values()) == pytest.approx(1.0, abs=1e-15)


def test_several_parents_use_comma_joined_keys_in_parent_order():
    parent_values = {"age": ["young", "old"], "sex": ["female", "male"], "unused": ["x"]}
    distribution = {
        f"{age}, {sex}": {"yes": p, "no": 1 - p}
        for (age, sex), p in {
            ("young", "female"): 0.1,
            ("young", "male"): 0.2,
            ("old", "female"): 0.3,
            ("old", "male"): 0.4,
        }.items()
    }
    factor = Factor.create(
        "referred",
        {"yes": ["yes"], "no": ["no"]},
        parents=["age", "sex"],
        parent_values=parent_values,
        distribution=distribution,
    )
    assert list(factor.table) == [("young", "female"), ("young", "male"), ("old", "female"), ("old", "male")]
    assert factor.table[("old", "female")]["yes"] == pytest.approx(0.3)
    uniform = Factor.create(
        "referred", {"yes": ["yes"], "no": ["no"]}, parents=["age", "sex"], parent_values=parent_values
    )
    assert all(dict(row) == {"yes": 0.5, "no": 0.5} for row in uniform.table.values())
    assert len(uniform.table) == 4


def test_factor_is_immutable():
    factor = insurance()
    with pytest.raises(TypeError, match="does not support item assignment"):
        factor.values["none"] = ("uninsured",)  # type: ignore[index]
    with pytest.raises(TypeError, match="does not support item assignment"):
        factor.table[("old",)]["none"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("overrides", "match", "path"),
    [
        (
            {"distribution": {**INSURANCE_TABLE, "young": {"private": 0.6, "public": 0.2, "none": 0.1}}},
            r"^probabilities sum to 0\.9; they must sum to 1$",
            "insurance.distribution.young",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "old": {"private": 0.4, "public": 0.5, "none": 0.3}}},
            r"probabilities sum to 1\.2; they must sum to 1",
            "insurance.distribution.old",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "young": {"privat": 0.6, "public": 0.2, "none": 0.2}}},
            r"unknown value 'privat'; did you mean 'private'\? \(known: private, public, none\)",
            "insurance.distribution.young.privat",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "young": {"private": 1.2, "public": 0.0, "none": -0.2}}},
            r"probability of 'none' is -0\.2; probabilities must be numbers >= 0",
            "insurance.distribution.young.none",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "young": {"private": float("nan"), "none": 1.0}}},
            r"probability of 'private' is nan",
            "insurance.distribution.young.private",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "young": {"private": True}}},
            r"probability of 'private' is True",
            "insurance.distribution.young.private",
        ),
        (
            {"distribution": {"old": INSURANCE_TABLE["old"]}},
            r"missing rows for parent combinations 'young'",
            "insurance.distribution",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "yung": INSURANCE_TABLE["young"]}},
            r"unknown parent combination 'yung'; did you mean 'young'\?",
            "insurance.distribution.yung",
        ),
        (
            {"distribution": {**INSURANCE_TABLE, "young": 0.5}},
            r"a distribution row must map values to probabilities; got 0\.5",
            "insurance.distribution.young",
        ),
        (
            {"distribution": [0.5, 0.5]},
            r"the distribution must map parent values to rows",
            "insurance.distribution",
        ),
        (
            {"values": {**INSURANCE_VALUES, "none": []}},
            r"value 'none' needs a non-empty list of surface forms; got \[\]",
            "insurance.values.none",
        ),
        (
            {"values": {**INSURANCE_VALUES, "none": ["no", ""]}},
            r"surface form 1 of value 'none' is ''; surface forms must be non-empty text",
            "insurance.values.none",
        ),
        (
            {"values": {**INSURANCE_VALUES, "none": "no"}},
            r"value 'none' needs a non-empty list of surface forms; got 'no'",
            "insurance.values.none",
        ),
        ({"values": {}}, r"a factor needs at least one value", "insurance.values"),
        ({"values": {"": ["x"]}}, r"value names must be non-empty text; got ''", "insurance.values"),
        (
            {"parent_values": {}},
            r"parent 'age' has no value names; pass them as parent_values=\{'age': \[\.\.\.\]\}",
            "insurance.parents",
        ),
        (
            {"parents": ["age", "age"]},
            r"parents must be distinct factors other than 'insurance'",
            "insurance.parents",
        ),
        (
            {"parents": ["insurance"]},
            r"parents must be distinct factors other than 'insurance'",
            "insurance.parents",
        ),
    ],
)
def test_malformed_declarations_are_rejected_with_their_path(overrides, match, path):
    with pytest.raises(GraphError, match=match) as caught:
        insurance(**overrides)
    assert caught.value.path == path


def test_root_factor_row_errors_use_the_distribution_path():
    with pytest.raises(GraphError, match=r"^probabilities sum to 0\.9; they must sum to 1$") as caught:
        Factor.create("age", {"young": ["24"], "old": ["67"]}, distribution={"young": 0.5, "old": 0.4})
    assert caught.value.path == "age.distribution"
