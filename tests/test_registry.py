"""Re-tunes with lineage, the registry of runs, old manifests, and the optional TensorBoard tracker."""

import json
from dataclasses import asdict, replace

import pytest

from ftlib.core import runs
from ftlib.core.config import TrainConfig
from ftlib.core.tasks import SUPPORT_TICKETS
from ftlib.engine import train, trainer
from ftlib.measure import drift, registry
from tests.conftest import TICKETS
from tests.test_runs import V1_MANIFEST

LATER = [
    {"id": "n1", "ticket": "NovaStream is completely down on every TV", "category": "outage", "urgency": "high",
     "reply": "Sorry, we're fixing the streaming platform now."},
    {"id": "n2", "ticket": "how do I pair the voice remote with the Nova Hub 6?", "category": "hardware",
     "urgency": "low", "reply": "I've emailed you the pairing steps."},
]  # fmt: skip


def tiny_config(**overrides):
    settings = dict(
        max_steps=2, batch_size=2, eval_steps=2, warmup_steps=0, learning_rate=1e-2, lora_r=4, seed=0, max_length=512
    )  # the byte-level tokenizer spells the instruction out: 256 would cut answers
    return TrainConfig(**(settings | overrides))


@pytest.fixture(scope="module")
def lineage_runs(tmp_path_factory, cpu):
    """A first run and two re-tunes of it (new data only, and with replay), in one registry folder."""
    root = tmp_path_factory.mktemp("registry")
    first = train.train(
        "tiny-random-llama", TICKETS, TICKETS, root / "lora", config=tiny_config(), task=SUPPORT_TICKETS, device=cpu
    )
    new_only = drift.retune(root / "lora", LATER * 2, LATER, root / "retune-new", task=SUPPORT_TICKETS, device=cpu)
    replayed = drift.retune_records(LATER * 2, TICKETS, replay_share=0.5, seed=0)
    replay = drift.retune(
        root / "retune-new", replayed, LATER, root / "retune-replay", task=SUPPORT_TICKETS, device=cpu
    )
    return root, first, new_only, replay


@pytest.mark.unit
def test_retune_manifest_names_its_parent_and_its_data(lineage_runs):
    root, first, new_only, replay = lineage_runs
    assert first.record.parent is None
    parent = runs.load_run(root / "retune-new").parent
    assert parent == runs.ParentRun(str(root / "lora"), first.record.data.train_sha256, first.record.data.val_sha256)
    assert new_only.record.continued_from == str(root / "lora" / "adapter")
    assert new_only.record.data.train_sha256 != first.record.data.train_sha256  # the new data's own hash
    assert runs.load_run(root / "retune-replay").parent.run == str(root / "retune-new")
    assert replay.record.data.train_examples == 8  # 4 new + 4 replayed old tickets
    assert json.loads((root / "retune-new" / "manifest.json").read_text())["parent"]["run"] == str(root / "lora")


@pytest.mark.unit
def test_retune_never_writes_over_a_run(lineage_runs, cpu):
    root, *_ = lineage_runs
    before = (root / "retune-new" / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run"):
        drift.retune(root / "lora", LATER, LATER, root / "retune-new", task=SUPPORT_TICKETS, device=cpu)
    assert (root / "retune-new" / "manifest.json").read_bytes() == before


@pytest.mark.unit
def test_a_lesson_rerun_retunes_again_and_keeps_the_earlier_run(lineage_runs, cpu, tmp_path):
    root, *_ = lineage_runs
    import shutil

    folder = tmp_path / "retune"
    shutil.copytree(root / "retune-new", folder)
    before = (folder / "manifest.json").read_bytes()
    again = drift.retune(root / "lora", LATER, LATER, folder, task=SUPPORT_TICKETS, device=cpu, replace=True)
    assert again.record.parent.run == str(root / "lora")
    assert (folder.with_name("retune.previous") / "manifest.json").read_bytes() == before


@pytest.mark.unit
def test_registry_rows_scores_and_lineage(lineage_runs):
    root, first, *_ = lineage_runs
    result = {"metrics": {"json_valid": {"value": 0.5, "low": 0.2, "high": 0.8}}, "examples": 4}
    registry.save_evaluation(root / "retune-new", result)
    rows = {row.name: row for row in registry.runs_table(root)}
    assert list(rows) == ["lora", "retune-new", "retune-replay"]
    assert rows["lora"].parent is None and rows["retune-new"].parent == "lora"
    assert rows["retune-replay"].parent == "retune-new"
    assert rows["lora"].train_data == first.record.data.train_sha256[:12]
    assert rows["lora"].steps == 2 and rows["lora"].method == "lora" and rows["lora"].base_model == "tiny-random-llama"
    assert rows["lora"].final_val_loss == first.record.metrics.final_val_loss
    assert rows["retune-new"].scores == {"json_valid": 0.5} and rows["lora"].scores == {}
    assert rows["retune-new"].as_row()["json_valid"] == 0.5
    assert registry.lineage(list(rows.values())) == ["lora -> retune-new -> retune-replay"]


@pytest.mark.unit
def test_registry_reads_old_manifests_lesson_scores_and_skips_broken_ones(tmp_path):
    """Version 1 and 2 manifests (no parent field) still load; an older re-tune's parent comes from continued_from."""
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "manifest.json").write_text(json.dumps(V1_MANIFEST))
    v2 = runs.load_run(tmp_path / "lora")
    v2_values = {"version": 2} | {k: v for k, v in asdict(v2).items() if k not in ("version", "parent")}
    v2_values["continued_from"] = str(tmp_path / "lora" / "adapter")
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "manifest.json").write_text(json.dumps(v2_values))
    assert runs.load_run(tmp_path / "later").parent is None and runs.load_run(tmp_path / "later").version == 3
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"LoRA": {"metrics": {"json_valid": {"value": 1.0}}}}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    (tmp_path / ".lora.partial").mkdir()  # a scratch folder is never a run
    (tmp_path / ".lora.partial" / "manifest.json").write_text(json.dumps(V1_MANIFEST))
    with pytest.warns(UserWarning, match="broken"):
        rows = registry.runs_table(tmp_path)
    assert [row.name for row in rows] == ["later", "lora"]
    assert rows[0].parent == "lora" and rows[1].scores == {"json_valid": 1.0}  # lesson 05's "LoRA" is lora/
    assert registry.lineage(rows) == ["lora -> later"]
    outside = replace(rows[0], name="elsewhere", parent="/old/runs/first")
    assert registry.lineage([outside]) == ["/old/runs/first (not here) -> elsewhere"]


@pytest.mark.unit
def test_report_to_is_off_by_default_and_checked():
    assert TrainConfig().report_to == "none"
    with pytest.raises(ValueError, match="report_to must be one of"):
        tiny_config(report_to="wandb").validate()
    key = train.run_key("m", tiny_config(report_to="tensorboard"), TICKETS, TICKETS)
    assert key == train.run_key("m", tiny_config(), TICKETS, TICKETS)  # logging elsewhere changes no result


@pytest.mark.unit
def test_tensorboard_writes_offline_into_the_run_folder(tmp_path, cpu, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    config = tiny_config(report_to="tensorboard")
    result = train.train("tiny-random-llama", TICKETS, TICKETS, tmp_path / "run", config=config, device=cpu,
                         task=SUPPORT_TICKETS)  # fmt: skip
    events = list((tmp_path / "run" / trainer.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    # one file for training, one for the final validation Trainer logs after on_train_end closed the first
    assert events and not list(tmp_path.glob(".run.partial"))
    log = EventAccumulator(str(events[0].parent))
    log.Reload()
    losses = [event.value for event in log.Scalars("train/loss")]
    assert len(losses) == 2 and losses == pytest.approx([p["loss"] for p in result.history["train"]], rel=1e-5)
    assert "eval/loss" in log.Tags()["scalars"]
    assert runs.load_run(tmp_path / "run").config.report_to == "tensorboard"
    quiet = train.train("tiny-random-llama", TICKETS, TICKETS, tmp_path / "off", config=tiny_config(), device=cpu,
                        task=SUPPORT_TICKETS)  # fmt: skip
    assert not (quiet.output_dir / trainer.TENSORBOARD_DIR).exists()
