"""read_records: every supported source reads back the records written, and errors keep their file, row and field."""

import csv
import json

import datasets
import pytest

from ftlib.data import records as data
from ftlib.data.records import DataError

pytestmark = pytest.mark.unit

ROWS = [
    {"id": "t1", "ticket": "007: my internet is down since this morning", "category": "outage", "urgency": "high"},
    {"id": "t2", "ticket": "n/a", "category": "billing", "urgency": "low"},
    {"id": "t3", "ticket": "I was charged twice for March", "category": "billing", "urgency": "medium"},
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """datasets' cache goes to a folder of the test's own, and the test can check that nothing lands elsewhere."""
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path / "cache"))


def write_csv(path, rows, blank_after: int | None = None):
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for index, row in enumerate(rows):
            writer.writerow(row)
            if index == blank_after:
                file.write("\n")
    return path


def test_csv_round_trip_keeps_every_cell_as_written(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    path = write_csv(folder / "tickets.csv", ROWS, blank_after=0)
    before = path.read_bytes()
    records = data.read_records(path)
    assert records == ROWS  # "007: ..." and "n/a" stay text, not a number or a missing value
    assert records.lines == [2, 4, 5]  # the header is line 1; the blank line is counted, not read
    assert records.source == str(path)
    assert path.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["tickets.csv"]
    assert any((tmp_path / "cache" / "datasets").iterdir())


def test_parquet_round_trip_leaves_out_nulls(tmp_path):
    path = tmp_path / "tickets.parquet"
    uneven = [*ROWS[:2], {"id": "t3", "ticket": "no urgency here at all", "category": "billing"}]
    datasets.Dataset.from_list(uneven).to_parquet(str(path))
    records = data.read_records(path)
    assert records == uneven  # Arrow stored t3's urgency as null: it reads back as an absent field
    assert records.lines == [1, 2, 3]


def test_json_array_round_trip_numbers_records_by_their_first_line(tmp_path):
    path = tmp_path / "tickets.json"
    path.write_text(json.dumps(ROWS, indent=2))
    records = data.read_records(path)
    assert records == ROWS
    assert records.lines == [2, 8, 14]  # indent=2: "[" then six lines per record


def test_jsonl_round_trip_matches_read_jsonl(tmp_path):
    path = tmp_path / "tickets.jsonl"
    data.write_jsonl(ROWS, path)
    assert data.read_records(path) == data.read_jsonl(path) == ROWS
    assert data.read_records(path).lines == [1, 2, 3]


def test_saved_folder_reads_the_chosen_split(tmp_path):
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS[:2]), "test": datasets.Dataset.from_list(ROWS[2:])}
    ).save_to_disk(str(tmp_path / "saved"))
    assert data.read_records(tmp_path / "saved") == ROWS[:2]
    test = data.read_records(tmp_path / "saved", split="test")
    assert test == ROWS[2:] and test.source == f"{tmp_path / 'saved'}[test]"
    with pytest.raises(DataError, match=r"no split 'val'; the splits are \['test', 'train'\]"):
        data.read_records(tmp_path / "saved", split="val")


def test_bad_csv_row_is_named_by_file_line_and_field(tmp_path, task):
    bad = [{**ROWS[0], "ticket": "two\nlines"}, ROWS[1], {**ROWS[2], "category": "refunds"}]
    records = data.read_records(write_csv(tmp_path / "tickets.csv", bad, blank_after=0))
    # A quoted cell spans lines 2-3 and line 4 is blank: the bad row starts on line 6.
    with pytest.raises(DataError, match=r"tickets\.csv, line 6, field 'category'") as info:
        data.check_labels(records, task, records.source)
    assert info.value.line == 6 and info.value.field == "category"


def test_bad_parquet_row_is_named_by_row_and_field(tmp_path, task):
    path = tmp_path / "tickets.parquet"
    datasets.Dataset.from_list([ROWS[0], {**ROWS[1], "urgency": "whenever"}]).to_parquet(str(path))
    records = data.read_records(path)
    with pytest.raises(DataError, match=r"tickets\.parquet, row 2, field 'urgency'"):
        data.check_labels(records, task, records.source)


def test_bad_jsonl_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "tickets.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"id": "t2", "ticket": \n')
    with pytest.raises(DataError, match=r"tickets\.jsonl, line 3: not valid JSON"):
        data.read_records(path)


def test_bad_json_array_item_is_named_by_its_line(tmp_path):
    path = tmp_path / "tickets.json"
    path.write_text('[\n  {"id": "t1"},\n  "just text"\n]\n')
    with pytest.raises(DataError, match=r"tickets\.json, line 3: expected a JSON object, got str"):
        data.read_records(path)


def test_a_trailing_comma_in_a_json_array_is_refused_by_its_line(tmp_path):
    path = tmp_path / "tickets.json"
    path.write_text('[\n  {"id": "t1", "ticket": "a"},\n]\n')
    with pytest.raises(DataError, match=r"tickets\.json, line 3: not valid JSON \(a ',' before the closing '\]'\)"):
        data.read_records(path)


def test_checked_labels_keep_the_file_name(tmp_path, task):
    records = data.read_records(data.write_jsonl([{"ticket": "a", "category": "billing"}], tmp_path / "t.jsonl"))
    kept, _ = data.check_labels(records, task, records.source)
    assert kept.source == str(tmp_path / "t.jsonl")


def test_offline_hub_id_is_a_clear_error_at_once(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"org/tickets\[test\]: .*Hub is not reachable \(offline\)"):
        data.read_records("org/tickets", split="test", revision="v1")


def test_missing_file_and_split_on_a_file_are_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.read_records(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not to a single file"):
        data.read_records(write_csv(tmp_path / "t.csv", ROWS), split="train")


def test_short_csv_row_lacks_the_fields_of_its_missing_cells(tmp_path):
    path = write_csv(tmp_path / "tickets.csv", ROWS)
    with path.open("a", encoding="utf-8") as file:
        file.write('t4,"no labels, yet"\nt5,,,\n')
    records = data.read_records(path)
    assert records[3:] == [
        {"id": "t4", "ticket": "no labels, yet"},
        {"id": "t5", "ticket": "", "category": "", "urgency": ""},
    ]
    assert records.lines == [2, 3, 4, 5, 6]
