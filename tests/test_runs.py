"""The run record: version 1 manifests read, unknown versions refused, display rows from the dataclass."""

import json
from dataclasses import replace

import pytest

from ftlib.core import runs
from ftlib.core.config import TrainConfig
from ftlib.engine.profiles import PROFILES
from ftlib.lessons import lesson, plots

pytestmark = pytest.mark.unit

# What train.train wrote before the version field (commit 7ccf5a8): measured peaks beside a display-row estimate.
V1_MANIFEST = {
    "base_model": "tiny-random-llama",
    "method": "lora",
    "continued_from": None,
    "config": {"method": "lora", "lora_r": 8, "max_steps": 8, "batch_size": 4},
    "device": "cpu (float32)",
    "world_size": 1,
    "global_batch_size": 4,
    "torch_threads": 1,
    "data": {
        "train_sha256": "a" * 64,
        "val_sha256": "b" * 64,
        "train_examples": 16,
        "val_examples": 4,
        "train_truncated": 0,
        "val_truncated": 0,
        "dropped_without_answer_tokens": 0,
    },
    "parameters": {"trainable": 1000, "total": 101000, "trainable_percent": 0.9901},
    "checkpoints": {"resumed_from": None, "best_step": 8, "best_val_loss": 3.5, "steps_run": 8, "stopped_early": False},
    "metrics": {
        "train_loss": 4.2,
        "final_val_loss": 3.5,
        "train_tokens": 2000,
        "train_seconds": 2.0,
        "train_tokens_per_second": 1000.0,
        "computed_tokens": 1500,
    },
    "memory": {
        "peak_rss_mb": 1000.0,
        "estimate": {
            "method": "lora",
            "device": "cpu",
            "batch": 4,
            "seq_len": 120,
            "weights GB": 0.5,
            "adapters GB": 0.01,
            "optimizer GB": 0.02,
            "gradients GB": 0.01,
            "activations GB": 0.2,
            "workspace GB": 0.0,
            "mapped_checkpoint GB": 0.0,
            "allocator GB": 0.05,
            "baseline GB": 0.3,
            "total GB": 1.09,
            "peak phase": "backward",
        },
    },
    "wall_seconds": 5.0,
    "versions": {"python": "3.12", "torch": "2.8"},
}


def write(tmp_path, values) -> str:
    (tmp_path / "manifest.json").write_text(json.dumps(values))
    return str(tmp_path)


def test_version_1_manifest_is_read_and_converted(tmp_path):
    record = runs.load_run(write(tmp_path, V1_MANIFEST))
    assert record.version == runs.SCHEMA_VERSION
    assert record.config == TrainConfig(lora_r=8, max_steps=8, batch_size=4)
    assert record.memory.measured == runs.MeasuredMemory(peak_rss_mb=1000.0)
    assert record.memory.estimate.total_gb == 1.09 and record.memory.estimate.components_gb["weights"] == 0.5
    assert record.memory.estimate.peak_phase == "backward"
    assert record.parent is None  # lineage arrived in version 3
    # Written back, it is a current-version manifest that reads to the same record.
    again = tmp_path / "again"
    again.mkdir()
    record.write(again)
    assert json.loads((again / "manifest.json").read_text())["version"] == runs.SCHEMA_VERSION == 3
    assert runs.load_run(again) == record


@pytest.mark.parametrize("version", [4, "2", 0])
def test_unknown_version_is_refused_naming_the_file(tmp_path, version):
    with pytest.raises(runs.ManifestError, match=rf"manifest.json: manifest version {version!r} is not one"):
        runs.load_run(write(tmp_path, V1_MANIFEST | {"version": version}))


def test_missing_or_broken_manifests_are_named(tmp_path):
    with pytest.raises(runs.ManifestError, match="no run manifest there"):
        runs.load_run(tmp_path)
    without_metrics = {key: value for key, value in V1_MANIFEST.items() if key != "metrics"}
    with pytest.raises(runs.ManifestError, match="manifest.json: .*metrics"):
        runs.load_run(write(tmp_path, without_metrics))
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(runs.ManifestError, match="not valid JSON"):
        runs.load_run(tmp_path / "manifest.json")


def test_rows_and_memory_come_from_the_record(tmp_path):
    record = runs.load_run(write(tmp_path, V1_MANIFEST))
    measured = 1000.0 * 2**20 / 1e9
    assert plots.measured_peak_gb(record) == pytest.approx(measured)
    assert lesson.run_rows({"LoRA": record}) == [
        {
            "run": "LoRA",
            "trainable params": "1,000",
            "total params": "101,000",
            "steps": 8,
            "final val loss": 3.5,
            "train tokens/s": 1000.0,
            "train s": 2.0,
            "estimated peak GB": 1.09,
            "measured peak GB": round(measured, 3),
            "estimate / measured": round(1.09 / measured, 2),
        }
    ]
    on_gpu = replace(record, memory=replace(record.memory, measured=runs.MeasuredMemory(1000.0, 500.0)))
    assert plots.measured_peak_gb(on_gpu) == pytest.approx(500.0 * 2**20 / 1e9)
    plots.plot_memory_breakdown({"LoRA": record, "GPU": on_gpu}, tmp_path / "memory.png")
    assert (tmp_path / "memory.png").stat().st_size > 1000


def test_profile_train_config_is_its_train_field_with_the_method():
    for profile in PROFILES.values():
        planned = replace(profile, method="qlora")
        assert planned.train_config() == replace(profile.train, method="qlora")
    # Overrides go where each field lives: the profile, its TrainConfig or its Decoding; None keeps the profile's.
    cpu = PROFILES["cpu"]
    changed = cpu.with_overrides(base_model="my-model", max_steps=7, max_new_tokens=12, n_test=None)
    assert (changed.base_model, changed.train.max_steps, changed.decoding.max_new_tokens) == ("my-model", 7, 12)
    assert changed.n_test == cpu.n_test and changed.train.batch_size == cpu.train.batch_size
    with pytest.raises(ValueError, match="unknown profile setting"):
        cpu.with_overrides(max_step=7)
    smoke = PROFILES["smoke"]
    assert smoke.train_config("full", seed=3) == replace(
        replace(smoke, method="lora").train_config(), method="full", seed=3
    )
    with pytest.raises(ValueError, match="has no method"):
        smoke.train_config()
    with pytest.raises(ValueError, match="lora_r must be >= 1"):
        smoke.train_config("lora", lora_r=0)
