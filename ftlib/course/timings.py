"""Measured notebook run times, in one place.

The workshop guide's timing table (``workshop/README.md``, printed by ``tools/workshop_timings.py``) and the
run-time line at the top of every notebook quote these figures; tests check that both agree with them. Only
measurements go here: no GPU was measured, and the lines say so.
"""

from __future__ import annotations

from dataclasses import dataclass

GUIDE_LINK = "../workshop/README.md#timings"  # from a notebook in notebooks/
RUN_TIMES_HEADING = "**Expected run time**"  # opens the run-time block of a notebook's objectives cell


@dataclass(frozen=True)
class Timings:
    """Wall seconds per notebook from one ``python -m ftlib curriculum`` run (its ``curriculum_timings.json``)."""

    label: str  # the machine, profile and date: the guide's column heading
    seconds: dict[str, float]  # notebook name (e.g. ``03_lora``) -> wall seconds
    note: str  # how to read the figures
    changed_since: tuple[str, ...] = ()  # notebooks whose run changed after this measurement: not quoted from it


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
    # Lesson 04's cpu run now stops QLoRA after 80 of the 290 steps, and lesson 05 no longer scores it (2026-12-07).
    changed_since=("04_qlora", "05_evaluation"),
)


# `make curriculum` on a fresh clone on 2026-12-07, alone on a slower 2-core machine (lesson 03 took 2.3x its
# 2026-11-29 time there): stopped after lesson 05, so 06 and 07 were not measured in this run.
CPU_2_CORES_SLOWER = Timings(
    label="cpu profile, 2 idle cores of a slower machine (2026-12-07)",
    seconds={
        "01_base_model": 170.3,
        "02_data_curation": 23.1,
        "03_lora": 2098.5,
        "04_qlora": 992.9,
        "05_evaluation": 1128.8,
    },
    note="measured on an idle but slower machine, where lesson 03 took 2.3x as long as on the others', a fresh clone",
)
# `make curriculum` on a fresh clone on 2026-12-07 at the current lessons, alone on a 2-core AMD EPYC (fp32 matmul
# about 128 GFLOP/s on 2 threads), the model cached: 82 min 39 s with set-up. Its LoRA trained 290 steps in 1580 s
# (the 2026-11-29 machine: 817 s), so every lesson here takes about twice that machine's time. A one-thread test run
# shared the cores for about 2 of lesson 03's 29 minutes.
CPU_2_CORES_LATEST = Timings(
    label="cpu profile, 2 idle cores (2026-12-07, the current lessons)",
    seconds={
        "01_base_model": 96.6,
        "02_data_curation": 14.0,
        "03_lora": 1759.2,
        "04_qlora": 507.3,
        "05_evaluation": 669.4,
        "06_what_matters": 946.6,
        "07_after_training": 795.5,
    },
    note="a 2-core AMD EPYC, a fresh clone; about twice the 2026-11-29 machine's time",
)
# The first that measured a notebook's current run is quoted.
CPU_MEASUREMENTS = (CPU_2_CORES_LATEST, CPU_2_CORES, CPU_2_CORES_SLOWER)


# `python -m ftlib curriculum --profile smoke` on the same kind of machine, beside one other one-thread job.
SMOKE_2_CORES = Timings(
    label="smoke profile, 2 cores (2026-12-07)",
    seconds={
        "01_base_model": 36.2,
        "02_data_curation": 16.1,
        "03_lora": 30.1,
        "04_qlora": 31.1,
        "05_evaluation": 103.1,
        "06_what_matters": 64.1,
        "07_after_training": 134.2,
    },
    note="idle 2-core AMD EPYC, model cached",
)


def short_duration(seconds: float) -> str:
    """``10.5 s`` under a minute, else ``20 min 6 s`` (``3 min`` on the minute)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def run_time_text(
    notebook: str, smoke: Timings = SMOKE_2_CORES, cpu: Timings | tuple[Timings, ...] = CPU_MEASUREMENTS
) -> str:
    """The notebook's expected run time per profile, as the Markdown its opening cell carries.

    ``cpu`` may list several measurements: the first that measured the notebook's current run is quoted. A notebook
    newer than every measurement says so for that profile, with no figure.
    """

    def figure(measurements: Timings | tuple[Timings, ...]) -> str:
        for timings in measurements if isinstance(measurements, tuple) else (measurements,):
            if notebook in timings.seconds and notebook not in timings.changed_since:
                return f"{short_duration(timings.seconds[notebook])} ({timings.note})"
        return "not measured yet by `make curriculum` (the workshop guide has what was measured)"

    return (
        f"{RUN_TIMES_HEADING} ([how it was measured]({GUIDE_LINK})):\n"
        f"- `smoke` profile (the smallest run), 2 cores: {figure(smoke)};\n"
        f"- `cpu` profile, 2 cores: {figure(cpu)};\n"
        "- GPU plan: not measured (no GPU was available); lesson 01 shows what the plan would run on each GPU."
    )
