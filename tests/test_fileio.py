import csv
import json
import os

import pytest

from ftlib.core import fileio


def leftovers(folder):
    """Everything in ``folder`` but the files a test put there on purpose."""
    return sorted(path.name for path in folder.iterdir() if "partial" in path.name)


@pytest.mark.unit
def test_json_jsonl_csv_and_text_round_trip(tmp_path):
    value = {"name": "Zoë", "scores": [1, 2.5, None], "nested": {"ok": True}}
    path = fileio.write_json(value, tmp_path / "sub" / "value.json")  # the folder is created
    assert json.loads(path.read_text(encoding="utf-8")) == value
    assert path.read_text(encoding="utf-8").endswith("}\n") and "Zoë" in path.read_text(encoding="utf-8")

    records = [{"id": "a", "text": "ünïcode"}, {"id": "b", "text": "line\nbreak"}]
    lines = fileio.write_jsonl(records, tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records

    rows = [{"a": "1", "b": "x, with comma"}, {"a": "2", "b": 'quote "q"'}]
    csv_path = fileio.write_csv(rows, ["a", "b"], tmp_path / "rows.csv", encoding="utf-8-sig")
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")  # the BOM spreadsheet programs look for
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        assert list(csv.DictReader(handle)) == rows

    assert fileio.write_text("plain\n", tmp_path / "t.txt").read_text() == "plain\n"
    assert leftovers(tmp_path) == []


@pytest.mark.unit
def test_a_value_json_cannot_encode_leaves_the_old_file_and_no_partial(tmp_path):
    path = fileio.write_json({"version": 1}, tmp_path / "value.json")
    before = path.read_bytes()
    with pytest.raises(TypeError):
        fileio.write_json({"version": 2, "bad": object()}, path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.unit
def test_a_failure_midway_through_writing_leaves_the_old_file_and_no_partial(tmp_path):
    path = fileio.write_jsonl([{"n": 1}], tmp_path / "records.jsonl")
    before = path.read_bytes()

    def records():
        yield {"n": 2}  # already written to the temporary file when the next one fails
        raise RuntimeError("the generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        fileio.write_jsonl(records(), path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.unit
def test_a_failing_rename_leaves_the_old_file_and_no_partial(tmp_path, monkeypatch):
    path = fileio.write_text("old\n", tmp_path / "t.txt")

    def refuse(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        fileio.write_csv([{"a": 1}], ["a"], path)
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path) == []


@pytest.mark.unit
def test_the_file_and_its_folder_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def counting_fsync(descriptor):
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(fileio.os, "fsync", counting_fsync)
    fileio.write_json([1, 2], tmp_path / "a.json")
    assert len(synced) == 2  # the file's data before the rename, then the folder holding the rename
    partial = fileio.write_text("x", tmp_path / "new" / "x.txt").parent
    synced.clear()
    fileio.replace_dir(partial, tmp_path / "final")
    assert len(synced) == 1  # replace_dir syncs the folder its rename happened in


@pytest.mark.unit
def test_replace_dir_keeps_one_previous_generation_or_none(tmp_path):
    def folder(name, text):
        fileio.write_text(text, tmp_path / name / "content.txt")
        return tmp_path / name

    final = tmp_path / "run"
    fileio.replace_dir(folder(".run.partial", "first"), final)
    fileio.replace_dir(folder(".run.partial", "second"), final)
    fileio.replace_dir(folder(".run.partial", "third"), final)
    assert (final / "content.txt").read_text() == "third"
    assert (tmp_path / "run.previous" / "content.txt").read_text() == "second"
    assert not (tmp_path / ".run.partial").exists()

    fileio.replace_dir(folder("other", "fourth"), final, keep_previous=False)
    assert (final / "content.txt").read_text() == "fourth"
    assert (tmp_path / "run.previous" / "content.txt").read_text() == "second"  # untouched without keep_previous


@pytest.mark.unit
def test_atomic_path_moves_a_finished_file_in_and_leaves_the_old_one_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    with fileio.atomic_path(target) as partial:
        partial.write_bytes(b"first")
        assert not target.exists()  # nothing at the name until the block ends
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("the writer crashed")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]  # no temporary file left behind


@pytest.mark.unit
def test_replace_dir_does_not_keep_an_empty_folder_as_previous(tmp_path):
    (tmp_path / "run").mkdir()  # made ahead by a user, as `train --output` allows
    fileio.write_text("new", tmp_path / ".run.partial" / "content.txt")
    fileio.replace_dir(tmp_path / ".run.partial", tmp_path / "run")
    assert (tmp_path / "run" / "content.txt").read_text() == "new" and not (tmp_path / "run.previous").exists()
