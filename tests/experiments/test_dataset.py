"""Loading annotated documents and human-edited pairs: bad rows dropped by reason, bad files refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments import ConfigError
from experiments.config._dataset import DROP_COLUMNS, PAIR_COLUMNS, load_documents, load_pairs
from experiments.config._schema import DataConfig

VALUES = {"insurance": ("private", "public", "none"), "age": ("young", "old")}
GOOD = {"case": "c1", "note": "Patient with private insurance.", "ins": "private", "band": "old", "referred": 1}


def _write(tmp_path: Path, rows: list[dict], suffix: str = ".csv") -> Path:
    path = tmp_path / f"notes{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


def _config(path: Path, **changes: object) -> DataConfig:
    fields = {
        "path": str(path),
        "text": "note",
        "id": "case",
        "factors": {"insurance": "ins", "age": "band"},
        "label": "referred",
        **changes,
    }
    return DataConfig(**fields)


def _row(case: str, **changes: object) -> dict:
    return {**GOOD, "case": case, **changes}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_documents(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path, [_row("007"), _row("c2", ins="none", band="young", referred=0)], suffix)
    documents = load_documents(_config(path), path, VALUES)
    assert documents.frame[["doc_id", "insurance", "age"]].to_dict("records") == [
        {"doc_id": "007", "insurance": "private", "age": "old"},
        {"doc_id": "c2", "insurance": "none", "age": "young"},
    ]
    assert documents.frame["label"].astype(int).tolist() == [1, 0]
    assert documents.record() == {"rows": 2, "kept": 2, "dropped": {}}


def test_bad_rows_are_dropped_for_their_first_problem_and_counted(tmp_path: Path) -> None:
    rows = [
        _row("a"),
        _row("b", note="   "),  # empty text (only spaces)
        _row("c", ins=None),  # unannotated
        _row("d", ins="gold"),  # outside the declared values
        _row("e", note="", ins="gold"),  # two problems: the text comes first
        _row("a", ins="none"),  # the id of an earlier kept row
        _row("b"),  # the id of a dropped row only: kept
        _row("f", ins=" public "),  # surrounding spaces are not a problem
    ]
    path = _write(tmp_path, rows)
    documents = load_documents(_config(path), path, VALUES)
    assert documents.frame["doc_id"].tolist() == ["a", "b", "f"]
    assert documents.frame["insurance"].tolist() == ["private", "private", "public"]
    assert list(documents.dropped.columns) == list(DROP_COLUMNS)
    dropped = documents.dropped[["row", "id", "reason", "column", "value"]].fillna("<missing>")
    assert dropped.values.tolist() == [
        [1, "b", "empty_text", "note", "   "],
        [2, "c", "unannotated", "ins", "<missing>"],
        [3, "d", "unknown_value", "ins", "gold"],
        [4, "e", "empty_text", "note", "<missing>"],
        [5, "a", "duplicate_id", "case", "a"],
    ]
    assert documents.counts() == {"empty_text": 2, "unannotated": 1, "unknown_value": 1, "duplicate_id": 1}


def test_without_an_id_column_the_row_number_is_the_id(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row("x"), _row("x", ins="none")])
    documents = load_documents(_config(path, id=None), path, VALUES)
    assert documents.frame["doc_id"].tolist() == ["0", "1"]


@pytest.mark.parametrize(
    ("change", "yaml_path", "column"),
    [
        ({"text": "notes"}, "data.text", "notes"),
        ({"id": "case_id"}, "data.id", "case_id"),
        ({"label": "outcome"}, "data.label", "outcome"),
        ({"factors": {"insurance": "insurance_status", "age": "band"}}, "data.factors.insurance", "insurance_status"),
    ],
)
def test_a_missing_column_names_it_its_yaml_path_and_the_columns_there_are(
    tmp_path: Path, change: dict, yaml_path: str, column: str
) -> None:
    path = _write(tmp_path, [_row("a")])
    with pytest.raises(
        ConfigError,
        match=rf"^{yaml_path}: column '{column}' is not in notes.csv; its columns are "
        r"\['case', 'note', 'ins', 'band', 'referred'\]",
    ) as caught:
        load_documents(_config(path, **change), path, VALUES)
    assert caught.value.path == yaml_path


def test_an_all_bad_dataset_is_an_error_naming_columns_and_example_ids(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row("a", ins="gold"), _row("b", ins="silver"), _row("c", note="")])
    with pytest.raises(
        ConfigError,
        match=r"^data: no usable row among 3: 2 row\(s\) unknown value in column 'ins' "
        r"\(ids 'a', 'b'; values \['gold', 'silver'\]\); 1 row\(s\) empty text "
        r"in column 'note' \(ids 'c'\); fix the data",
    ):
        load_documents(_config(path), path, VALUES)


def test_on_bad_rows_error_stops_at_any_bad_row(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row("a"), _row("b", band=None)])
    with pytest.raises(
        ConfigError,
        match=r"1 of 2 rows are bad and on_bad_rows is error: 1 row\(s\) unannotated "
        r"in column 'band' \(ids 'b'\); .*on_bad_rows: drop",
    ):
        load_documents(_config(path, on_bad_rows="error"), path, VALUES)


def test_an_unreadable_or_absent_file_is_a_config_error_at_data_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^data.path: data file .*absent.csv' does not exist"):
        load_documents(_config(tmp_path / "absent.csv"), tmp_path / "absent.csv", VALUES)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"case": "a", "note": \n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^data.path: data file .*broken.jsonl' cannot be read as jsonl"):
        load_documents(_config(broken), broken, VALUES)


def _pairs(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "edits.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _edit(pair_id: str, original: str, source: str = "private", target: str = "none", **changes: str) -> dict:
    return {
        "id": pair_id,
        "original_id": original,
        "factor": "insurance",
        "from": source,
        "to": target,
        "text": "Patient with no insurance.",
        **changes,
    }


def test_human_pairs_keep_edits_of_kept_documents_and_report_the_rest(tmp_path: Path) -> None:
    notes = _write(tmp_path, [_row("a"), _row("b", ins="none")])
    documents = load_documents(_config(notes), notes, VALUES).frame
    path = _pairs(
        tmp_path,
        [
            _edit("e1", "a"),
            _edit("e2", "zz"),  # no such document
            _edit("e3", "a", factor="weekday"),  # not a factor
            _edit("e4", "a", target="gold"),  # outside the declared values
            _edit("e5", "a", target="private"),  # not an edit
            _edit("e6", "b"),  # b is annotated none, not private
            _edit("e7", "a", text=""),
            _edit("e1", "b", source="none", target="public"),  # a repeated id
            _edit("e8", "b", source="none", target="public"),
        ],
    )
    pairs = load_pairs(path, documents, VALUES)
    assert list(pairs.frame.columns) == list(PAIR_COLUMNS)
    assert pairs.frame["id"].tolist() == ["e1", "e8"]
    assert dict(zip(pairs.dropped["id"], pairs.dropped["reason"])) == {
        "e2": "unknown_original",
        "e3": "unknown_factor",
        "e4": "unknown_value",
        "e5": "same_value",
        "e6": "value_mismatch",
        "e7": "empty_text",
        "e1": "duplicate_id",
    }
    assert set(pairs.dropped["table"]) == {"pairs"}


def test_human_pairs_need_their_columns(tmp_path: Path) -> None:
    notes = _write(tmp_path, [_row("a")])
    documents = load_documents(_config(notes), notes, VALUES).frame
    path = _pairs(tmp_path, [{key: value for key, value in _edit("e1", "a").items() if key != "from"}])
    with pytest.raises(ConfigError, match=r"^pairs.path: column 'from' is not in edits.jsonl"):
        load_pairs(path, documents, VALUES)


def test_long_ids_and_values_are_quoted_short_in_a_dataset_error(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row("i" * 100_000, ins="g" * 100_000)])
    with pytest.raises(
        ConfigError, match=r"^data: no usable row among 1: 1 row\(s\) unknown value in column 'ins'"
    ) as caught:
        load_documents(_config(path), path, VALUES)
    assert "… (100,000 characters)" in str(caught.value)
    assert len(str(caught.value)) < 500


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"case,note,ins,band,referred\nc1,\xff\xfe caf\xe9,private,old,1\n", "codec can't decode byte"),
        (
            b"case,note,ins,band,referred\nc1,a note,private,old,1\nc2,a note, with a comma,none,old,1\n",
            "Expected 5 fields in line 3, saw 6",
        ),
        (
            b"case,note,ins,band,referred\nc1,a note, with a comma,none,old,1\nc2,a note,private,old,1\n",
            r"its first row has more cells than the header has columns \(5\)",
        ),
        (b"", "No columns to parse from file"),
    ],
    ids=["not-utf8", "ragged-row", "ragged-first-row", "empty-file"],
)
def test_a_csv_that_cannot_be_parsed_names_the_file_and_the_problem(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^data.path: data file '.*notes.csv' cannot be read as csv: .*{words}"):
        load_documents(_config(path), path, VALUES)


def _split_corpus(tmp_path: Path) -> Path:
    """Ten good notes, c0..c9: even ones in the test split, odd ones in train; c3 is unannotated (bad)."""
    rows = [_row(f"c{i}", split="test" if i % 2 == 0 else "train") for i in range(10)]
    rows[3]["ins"] = ""
    return _write(tmp_path, rows)


def test_where_keeps_only_the_rows_asked_for_and_bad_rows_outside_it_are_not_reported(tmp_path: Path) -> None:
    path = _split_corpus(tmp_path)
    documents = load_documents(_config(path, where={"split": "test"}), path, VALUES)
    assert documents.frame["doc_id"].tolist() == ["c0", "c2", "c4", "c6", "c8"]
    assert documents.dropped.empty  # c3 is bad, but it was not asked for
    assert documents.left_out == ("c1", "c3", "c5", "c7", "c9")
    assert documents.record() == {"rows": 10, "kept": 5, "dropped": {}, "left_out": 5}
    both = load_documents(_config(path, where={"split": ["test", "train"]}), path, VALUES)
    assert len(both.frame) == 9 and both.counts() == {"unannotated": 1} and both.left_out == ()
    train = load_documents(_config(path, where={"split": "train"}), path, VALUES)
    assert train.dropped[["row", "id", "reason"]].values.tolist() == [[3, "c3", "unannotated"]]  # the file's row


def test_limit_draws_a_seeded_subset_of_the_good_documents_in_file_order(tmp_path: Path) -> None:
    path = _split_corpus(tmp_path)
    draws = {
        seed: load_documents(_config(path, limit=4, seed=seed), path, VALUES).frame["doc_id"].tolist()
        for seed in range(6)
    }
    for chosen in draws.values():
        assert len(chosen) == 4 and len(set(chosen)) == 4 and "c3" not in chosen  # a draw of the good rows
        assert chosen == sorted(chosen, key=lambda doc: int(doc[1:]))  # in file order
    assert load_documents(_config(path, limit=4, seed=2), path, VALUES).frame["doc_id"].tolist() == draws[2]
    assert len({tuple(chosen) for chosen in draws.values()}) > 1  # the seed matters
    whole = load_documents(_config(path, limit=100), path, VALUES)
    assert len(whole.frame) == 9 and whole.left_out == ()


def test_where_naming_a_missing_column_or_keeping_nothing_is_a_config_error(tmp_path: Path) -> None:
    path = _split_corpus(tmp_path)
    with pytest.raises(ConfigError, match=r"^data\.where\.fold: "):
        load_documents(_config(path, where={"fold": "test"}), path, VALUES)
    with pytest.raises(ConfigError, match=r"^data\.where: keeps none of the 10 rows"):
        load_documents(_config(path, where={"split": "validation"}), path, VALUES)
    with pytest.raises(ValueError, match=r"where\.split is an empty list"):
        _config(path, where={"split": []})


def test_a_pair_whose_original_was_left_out_is_dropped_as_left_out_not_unknown(tmp_path: Path) -> None:
    path = _split_corpus(tmp_path)
    documents = load_documents(_config(path, where={"split": "test"}), path, VALUES)
    edits = tmp_path / "edits.csv"
    pd.DataFrame(
        [
            {"id": "e1", "original_id": "c0", "factor": "insurance", "from": "private", "to": "none", "text": "a"},
            {"id": "e2", "original_id": "c1", "factor": "insurance", "from": "private", "to": "none", "text": "b"},
            {"id": "e3", "original_id": "zz", "factor": "insurance", "from": "private", "to": "none", "text": "c"},
        ]
    ).to_csv(edits, index=False)
    pairs = load_pairs(edits, documents.frame, VALUES, left_out=documents.left_out)
    assert pairs.frame["id"].tolist() == ["e1"]
    assert pairs.counts() == {"original_left_out": 1, "unknown_original": 1}
