from types import SimpleNamespace

import pytest
import torch
from scored import with_metrics

from ftlib.engine import profiles
from ftlib.lessons import lesson, plots
from ftlib.measure.stats import Estimate


@pytest.mark.unit
def test_auto_profile_follows_env_then_device(monkeypatch):
    monkeypatch.setenv("FTLIB_PROFILE", "smoke")
    assert profiles.resolve_profile("auto").name == "smoke"
    monkeypatch.delenv("FTLIB_PROFILE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the device is mocked, whatever this machine has
    assert profiles.resolve_profile("auto").name == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "an 80 GB GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert profiles.resolve_profile("auto").name == "gpu"
    assert profiles.resolve_profile("cpu", max_steps=7, base_model=None).train.max_steps == 7


@pytest.mark.unit
def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="Unknown profile 'huge'"):
        profiles.resolve_profile("huge")


@pytest.mark.unit
def test_run_paths_default_under_repo_runs(tmp_path):
    smoke = profiles.resolve_profile("smoke")
    assert (
        profiles.run_paths(None, smoke, "support_tickets").root
        == profiles.project_root() / "runs" / "support_tickets-smoke"
    )
    assert profiles.run_paths(tmp_path, smoke, "x").lora == tmp_path / "lora"


@pytest.mark.unit
def test_run_dir_env_is_the_default_and_a_parameter_wins(tmp_path, monkeypatch):
    smoke = profiles.resolve_profile("smoke")
    monkeypatch.setenv("FTLIB_RUN_DIR", str(tmp_path / "session"))
    assert profiles.run_paths(None, smoke, "x").eval == tmp_path / "session" / "eval"
    assert profiles.run_paths(tmp_path / "mine", smoke, "x").root == tmp_path / "mine"


@pytest.mark.integration  # the embedded model's tokenizer filters lengths, as in lesson 02
def test_a_notebook_run_alone_rebuilds_lesson_02s_splits(tmp_path, capsys):
    from ftlib.data.curate import curated_splits
    from ftlib.data.records import read_jsonl
    from ftlib.engine.models import load_tokenizer

    started = lesson.start("smoke", run_dir=str(tmp_path))
    train = started.split("train")
    assert "rebuilding them from support_tickets.jsonl as lesson 02 does" in capsys.readouterr().out
    expected = curated_splits(
        read_jsonl(started.raw_data),
        started.task,
        load_tokenizer(started.profile.base_model),
        started.profile.train.max_length,
        source=started.raw_data.name,
    )
    assert train == expected["train"][: started.profile.n_train]
    assert read_jsonl(tmp_path / "data" / "test.jsonl") == expected["test"]
    started.split("val")
    assert "rebuilding" not in capsys.readouterr().out  # written once, then read


@pytest.mark.unit
def test_missing_runs_are_named_with_the_notebook_that_makes_them(tmp_path, capsys):
    started = lesson.start("smoke", run_dir=str(tmp_path))
    (tmp_path / "qlora").mkdir()
    (tmp_path / "qlora" / "manifest.json").write_text("{}")
    assert started.runs({"LoRA": "lora", "QLoRA": "qlora"}) == {"QLoRA": tmp_path / "qlora"}
    out = capsys.readouterr().out
    assert f"No LoRA run in {tmp_path / 'lora'}: run 03_lora.ipynb with the same run_dir first" in out
    assert "QLoRA" not in out


@pytest.mark.unit
def test_markdown_table_escapes_and_rounds():
    text = lesson.markdown_table([{"a": 0.123456, "b": "x|y\nz", "c": None}])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 0.123 | x\\|y z |  |"]


@pytest.mark.unit
def test_plots_write_files(tmp_path):
    history = {"train": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], "val": [{"step": 2, "loss": 1.7}]}
    plots.plot_loss_curves({"LoRA": history}, tmp_path / "loss.png")
    metric = Estimate(0.5, 0.4, 0.6)
    plots.plot_metric_comparison(
        {"a": with_metrics({"m": metric}), "b": with_metrics({"m": metric})}, ["m"], tmp_path / "m.png"
    )
    plots.plot_label_distribution({"train": {"x": 3, "y": 1}}, tmp_path / "d.png")
    plots.plot_token_lengths([10, 20, 30], 25, tmp_path / "t.png")
    for name in ("loss.png", "m.png", "d.png", "t.png"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.unit
def test_confusion_plot_writes_a_file(tmp_path):
    import numpy as np

    plots.plot_confusion(["a", "b", "(invalid)"], np.array([[3, 1, 0], [0, 2, 2]]), ["a", "b"], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
