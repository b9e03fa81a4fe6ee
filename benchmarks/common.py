"""Shared set-up of the benchmarks: the curated ticket splits, built the way lesson 02 builds them."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from ftlib.core.tasks import get_task
from ftlib.data import curate
from ftlib.data import records as data
from ftlib.engine.models import load_tokenizer
from ftlib.engine.profiles import sample_path


def curated_splits(
    dataset: str = "support_tickets", base_model: str = "smollm2-135m-instruct", max_length: int = 256
) -> dict[str, list[dict]]:
    """The train/val/test splits lesson 02 writes, from the committed sample file."""
    task = get_task(dataset)
    path = sample_path(dataset)
    return curate.curated_splits(data.read_jsonl(path), task, load_tokenizer(base_model), max_length, source=path.name)


def run_child(script: str, args: list[str], output: Path) -> dict:
    """Run one benchmark variant in a fresh process (clean peak RSS, default thread settings) and read its JSON."""
    command = [sys.executable, script, *args, "--json", str(output)]
    completed = subprocess.run(command, text=True, capture_output=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return json.loads(output.read_text())


def machine() -> dict:
    """What a result was measured on: CPU model, cores this process may use, RAM and the date (results quote it)."""
    cpu = platform.processor() or platform.machine()
    memory_gib = None
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (OSError, StopIteration, ValueError):  # not Linux: the platform's own name
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib,
        "date": datetime.date.today().isoformat(),
    }
