"""benchmarks/reference_run.py: which runs are left, in which order, and the command each one is."""

import json
import sys
from pathlib import Path

import pytest
from conftest import load_script

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_run.py"


@pytest.fixture(scope="module")
def reference():
    return load_script(SCRIPT, "reference_run")


def test_finished_runs_are_skipped_and_first_seeds_come_first(reference, tmp_path):
    results = tmp_path / "runs.json"
    results.write_text(json.dumps({"defaults / seed 0": {}, "raw data / seed 1": {}}))
    todo = reference.plan(["defaults", "raw data", "lr 1e-4"], [0, 1], results)
    assert todo == [("raw data", 0), ("lr 1e-4", 0), ("defaults", 1), ("lr 1e-4", 1)]
    assert reference.plan(["defaults"], [0], results) == []


def test_each_run_is_one_quality_bar_variant_named_after_its_experiment_and_seed(reference, tmp_path):
    out = tmp_path / "runs.json"
    line = reference.command("lr 1e-4", 1, out)
    assert line[1].endswith("quality_bar.py")
    expected = [*"--methods lora --learning-rate 1e-4 --seed 1 --name".split(), "lr 1e-4 / seed 1", "--output"]
    assert line[2:] == [*expected, str(out)]
    full = reference.command("full fine-tune", 0, out)
    assert full.count("--methods") == 1 and full[full.index("--methods") + 1] == "full"
    assert all(reference.command(name, 0, out) for name in reference.EXPERIMENTS)


def test_list_trains_nothing(reference, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reference.subprocess, "run", lambda *a, **k: pytest.fail("--list must not train"))
    arguments = ["--list", "--output", str(tmp_path / "none.json"), "--only", "defaults", "--seeds", "0"]
    assert reference.main(arguments) == 0
    out = capsys.readouterr().out
    assert "0 of 1 runs done" in out and "to do: defaults / seed 0" in out
    assert sys.executable not in out  # the printed command starts at the script's arguments
