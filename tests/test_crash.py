"""SIGKILL a real ``python -m ftlib train`` mid-step or mid-save: no half-written run, and --resume continues it.

The killed process is the CLI's own ``__main__`` with two delays patched in (a sleep at the start of every
training step, and a long one before a chosen checkpoint's ``trainer_state.json``), because the tiny model's
steps take milliseconds: without them the kill could not land where the test means it to.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_train_args  # tests/, on pytest's path

from ftlib.core.runs import MANIFEST, load_run
from ftlib.course import cli
from ftlib.data.records import write_jsonl
from tests.conftest import TICKETS

pytestmark = pytest.mark.integration  # a subprocess that imports torch and transformers: ~10 s

ROOT = Path(__file__).resolve().parent.parent

# Run as `python -c`: ftlib's CLI as `python -m ftlib` runs it, with the delays (argv[1:]: the seconds each step
# sleeps, the checkpoint whose trainer_state.json is held back, then the CLI's arguments).
SLOWED_CLI = """
import runpy, sys, time
from transformers import TrainerState
from ftlib.engine import train
from ftlib.engine import trainer

step_sleep, held_back = float(sys.argv[1]), sys.argv[2]
original_step, original_save = trainer.FtlibTrainer.training_step, TrainerState.save_to_json

def slow_step(self, *args, **kwargs):
    time.sleep(step_sleep)
    return original_step(self, *args, **kwargs)

def held_save(self, json_path):
    if held_back in json_path:
        time.sleep(600)
    return original_save(self, json_path)

trainer.FtlibTrainer.training_step, TrainerState.save_to_json = slow_step, held_save
sys.argv = ["ftlib", *sys.argv[3:]]
runpy.run_module("ftlib", run_name="__main__", alter_sys=True)
"""


def train_flags(data: Path, val: Path, output: Path) -> list[str]:
    """Six steps with a checkpoint every two, as in test_training_loop's in-process resume test."""
    return tiny_train_args(
        data,
        val,
        output,
        max_steps=6,
        eval_steps=2,
        batch_size=4,
        eval_batch_size=4,
        learning_rate="1e-2",
        lora_r=8,
        max_length=512,
        seed=0,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until ``path`` exists; fail with the process's output if it ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, _ = process.communicate()
            pytest.fail(f"{path} never appeared (exit {process.returncode}):\n{out[-3000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same run, not interrupted: its folder (the loss curve to match) and the data files."""
    folder = tmp_path_factory.mktemp("crash")
    data = write_jsonl(TICKETS * 4, folder / "train.jsonl")
    val = write_jsonl(TICKETS, folder / "val.jsonl")
    assert cli.main(train_flags(data, val, folder / "whole")) == 0
    return folder / "whole", data, val


def losses(run: Path) -> dict[str, list[float]]:
    """Each curve's losses in step order."""
    history = json.loads((run / "history.json").read_text())
    return {curve: [point["loss"] for point in history[curve]] for curve in ("train", "val")}


@pytest.mark.parametrize("moment", ["mid-step", "mid-save"])
def test_sigkill_leaves_the_previous_run_and_resume_continues_the_curve(uninterrupted, tmp_path, moment):
    whole, data, val = uninterrupted
    run = tmp_path / "runs" / "run"
    shutil.copytree(whole, run)  # a complete earlier run in the folder the killed run would replace
    before = (run / MANIFEST).read_bytes()
    scratch = run.with_name(".run.partial") / "trainer"
    env = os.environ | {"FTLIB_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    # Mid-step: every step sleeps 1 s, and the kill comes 0.3 s after checkpoint-2 is whole, inside step 3.
    # Mid-save: checkpoint-4 gets weights, optimizer and RNG state, then waits before its trainer_state.json.
    step_sleep = 1.0 if moment == "mid-step" else 0.0
    process = subprocess.Popen(
        # --overwrite: the run replaces the earlier one in its folder (refused without it)
        [
            sys.executable,
            "-c",
            SLOWED_CLI,
            str(step_sleep),
            "checkpoint-4",
            *train_flags(data, val, run),
            "--overwrite",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if moment == "mid-step":
        wait_for(scratch / "checkpoint-2" / "trainer_state.json", process)
        time.sleep(0.3)
    else:
        wait_for(scratch / "checkpoint-4" / "rng_state.pth", process)
        time.sleep(0.3)  # the held-back save is asleep by now
        assert not (scratch / "checkpoint-4" / "trainer_state.json").exists()
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    # The earlier run is untouched, and nothing else looks like a run: no .previous, no stray manifest.
    assert (run / MANIFEST).read_bytes() == before
    assert sorted(path.name for path in run.parent.iterdir()) == [".run.partial", "run"]
    assert list(run.parent.rglob(MANIFEST)) == [run / MANIFEST]
    assert (scratch / "checkpoint-2" / "trainer_state.json").exists()
    if moment == "mid-step":
        assert not (scratch / "checkpoint-4").exists()

    assert cli.main([*train_flags(data, val, run), "--resume", "--overwrite"]) == 0
    record = load_run(run)
    assert record.checkpoints.resumed_from == "checkpoint-2"
    assert load_run(run.with_name("run.previous")).checkpoints.resumed_from is None  # the earlier run, kept
    resumed, expected = losses(run), losses(whole)
    assert len(resumed["train"]) == 6
    assert resumed["train"] == pytest.approx(expected["train"], abs=1e-4)
    assert resumed["val"] == pytest.approx(expected["val"], abs=1e-4)
