"""Measuring harness for ``ftlib.engine.memory``'s estimates: the peak RSS of a real training run, and the bytes
autograd saves in one forward pass. Used by ``tests/test_memory.py``; kept out of ``ftlib`` because only the
checks of the estimator need it (and it imports training, which the estimator must not).

Run as a script, it is the child process of ``measure_training_peak``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_bytes() -> int:
    """This process's peak resident memory, from the kernel's high-water mark of its own address space.

    On Linux that is ``VmHWM`` in ``/proc/self/status``. ``getrusage``'s ``ru_maxrss`` is no good in a child: Linux
    keeps the high-water mark across ``execve``, and a child spawned with ``vfork`` (Python's ``subprocess`` on
    Linux) starts from the parent's, so a test process that once held a 135M-parameter model made every training
    child look 0.3-0.5 GB larger (measured: 1.48 GB against 0.99 GB alone).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


def measure_training_peak(
    base_model: str,
    train_records: list[dict],
    config,
    task=None,
    val_records: list[dict] | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run ``ftlib.engine.train.train`` on CPU in a fresh process and return its peak RSS.

    A fresh process makes the peak the run's own: nothing an earlier run allocated is still held.

    Args:
        base_model: registry name or local folder.
        train_records: training records; ``val_records`` default to the first ``config.eval_batch_size`` of them.
        config: a ``ftlib.engine.train.TrainConfig``.
        task: a ``ftlib.core.tasks.Task`` (passed by name), or None for chat/prompt-completion records.

    Returns:
        ``{"peak_rss_bytes", "manifest"}``: the kernel's RSS high-water mark and the run's manifest.
    """
    with tempfile.TemporaryDirectory(prefix="ftlib-memory-") as folder:
        spec = {
            "base_model": str(base_model),
            "train": train_records,
            "val": val_records if val_records is not None else train_records[: config.eval_batch_size],
            "config": asdict(config),
            "task": task.name if task is not None else None,
            "output_dir": str(Path(folder) / "run"),
        }
        spec_path = Path(folder) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        # A script's own folder leads sys.path, not the working one: put this checkout's ftlib first.
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=path)
        result = subprocess.run(
            [sys.executable, __file__, str(spec_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the measured training run failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def _measure_in_this_process(spec_path: str) -> dict[str, Any]:
    """The child side of ``measure_training_peak``."""
    from ftlib.core.config import TrainConfig
    from ftlib.core.runtime import pick_device
    from ftlib.core.tasks import get_task
    from ftlib.engine.train import train

    spec = json.loads(Path(spec_path).read_text())
    config = TrainConfig(**spec["config"])
    task = get_task(spec["task"]) if spec["task"] else None
    run = train(
        spec["base_model"],
        spec["train"],
        spec["val"],
        spec["output_dir"],
        config=config,
        task=task,
        device=pick_device("cpu"),
    )
    return {"peak_rss_bytes": peak_rss_bytes(), "manifest": json.loads(run.record.to_json())}


def saved_activation_bytes(model, inputs: Mapping[str, Any], prefix: int = 0) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one ftlib training forward pass.

    Runs the forward pass (with the shared prefix when ``prefix`` > 0) and the answer-only loss under
    ``torch.autograd.graph.saved_tensors_hooks``, counting each saved storage once and no parameter.
    """
    import torch

    from ftlib.data.batches import forward_with_shared_prefix
    from ftlib.engine.trainer import answer_only_loss

    parameters = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    saved: dict[int, int] = {}

    def remember(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(remember, lambda tensor: tensor):
        if prefix:
            outputs = forward_with_shared_prefix(model, dict(inputs), prefix)
        else:
            outputs = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                logits_to_keep=inputs["logits_to_keep"],
            )
        loss = answer_only_loss(outputs, inputs["labels"])
    del loss, outputs
    return sum(saved.values())


if __name__ == "__main__":
    print(json.dumps(_measure_in_this_process(sys.argv[1])))
