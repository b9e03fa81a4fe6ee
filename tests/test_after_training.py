"""Lesson 07's sizes and steps (ftlib.lessons.after_training): what can be checked without training."""

import types
from pathlib import Path

import pytest
from scored import result

from ftlib.core.tasks import LISTINGS, SUPPORT_TICKETS
from ftlib.lessons import after_training
from ftlib.measure import forgetting
from ftlib.measure.registry import RegistryRow
from ftlib.measure.stats import Estimate

pytestmark = pytest.mark.unit


def test_sizes_per_profile_and_the_step_parameter():
    smoke = after_training.lesson_sizes("smoke")
    assert smoke.max_steps <= 3 and smoke.n_test <= 8 and smoke.answer_tokens <= 24  # CI: the mechanics only
    assert set(after_training.SIZES) == {"smoke", "cpu", "gpu"} and not after_training.SIZES["gpu"].full
    changed = after_training.lesson_sizes("cpu", max_steps=4)
    assert (changed.max_steps, changed.retune_steps) == (4, 4) and changed.warmup_steps < 4
    assert [row["setting"] for row in after_training.sizes_rows(smoke)][:2] == ["max_steps", "retune_steps"]


def test_later_batch_exists_for_the_tickets_only_and_splits_without_overlap():
    assert after_training.later_batch(LISTINGS) is None
    batch = after_training.later_batch(SUPPORT_TICKETS)
    splits = after_training.later_splits(batch, after_training.lesson_sizes("cpu"))
    parts = [splits.test, splits.val, splits.train]
    assert [len(p) for p in parts] == [32, 16, 128] and splits.batch == len(batch) == 600
    ids = [r["id"] for p in parts for r in p]
    assert len(ids) == len(set(ids))
    with pytest.raises(ValueError, match="the sizes need"):
        after_training.later_splits(batch[:10], after_training.lesson_sizes("cpu"))


def test_drift_study_skips_in_one_line_for_a_task_without_a_later_batch(tmp_path):
    lesson = types.SimpleNamespace(task=LISTINGS, paths=types.SimpleNamespace(root=tmp_path))
    study = after_training.drift_study(lesson, tmp_path / "lora", after_training.lesson_sizes("smoke"))
    assert study.skipped and "\n" not in study.note() and study.note().startswith("Drift and re-tuning skipped")
    assert study.split_rows() == study.score_current() == study.retune() == study.score_retunes() == []
    assert (
        study.weekly_check() is None and study.check_text() == study.retune_sentence() == study.shift_sentence() == ""
    )


def test_generic_prompts_cover_every_kind_first_and_the_other_task():
    kinds = {r["kind"] for r in forgetting.read_generic("measure")}
    picked = after_training.generic_prompts(len(kinds))
    assert {r["kind"] for r in picked} == kinds and all(r["split"] == "measure" for r in picked)
    assert after_training.other_task(SUPPORT_TICKETS).name == "listings"
    assert after_training.other_task(LISTINGS).name == "support_tickets"
    records = after_training.other_records(LISTINGS, 5)
    assert len(records) == 5 and all(str(r["description"]).strip() for r in records)


def test_tensorboard_note_names_each_run_and_the_command(tmp_path):
    assert "No TensorBoard event files" in after_training.tensorboard_note(tmp_path)
    for run in ("a", "b/c"):
        folder = tmp_path / run / "tensorboard" / "sub"
        folder.mkdir(parents=True)
        (folder / "events.out.tfevents.1.host").write_bytes(b"")
    note = after_training.tensorboard_note(tmp_path)
    assert "2 run(s)" in note and str(tmp_path / "b" / "c" / "tensorboard") in note
    assert f"tensorboard --logdir {tmp_path}" in note


def test_registry_rows_leave_the_scores_out():
    row = RegistryRow("r", Path("r"), "lora", "m", "p", "abc", 3, 1.5, {"json_valid": 0.5})
    assert after_training.registry_rows([row]) == [
        {"run": "r", "method": "lora", "parent": "p", "train data": "abc", "steps": 3, "final val loss": 1.5}
    ]


def test_sentences_read_the_intervals():
    def stat(value, low, high):
        return Estimate(value, low, high)

    def report(label, kl):
        both = {"generic": kl, "all": kl}
        return forgetting.ForgettingReport(label, [], both, both, {"generic": 5, "all": 5})

    study = after_training.ForgettingStudy(
        {"LoRA": report("LoRA", stat(0.01, 0.008, 0.012)), "full fine-tune": report("full", stat(0.05, 0.04, 0.06))},
        {},
        {},
        {},
        "listings",
        2,
    )
    text = study.sentence()
    assert "LoRA moved 0.0100 nats per token" in text and "full fine-tune: 0.0500 [0.0400, 0.0600]" in text
    assert "further than LoRA" in text
    results = {
        "old test": {"in use": result({"m": (0.8, 0.7, 0.9)})},
        "new test": {"in use": result({"m": (0.4, 0.3, 0.5)})},
    }
    assert "lower on the new tickets" in after_training.shift_sentence(results, "in use", ["m"])


def test_shipping_note_says_where_and_that_nothing_was_run(tmp_path):
    report = types.SimpleNamespace(
        ok=True,
        gguf=str(tmp_path / "model.gguf"),
        gguf_dtype="f32",
        gguf_bytes=540_000_000,
        merged_dir=str(tmp_path / "merged"),
        modelfile=str(tmp_path / "Modelfile"),
    )
    note = after_training.shipping_note(report)
    assert "540 MB" in note and "not run here" in note and "ollama create" in note and "llama-cli -m" in note
    assert after_training.parity_verdict(report) == "Parity: every check passed."
    report.ok = False
    assert "do not ship" in after_training.parity_verdict(report)
