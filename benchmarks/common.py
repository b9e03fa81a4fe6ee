"""Shared set-up of the benchmarks: the curated ticket splits, built the way lesson 02 builds them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ftlib.core import runtime
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


machine = runtime.machine  # what a result was measured on (results quote it)
