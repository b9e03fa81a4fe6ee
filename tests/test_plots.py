from types import SimpleNamespace

import matplotlib
import pytest

from ftlib import memory, plots
from ftlib.runs import EstimatedMemory, MeasuredMemory, RunMemory

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
