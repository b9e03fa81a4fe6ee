"""Lesson 04's QLoRA run: the reproduction size per profile, curves cut to the steps both ran, the comparison at
equal steps, and the committed full-budget pair; lesson 05 leaves a shorter run out."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
from test_runs import V1_MANIFEST

from ftlib.core import runs
from ftlib.engine.profiles import PROFILES
from ftlib.lessons import lesson, qlora, reading

pytestmark = pytest.mark.unit


def test_the_cpu_profile_stops_after_the_first_steps_and_the_others_run_the_full_budget():
    cpu = qlora.lesson_run(replace(PROFILES["cpu"], method="qlora"), None)
    assert cpu.reproduction and cpu.config.stop_after_steps == qlora.REPRODUCTION_STEPS["cpu"] == 80
    # The schedule is the full run's: same steps, warm-up and rate as lesson 03's LoRA run.
    assert cpu.config.max_steps == PROFILES["cpu"].train.max_steps == 290
    assert cpu.config.method == "qlora" and cpu.config.warmup_steps == PROFILES["cpu"].train.warmup_steps
    assert "first 80 of the profile's 290 steps of 8 x 1, on the same learning-rate schedule" in cpu.sentence()
    profile = replace(PROFILES["cpu"], method="qlora")
    # A user's max_steps, a GPU plan and a profile without a reproduction size all train the full budget.
    assert qlora.lesson_run(profile.with_overrides(max_steps=120), None, max_steps=120).config.stop_after_steps is None
    assert qlora.lesson_run(profile, plan=SimpleNamespace()).config.stop_after_steps is None
    smoke = qlora.lesson_run(replace(PROFILES["smoke"], method="qlora"), None)
    assert not smoke.reproduction and smoke.config.max_steps == 3 and "full budget" in smoke.sentence()


def test_histories_are_cut_to_the_steps_qlora_ran():
    lora = {
        "train": [{"step": s, "loss": 1.0} for s in range(1, 291)],
        "val": [{"step": s, "loss": 0.5} for s in (40, 80, 120)],
    }
    cut = qlora.up_to_step({"LoRA": lora}, 80)["LoRA"]
    assert [p["step"] for p in cut["val"]] == [40, 80] and cut["train"][-1]["step"] == 80


def record(folder, steps, tokens_per_second, final_val_loss):
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(V1_MANIFEST))
    loaded = runs.load_run(folder)
    metrics = replace(loaded.metrics, train_tokens_per_second=tokens_per_second, final_val_loss=final_val_loss)
    changed = replace(loaded, checkpoints=replace(loaded.checkpoints, steps_run=steps), metrics=metrics)
    changed.write(folder)
    return changed


def test_qlora_vs_lora_at_equal_steps_when_qlora_ran_fewer(tmp_path):
    q = record(tmp_path / "q", 80, 280.0, 0.9)
    lo = record(tmp_path / "l", 290, 320.0, 0.2)
    histories = {
        "QLoRA": {"val": [{"step": 40, "loss": 1.30}, {"step": 80, "loss": 1.02}]},
        "LoRA": {"val": [{"step": 40, "loss": 1.28}, {"step": 80, "loss": 1.00}, {"step": 120, "loss": 0.8}]},
    }
    text = reading.qlora_vs_lora(q, lo, histories)
    assert "QLoRA ran 80 steps, LoRA 290" in text
    assert "at step 80, the last both ran: QLoRA 1.020, LoRA 1.000 (+0.020: QLoRA close to LoRA so far)" in text
    assert "QLoRA 280 tokens/s, LoRA 320 (0.88 x)" in text
    assert "0.900" not in text  # the final losses of different budgets are not compared
    assert "share no validation step" in reading.qlora_vs_lora(q, lo, {"QLoRA": {"val": []}, "LoRA": histories["LoRA"]})


def test_the_committed_full_budget_pair_is_read_with_intervals():
    pair = qlora.full_budget_pair("support_tickets")
    assert set(pair) == {"lora", "qlora"} and pair["qlora"].steps == pair["lora"].steps == 290
    rows = qlora.full_budget_rows(pair)
    assert [r["method"] for r in rows] == ["lora", "qlora"]
    assert rows[1]["field category"] == "0.95 [0.92, 0.98]" and rows[1]["train s"] == 1444
    sentence = qlora.full_budget_sentence(pair)
    assert (
        sentence.startswith("QLoRA against LoRA at 290 steps each") and "field test: category within noise" in sentence
    )
    assert qlora.full_budget_pair("listings") == {}
    assert "support_tickets only" in qlora.full_budget_sentence({})


def test_lesson_05_leaves_out_a_run_shorter_than_the_others(tmp_path, capsys):
    started = lesson.start("smoke", run_dir=str(tmp_path))
    record(tmp_path / "lora", 290, 320.0, 0.2)
    record(tmp_path / "qlora", 80, 280.0, 0.9)
    kept = started.full_budget_runs({"LoRA": "lora", "QLoRA": "qlora"})
    assert list(kept) == ["LoRA"]
    assert "QLoRA left out: it ran 80 steps against 290" in capsys.readouterr().out
    (tmp_path / "lora" / "manifest.json").unlink()
    assert list(started.full_budget_runs({"LoRA": "lora", "QLoRA": "qlora"})) == ["QLoRA"]  # alone, it is scored
