"""Computed "Reading it" sentences, and lesson 04's comparison without lesson 03's run."""

import json
from dataclasses import replace

import numpy as np
import pytest
from scored import result
from test_runs import V1_MANIFEST

from ftlib.core import runs
from ftlib.course.timings import CPU_2_CORES, CPU_2_CORES_SLOWER, run_time_text, short_duration
from ftlib.lessons import lesson, reading
from ftlib.lessons.choice import CandidateScores

pytestmark = pytest.mark.unit


def record(tmp_path, **metrics) -> runs.RunRecord:
    (tmp_path / "manifest.json").write_text(json.dumps(V1_MANIFEST))
    loaded = runs.load_run(tmp_path)
    return replace(loaded, metrics=replace(loaded.metrics, **metrics)) if metrics else loaded


def test_loss_reading_names_the_fall_the_rise_and_the_kept_step():
    history = {
        "train": [{"step": s, "loss": 3.0 - 0.1 * s} for s in range(1, 9)],
        "val": [{"step": 2, "loss": 2.5}, {"step": 4, "loss": 2.0}, {"step": 8, "loss": 2.2}],
    }
    text = reading.loss_reading(history, best_step=4)
    assert "fell from 2.500 (step 2) to 2.200 (step 8)" in text
    assert "lowest at step 4 (2.000) and rose after" in text
    assert "checkpoint of step 4" in text
    assert "too few steps" in reading.loss_reading({"train": [], "val": [{"step": 3, "loss": 1.0}]})
    assert "No validation loss" in reading.loss_reading({"train": [{"step": 1, "loss": 1.0}]})


def test_memory_reading_compares_estimate_and_measurement(tmp_path):
    text = reading.memory_reading(record(tmp_path))
    measured = 1000.0 * 2**20 / 1e9
    assert f"Estimated peak 1.09 GB, measured {measured:.2f} GB" in text
    assert "largest part of the estimate is weights" in text


def test_qlora_vs_lora_compares_loss_memory_and_time(tmp_path):
    (tmp_path / "q").mkdir()
    (tmp_path / "l").mkdir()
    qlora = record(tmp_path / "q", final_val_loss=1.2, train_seconds=30.0)
    lora = record(tmp_path / "l", final_val_loss=1.0, train_seconds=20.0)
    text = reading.qlora_vs_lora(qlora, lora)
    assert "QLoRA 1.200, LoRA 1.000 (+0.200: QLoRA ends above LoRA)" in text
    assert "(1.00 x)" in text and "(1.50 x)" in text
    assert "close to" in reading.qlora_vs_lora(replace(qlora, metrics=lora.metrics), lora)


def test_lesson_04_without_lesson_03s_run(tmp_path, capsys):
    """04's cells on a run folder where only QLoRA ran: no LoRA record, no LoRA curve, a sentence saying what to do."""
    started = lesson.start("smoke", run_dir=str(tmp_path))
    (tmp_path / "qlora").mkdir()
    qlora = record(tmp_path / "qlora")
    (tmp_path / "qlora" / "history.json").write_text(json.dumps({"train": [], "val": []}))
    found = {"QLoRA": qlora} | started.records({"LoRA": "lora"})
    assert list(found) == ["QLoRA"]
    assert "No LoRA run" in capsys.readouterr().out
    assert started.histories({"LoRA": "lora"}) == {}
    assert started.histories({"QLoRA": "qlora"}) == {"QLoRA": {"train": [], "val": []}}
    text = reading.qlora_vs_lora(qlora, found.get("LoRA"))
    assert text.startswith("QLoRA alone") and "run 03_lora.ipynb with the same run_dir" in text


def test_confusion_reading_finds_the_largest_mix_up():
    columns = ["billing", "outage", "(invalid)"]
    matrix = np.array([[5, 1, 0], [3, 4, 2]])
    text = reading.confusion_reading(columns, matrix, ["billing", "outage"], "category")
    assert text.startswith("category: 9 of 15 right, 2 invalid")
    assert "outage answered as billing (3 times)" in text
    assert "(once)" in reading.confusion_reading(columns, np.array([[5, 1, 0], [0, 4, 2]]), ["billing", "outage"], "c")
    assert "no test answers" in reading.confusion_reading(columns, np.zeros((2, 3)), ["billing", "outage"], "x")


def test_few_shot_reading_decides_by_interval_overlap():
    def stats(value, low, high):
        return result({"json_valid": (value, low, high)})

    measured = {
        "a": CandidateScores(stats(0.1, 0.0, 0.2), stats(0.8, 0.6, 0.9), 10.0, 0),
        "b": CandidateScores(stats(0.5, 0.3, 0.7), stats(0.6, 0.4, 0.8), 10.0, 0),
    }
    lines = reading.few_shot_reading(measured, "json_valid").splitlines()
    assert lines[0] == "a: json_valid 0.10 zero-shot, 0.80 few-shot: three examples in the prompt clearly raised it."
    assert lines[1].endswith("made no clear difference (the intervals overlap).")


def test_run_time_text_quotes_the_measurement_and_no_unmeasured_figure():
    assert short_duration(10.5) == "10.5 s" and short_duration(1206) == "20 min 6 s" and short_duration(180) == "3 min"
    text = run_time_text("03_lora")
    assert "`cpu` profile, 2 cores: 29 min 19 s (a 2-core AMD EPYC" in text and "2 cores: 30.1 s" in text
    assert "`cpu` profile, 2 cores: 15 min 6 s" in run_time_text("03_lora", cpu=CPU_2_CORES)
    assert text.count("not measured") == 1  # no GPU was measured
    newer = run_time_text("06_missing", cpu=CPU_2_CORES)  # a notebook newer than the measurement
    assert newer.count("not measured yet by `make curriculum`") == 2 and " s (" not in newer
    # A notebook whose run changed after a measurement quotes the next measurement of its current run.
    assert "04_qlora" in CPU_2_CORES.seconds and "04_qlora" in CPU_2_CORES.changed_since
    later = (CPU_2_CORES, CPU_2_CORES_SLOWER)
    assert "`cpu` profile, 2 cores: 16 min 33 s (measured on an idle but slower machine" in run_time_text(
        "04_qlora", cpu=later
    )
    changed = run_time_text("04_qlora", cpu=CPU_2_CORES)
    assert "`cpu` profile, 2 cores: not measured yet" in changed and "15 min 17 s" not in changed
