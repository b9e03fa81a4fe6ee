import pytest

from ftlib import lesson, plots, profiles

pytestmark = pytest.mark.unit


def test_auto_profile_follows_env_then_device(monkeypatch):
    monkeypatch.setenv("FTLIB_PROFILE", "smoke")
    assert profiles.resolve_profile("auto").name == "smoke"
    monkeypatch.delenv("FTLIB_PROFILE")
    assert profiles.resolve_profile("auto").name == "cpu"  # no CUDA here
    assert profiles.resolve_profile("cpu", max_steps=7, base_model=None).max_steps == 7


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="Unknown profile 'huge'"):
        profiles.resolve_profile("huge")


def test_run_paths_default_under_repo_runs(tmp_path):
    smoke = profiles.resolve_profile("smoke")
    assert profiles.run_paths(None, smoke, "support_tickets")["root"] == profiles.project_root() / "runs" / "support_tickets-smoke"
    assert profiles.run_paths(tmp_path, smoke, "x")["lora"] == tmp_path / "lora"


def test_lesson_split_requires_notebook_02(tmp_path):
    started = lesson.start("smoke", run_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run notebook 02_data_curation first"):
        started.split("train")


def test_markdown_table_escapes_and_rounds():
    text = lesson.markdown_table([{"a": 0.123456, "b": "x|y\nz", "c": None}])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 0.123 | x\\|y z |  |"]


def test_plots_write_files(tmp_path):
    history = {"train": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], "val": [{"step": 2, "loss": 1.7}]}
    plots.plot_loss_curves({"LoRA": history}, tmp_path / "loss.png")
    metric = {"value": 0.5, "low": 0.4, "high": 0.6}
    plots.plot_metric_comparison({"a": {"metrics": {"m": metric}}, "b": {"metrics": {"m": metric}}}, ["m"], tmp_path / "m.png")
    plots.plot_label_distribution({"train": {"x": 3, "y": 1}}, tmp_path / "d.png")
    plots.plot_token_lengths([10, 20, 30], 25, tmp_path / "t.png")
    for name in ("loss.png", "m.png", "d.png", "t.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_confusion_plot_writes_a_file(tmp_path):
    import numpy as np

    plots.plot_confusion(["a", "b", "(invalid)"], np.array([[3, 1, 0], [0, 2, 2]]), ["a", "b"], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
