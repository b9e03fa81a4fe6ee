"""Measured notebook run times, in one place.

The workshop guide's timing table (``workshop/README.md``, printed by ``tools/workshop_timings.py``) and the
run-time line at the top of every notebook quote these figures; tests check that both agree with them. Only
measurements go here: no GPU was measured, and the lines say so.
"""

from __future__ import annotations

from dataclasses import dataclass

GUIDE_LINK = "../workshop/README.md#timings"  # from a notebook in notebooks/


@dataclass(frozen=True)
class Timings:
    """Wall seconds per notebook from one ``python -m ftlib curriculum`` run (its ``curriculum_timings.json``)."""

    label: str  # the machine, profile and date: the guide's column heading
    seconds: dict[str, float]  # notebook name (e.g. ``03_lora``) -> wall seconds
    note: str  # how to read the figures


# `make curriculum` (the cpu profile) on a fresh clone, alone on an idle 2-core machine: all seven notebooks.
CPU_2_CORES = Timings(
    label="cpu profile, 2 idle cores (2026-11-29)",
    seconds={
        "01_base_model": 67.0,
        "02_data_curation": 10.0,
        "03_lora": 906.3,
        "04_qlora": 917.4,
        "05_evaluation": 658.3,
        "06_what_matters": 680.4,
        "07_after_training": 574.3,
    },
    note="measured on an idle machine, a fresh clone",
)


# `python -m ftlib curriculum --profile smoke` on the same kind of machine, beside one other one-thread job.
SMOKE_2_CORES = Timings(
    label="smoke profile, 2 cores (2026-11-29)",
    seconds={
        "01_base_model": 25.6,
        "02_data_curation": 9.8,
        "03_lora": 26.0,
        "04_qlora": 26.1,
        "05_evaluation": 70.1,
        "06_what_matters": 64.1,
        "07_after_training": 123.1,
    },
    note="measured beside another job: an upper figure",
)


def short_duration(seconds: float) -> str:
    """``10.5 s`` under a minute, else ``20 min 6 s`` (``3 min`` on the minute)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def run_time_text(notebook: str, smoke: Timings = SMOKE_2_CORES, cpu: Timings = CPU_2_CORES) -> str:
    """The notebook's expected run time per profile, as the Markdown its opening cell carries.

    A notebook newer than a measurement says so for that profile, with no figure.
    """

    def figure(timings: Timings) -> str:
        if notebook not in timings.seconds:
            return "not measured yet by `make curriculum` (the workshop guide has what was measured)"
        return f"{short_duration(timings.seconds[notebook])} ({timings.note})"

    return (
        f"**Expected run time** ([how it was measured]({GUIDE_LINK})):\n"
        f"- `smoke` profile (the smallest run), 2 cores: {figure(smoke)};\n"
        f"- `cpu` profile, 2 cores: {figure(cpu)};\n"
        "- GPU plan: not measured (no GPU was available); lesson 01 shows what the plan would run on each GPU."
    )
