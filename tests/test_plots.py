from types import SimpleNamespace

import matplotlib
import pytest

from ftlib.core.runs import EstimatedMemory, MeasuredMemory, RunMemory
from ftlib.engine import memory
from ftlib.lessons import plots
from ftlib.measure.stats import Estimate

matplotlib.use("Agg")


@pytest.mark.unit
def test_the_memory_stack_is_every_component_of_the_estimate():
    assert sorted(plots.MEMORY_STACK) == sorted(memory.MemoryEstimate.COMPONENTS)


@pytest.mark.unit
def test_memory_breakdown_bars_reach_the_estimates_total():
    # CPU runs have every kind of component, the allocator's retained blocks and QLoRA's mapped checkpoint too.
    estimates = {
        method: memory.estimate_memory("smollm2-135m-instruct", method, 8, 160, shared_prefix=63)
        for method in ("lora", "qlora")
    }
    assert all(estimate.allocator > 0 for estimate in estimates.values())
    records = {
        method: SimpleNamespace(
            memory=RunMemory(MeasuredMemory(peak_rss_mb=1000.0), EstimatedMemory.from_estimate(estimate))
        )
        for method, estimate in estimates.items()
    }  # the plot reads a RunRecord's memory alone
    figure = plots.plot_memory_breakdown(records)
    tops = {}
    for bar in figure.axes[0].patches:  # one rectangle per run and component, stacked
        x = round(bar.get_x() + bar.get_width() / 2)
        tops[x] = max(tops.get(x, 0.0), bar.get_y() + bar.get_height())
    totals = [records[name].memory.estimate.total_gb for name in records]
    # Each component is rounded to 1 MB in the manifest: the stack may differ from the rounded total by a few.
    assert [tops[x] for x in sorted(tops)] == pytest.approx(totals, abs=0.005)
    matplotlib.pyplot.close(figure)


@pytest.mark.unit
def test_a_lone_runs_measured_peak_stays_inside_the_axes():
    """Lesson 03 plots one run: its measured-peak mark spans its bar, inside the axes (not into the legend), even
    above the estimate."""
    estimate = memory.estimate_memory("smollm2-135m-instruct", "lora", 8, 160, shared_prefix=63)
    peak_mb = 1.3 * estimate.gb() * 1e3  # above the estimate (the manifest stores MiB, close enough here)
    record = SimpleNamespace(
        memory=RunMemory(MeasuredMemory(peak_rss_mb=peak_mb), EstimatedMemory.from_estimate(estimate))
    )
    figure = plots.plot_memory_breakdown({"lora": record})
    ax = figure.axes[0]
    figure.canvas.draw()
    inside = ax.get_window_extent()
    (mark,) = [c for c in ax.collections if c.get_label() == "measured peak"]
    (segment,) = mark.get_segments()
    for point in ax.transData.transform(segment):
        assert inside.x0 <= point[0] <= inside.x1 and inside.y0 <= point[1] <= inside.y1, point
    assert segment[0][1] == pytest.approx(record.memory.measured.peak_gb)
    matplotlib.pyplot.close(figure)


@pytest.mark.unit
def test_learning_curve_draws_each_metric_with_its_interval_band(tmp_path):
    points = {n: {"a": Estimate(v, v - 0.1, v + 0.1)} for n, v in ((16, 0.3), (64, 0.6), (2000, 0.7))}
    figure = plots.plot_learning_curve(points, ["a", "missing"], tmp_path / "curve.png")
    ax = figure.axes[0]
    assert [list(line.get_xdata()) for line in ax.lines] == [[16, 64, 2000]]
    assert len(ax.collections) == 1 and (tmp_path / "curve.png").exists()
    matplotlib.pyplot.close(figure)


@pytest.mark.unit
def test_validation_curves_overlay_one_line_per_run_and_the_kept_losses():
    histories = {
        name: {"train": [{"step": 1, "loss": 9.0}], "val": [{"step": 2, "loss": 1.0}, {"step": 4, "loss": 0.8}]}
        for name in ("lr 1e-4", "lr 1e-3")
    }
    final = {"lr 1e-3": Estimate(0.8, 0.7, 0.9)}
    figure = plots.plot_validation_curves(histories, final=final)
    ax = figure.axes[0]
    validation = [line for line in ax.lines if line.get_label() in histories]
    assert len(validation) == 2 and all(9.0 not in line.get_ydata() for line in validation)  # no training loss
    assert len(ax.containers) == 1  # one error bar: the run with a kept loss
    matplotlib.pyplot.close(figure)
