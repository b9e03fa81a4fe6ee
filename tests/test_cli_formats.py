"""``train`` and ``evaluate`` on your own data: a task spec of its own, CSV, Parquet, JSON and saved datasets."""

import csv
import json

import datasets
import pytest
from conftest import tiny_train_args  # tests/, on pytest's path

from ftlib.core import runs
from ftlib.course import cli

pytestmark = pytest.mark.unit

VERDICT_SPEC = """\
name: review_verdict
input_field: review
answer_fields: [verdict, reason]
labels:
  verdict: [recommend, avoid]
instruction: >-
  Read the product review. Answer only with JSON:
  {"verdict": recommend|avoid, "reason": a short phrase}.
stratify_field: verdict
"""
REVIEWS = [
    {"id": "r1", "review": "Sturdy, quiet and cheap.", "verdict": "recommend", "reason": "good value"},
    {"id": "r2", "review": "Stopped working after a week", "verdict": "avoid", "reason": "broke quickly"},
    {"id": "r3", "review": 'Does what it says:\n"five stars"', "verdict": "recommend", "reason": "works as described"},
    {"id": "r4", "review": "The lid cracked on day one", "verdict": "avoid", "reason": "poor build"},
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """datasets' cache in the test's own folder."""
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path / "cache"))


def write_csv(path, rows, extra_lines: str = ""):
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        file.write(extra_lines)
    return path


def write_spec(tmp_path):
    spec = tmp_path / "review_verdict.yaml"
    spec.write_text(VERDICT_SPEC)
    return spec


def evaluate_args(run, data, output, spec, *extra: str) -> list[str]:
    command = ["evaluate", "--run", str(run), "--data", str(data), "--output", str(output), "--task", str(spec)]
    return [*command, "--max-new-tokens", "4", *extra]


def test_train_then_evaluate_a_new_task_from_csv_parquet_json_and_a_saved_folder(tmp_path, capsys):
    spec = write_spec(tmp_path)
    train_csv = write_csv(tmp_path / "train.csv", REVIEWS * 2)  # r3's quoted cell spans two lines
    val_parquet = tmp_path / "val.parquet"
    datasets.Dataset.from_list(REVIEWS).to_parquet(str(val_parquet))
    run = tmp_path / "run"
    command = tiny_train_args(train_csv, val_parquet, run, max_steps=1, batch_size=4, eval_steps=1, max_length=256)
    assert cli.main([*command, "--task", str(spec), "--no-save-checkpoints"]) == 0
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    record = runs.load_run(run)
    assert record.data.train_examples == 8 and record.data.val_examples == 4
    assert f"run folder         {run}" in capsys.readouterr().out

    label_metrics = {"verdict_accuracy", "verdict_macro_f1"}
    assert cli.main(evaluate_args(run, val_parquet, tmp_path / "parquet.json", spec)) == 0
    result = json.loads((tmp_path / "parquet.json").read_text())
    assert set(result["metrics"]) == {"json_valid", *label_metrics, "reason_rougeL"}
    assert all(0 <= result["metrics"][name]["value"] <= 1 for name in label_metrics)
    assert len(result["predictions"]) == 4 and result["data"] == str(val_parquet)
    assert f"on {val_parquet} (4 records)" in capsys.readouterr().out

    test_json = tmp_path / "test.json"  # a JSON array; no reasons: their ROUGE-L is left out
    test_json.write_text(json.dumps([{k: v for k, v in r.items() if k != "reason"} for r in REVIEWS], indent=2))
    assert cli.main(evaluate_args(run, test_json, tmp_path / "json.json", spec)) == 0
    assert set(json.loads((tmp_path / "json.json").read_text())["metrics"]) == {"json_valid", *label_metrics}

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(REVIEWS[:1]), "test": datasets.Dataset.from_list(REVIEWS[1:])}
    ).save_to_disk(str(saved))
    assert cli.main(evaluate_args(run, saved, tmp_path / "saved.json", spec, "--split", "test")) == 0
    result = json.loads((tmp_path / "saved.json").read_text())
    assert len(result["predictions"]) == 3 and result["split"] == "test"
    assert f"on {saved}[test] (3 records)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command, row, field",
    [("train", "r5,Too loud at night", "verdict"), ("evaluate", "r5", "review")],  # evaluate needs only the input
)
def test_a_csv_row_missing_a_field_is_named_before_any_model_loads(tmp_path, capsys, command, row, field):
    spec = write_spec(tmp_path)
    # The header is line 1 and r3's review spans lines 4-5: the short row is line 6.
    bad = write_csv(tmp_path / "bad.csv", REVIEWS[:3], extra_lines=row + "\n")
    val = write_csv(tmp_path / "val.csv", REVIEWS)
    args = {  # no such model: reaching a model would fail differently
        "train": [*tiny_train_args(bad, val, tmp_path / "run", base_model="no-such-model"), "--task", str(spec)],
        "evaluate": evaluate_args("no-such-model", bad, tmp_path / "m.json", spec),
    }[command]
    assert cli.main(args) == 2
    err = capsys.readouterr().err  # both problems at once: the row, and the model that does not exist
    assert err.startswith("error: 2 problems") and f"  - {bad}, line 6, field '{field}': missing field\n" in err
    assert "  - no run folder or registry model named no-such-model" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.json").exists()


def test_a_csv_row_with_too_many_cells_is_named_by_its_line(tmp_path, capsys):
    spec = write_spec(tmp_path)
    bad = write_csv(tmp_path / "bad.csv", REVIEWS[:2], extra_lines="r5,Loud, but fine,recommend,quiet enough\n")
    assert cli.main(evaluate_args("no-such-model", bad, tmp_path / "m.json", spec)) == 2
    assert f"  - {bad}, line 4: 5 cells for the header's 4 columns" in capsys.readouterr().err


def test_split_and_revision_flags(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path)
    val = write_csv(tmp_path / "val.csv", REVIEWS)
    # A split of a single file is refused, naming the file.
    assert cli.main(evaluate_args("no-such-model", val, tmp_path / "m.json", spec, "--split", "test")) == 2
    assert f"  - {val}: a split or revision applies to datasets, not to a single file" in capsys.readouterr().err

    # A hub id while the hub is unreachable: one clear line at once, naming the id and split, for --data or --val.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train_args = tiny_train_args("someone/reviews", val, tmp_path / "run", base_model="no-such-model")
    assert cli.main([*train_args, "--task", str(spec), "--split", "train", "--revision", "v1"]) == 2
    err = capsys.readouterr().err
    assert "  - someone/reviews[train]: no such local file or folder, and the Hugging Face Hub" in err
    train_args = tiny_train_args(val, "someone/reviews", tmp_path / "run", base_model="no-such-model")
    assert cli.main([*train_args, "--task", str(spec), "--val-split", "validation"]) == 2
    assert "  - someone/reviews[validation]: no such local file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
