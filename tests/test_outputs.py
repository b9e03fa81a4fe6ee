"""ftlib.course.outputs: a real run's outputs copied into the lessons, cleaned, and refused once stale."""

import pytest

from ftlib.course import outputs
from ftlib.course.timings import run_time_text

pytestmark = pytest.mark.unit

RUN = outputs.ReferenceRun("2026-12-07", "2-core AMD EPYC, 23.5 GiB", "cpu", "abc1234")
ROOT = "/tmp/fresh"


def code(cell_id, source, outputs_=(), count=None):
    return {
        "cell_type": "code",
        "id": cell_id,
        "source": source,
        "metadata": {},
        "outputs": list(outputs_),
        "execution_count": count,
    }


def lesson():
    objectives = f"## In this lesson\nYou will learn to:\n- one\n\n{run_time_text('03_lora')}"
    return {
        "cells": [
            {"cell_type": "markdown", "id": "title", "source": "# 03", "metadata": {}},
            {"cell_type": "markdown", "id": "objectives", "source": objectives, "metadata": {}},
            code("a", "print(1)"),
            code("b", "plot()"),
            code("c", "edited()"),
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
    }


def executed():
    stream = {
        "output_type": "stream",
        "name": "stdout",
        "text": f"[ftlib] train: step 8/290 (3%)\nwrote {ROOT}/runs/support_tickets-cpu/lora\n",
    }
    plot = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}
    return {
        "cells": [
            code("injected", "profile = 'cpu'", [], 2),
            code("a", "print(1)", [stream], 3),
            code("b", "plot()", [plot], 4),
            code("c", "the old source()", [plot], 5),
        ],
        "metadata": {"papermill": {"parameters": {"profile": "cpu"}, "duration": 812.4}},
    }


def test_outputs_are_copied_where_the_source_ran_and_cleaned():
    committed, empty = outputs.commit_outputs(lesson(), executed(), ROOT, RUN)
    cells = committed["cells"]
    assert cells[2]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "wrote runs/support_tickets-cpu/lora\n"}
    ]  # the progress line dropped, the path relative to the repository
    assert cells[3]["outputs"][0]["data"]["image/png"] == "iVBOR" and cells[3]["execution_count"] == 4
    assert empty == [4] and cells[4]["outputs"] == []  # edited since the run: no output to show
    assert committed["metadata"] == {"kernelspec": {"name": "python3"}, "ftlib": {"reference_run": vars(RUN)}}
    assert outputs.reference_run(committed) == RUN
    assert outputs.stale_cells(committed) == []


def test_the_objectives_name_the_run_before_the_run_times_once():
    committed, _ = outputs.commit_outputs(lesson(), executed(), ROOT, RUN)
    again, _ = outputs.commit_outputs(committed, executed(), ROOT, RUN)
    text = again["cells"][1]["source"]
    assert text.count(outputs.REFERENCE_START) == 1
    assert f"{RUN.line()}\n\n**Expected run time**" in text and text.endswith(run_time_text("03_lora"))
    assert "2026-12-07 (2-core AMD EPYC, 23.5 GiB, commit `abc1234`)" in RUN.line()


def test_a_cell_edited_after_the_run_is_stale():
    committed, _ = outputs.commit_outputs(lesson(), executed(), ROOT, RUN)
    committed["cells"][3]["source"] = "plot(bigger=True)"
    assert outputs.stale_cells(committed) == [3]
    committed["cells"][2]["metadata"].pop("ftlib")  # outputs with no record of their source are stale too
    assert outputs.stale_cells(committed) == [2, 3]


def test_clean_output_drops_dead_widgets_and_empty_streams():
    widget = {
        "output_type": "display_data",
        "data": {outputs.WIDGET_VIEW: {"model_id": "x"}, "text/plain": "HBox()"},
        "metadata": {},
    }
    assert outputs.clean_output(widget, ROOT)["data"] == {"text/plain": "HBox()"}
    only_widget = {"output_type": "display_data", "data": {outputs.WIDGET_VIEW: {}}, "metadata": {}}
    assert outputs.clean_output(only_widget, ROOT) is None
    progress = {"output_type": "stream", "name": "stderr", "text": "[ftlib] generate (48 prompts): batch 1/2\n"}
    assert outputs.clean_output(progress, ROOT) is None
