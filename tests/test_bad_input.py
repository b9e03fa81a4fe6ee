"""The bad-input table: every class of user error, through the real command line, refused before any model loads.

Each case runs ``python -m ftlib`` as a subprocess (``tests/guarded_cli.py``: the same entry point, with the model
loaders replaced by a guard that exits 99) in a fresh copy of a workspace holding data, a trained tiny run, damaged
copies of it and a user's own files. Each asserts the exit status (2), that the message names the file, line and
field or the flag, that no model loaded, and that every file in the workspace is byte-identical afterwards, with
nothing added. docs/cli.md lists the same classes for users; a test below keeps the two in step.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftlib.course import cli
from ftlib.data.records import write_jsonl
from tests.conftest import ROOT, TICKETS, tiny_train_args
from tests.test_task_spec import ALIAS_BOMB

GUARDED_CLI = ROOT / "tests" / "guarded_cli.py"
ENV = os.environ | {"FTLIB_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Data files (good and bad), a trained tiny LoRA run, damaged copies of it, and files that are the user's."""
    w = tmp_path_factory.mktemp("workspace")
    write_jsonl(TICKETS * 2, w / "tickets.jsonl")
    write_jsonl(TICKETS, w / "val.jsonl")
    assert cli.main(tiny_train_args(w / "tickets.jsonl", w / "val.jsonl", w / "run", max_steps=1, eval_steps=1)) == 0
    shutil.copytree(w / "run", w / "bad_config")
    (w / "bad_config" / "adapter" / "adapter_config.json").write_text('{\n  "peft_type": "LORA",\n')
    shutil.copytree(w / "run", w / "cut_weights")
    weights = w / "cut_weights" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (w / "empty").mkdir()
    (w / "user_folder").mkdir()
    (w / "user_folder" / "notes.txt").write_text("my notes\n")
    write_jsonl(TICKETS, w / "user_folder" / "t.jsonl")
    (w / "keep.txt").write_text("keep me\n")
    write_jsonl([TICKETS[0], TICKETS[1] | {"reply": 3}], w / "reply_int.jsonl")
    write_jsonl([TICKETS[0], TICKETS[1] | {"ticket": "  \n "}], w / "blank.jsonl")
    write_jsonl([TICKETS[0] | {"ticket": "word " * 40_000}], w / "big.jsonl")  # 200 kB: 200,000 tiny (byte) tokens
    (w / "trailing.json").write_text("[\n" + json.dumps(TICKETS[0]) + ",\n]\n")
    (w / "bomb.yaml").write_text("name: tickets\n" + ALIAS_BOMB)
    return w


RUN = ["--run", "{w}/run"]
DATA = ["--data", "{w}/tickets.jsonl"]
TRAIN = ["train", "--data", "{w}/tickets.jsonl", "--val", "{w}/val.jsonl", "--base-model", "tiny-random-llama"]

# (class as docs/cli.md names it, arguments, what the message must contain); {w} is the workspace.
CASES = [
    (
        "existing output file",
        ["evaluate", *RUN, *DATA, "--output", "{w}/keep.txt"],
        ["--output {w}/keep.txt: exists; pass --overwrite to replace it"],
    ),
    (
        "existing output file",
        ["generate", *RUN, *DATA, "--output", "{w}/keep.txt"],
        ["--output {w}/keep.txt: exists; pass --overwrite"],
    ),
    (
        "output that is an input",
        ["generate", *RUN, *DATA, "--output", "{w}/tickets.jsonl", "--overwrite"],
        ["--output {w}/tickets.jsonl: is the input --data"],
    ),
    (
        "output that is an input",
        ["evaluate", *RUN, *DATA, "--output", "{w}/run/manifest.json", "--overwrite"],
        ["--output {w}/run/manifest.json: is a file of the input --run {w}/run"],
    ),
    (
        "output that is a folder or under a file",
        ["evaluate", *RUN, *DATA, "--output", "{w}/user_folder"],
        ["--output {w}/user_folder: is a folder"],
    ),
    (
        "output that is a folder or under a file",
        ["evaluate", *RUN, *DATA, "--output", "{w}/keep.txt/m.json"],
        ["--output {w}/keep.txt/m.json: {w}/keep.txt is a file, not a folder"],
    ),
    (
        "run folder that is a file, a user's folder or an earlier run",
        [*TRAIN, "--output", "{w}/keep.txt"],
        ["--output {w}/keep.txt: is a file; a run writes a folder there"],
    ),
    (
        "run folder that is a file, a user's folder or an earlier run",
        [*TRAIN, "--output", "{w}/user_folder"],
        ["--output {w}/user_folder: holds files but is not an ftlib output (no manifest.json)"],
    ),
    (
        "run folder that is a file, a user's folder or an earlier run",
        [*TRAIN, "--output", "{w}/run"],
        ["--output {w}/run: holds an earlier output; pass --overwrite to replace it"],
    ),
    (
        "output that is an input",
        [*TRAIN[:2], "{w}/user_folder/t.jsonl", *TRAIN[3:], "--output", "{w}/user_folder", "--overwrite"],
        ["--output {w}/user_folder: holds the input --data"],
    ),
    (
        "damaged run folder",
        ["evaluate", "--run", "{w}/bad_config", *DATA, "--output", "{w}/m.json"],
        ["{w}/bad_config/adapter/adapter_config.json: not valid JSON"],
    ),
    (
        "damaged run folder",
        ["evaluate", "--run", "{w}/cut_weights", *DATA, "--output", "{w}/m.json"],
        ["{w}/cut_weights/adapter/adapter_model.safetensors: damaged or cut short"],
    ),
    (
        "damaged run folder",
        ["generate", "--run", "{w}/empty", *DATA, "--output", "{w}/p.jsonl"],
        ["--run {w}/empty: not a run folder (no manifest.json) and not a model folder (no config.json): it is empty"],
    ),
    (
        "damaged run folder",
        ["generate", "--run", "{w}/user_folder", *DATA, "--output", "{w}/p.jsonl"],
        ["--run {w}/user_folder: not a run folder (no manifest.json)"],
    ),
    (
        "missing run or model",
        ["evaluate", "--run", "{w}/nothing", *DATA, "--output", "{w}/m.json"],
        ["no run folder or registry model named {w}/nothing"],
    ),
    (
        "missing or malformed data",
        ["evaluate", *RUN, "--data", "{w}/nope.jsonl", "--output", "{w}/m.json"],
        ["{w}/nope.jsonl: file not found"],
    ),
    (
        "missing or malformed data",
        ["generate", *RUN, "--data", "{w}/trailing.json", "--output", "{w}/p.jsonl"],
        ["{w}/trailing.json, line 3: not valid JSON (a ',' before the closing ']')"],
    ),
    (
        "reference of the wrong type",
        ["evaluate", *RUN, "--data", "{w}/reply_int.jsonl", "--output", "{w}/m.json"],
        ["{w}/reply_int.jsonl, line 2, field 'reply': expected a string (the reference), got int"],
    ),
    (
        "empty input",
        ["evaluate", *RUN, "--data", "{w}/blank.jsonl", "--output", "{w}/m.json"],
        ["{w}/blank.jsonl, line 2, field 'ticket': empty text"],
    ),
    (
        "empty input",
        [*TRAIN[:2], "{w}/blank.jsonl", *TRAIN[3:], "--output", "{w}/new"],
        ["{w}/blank.jsonl, line 2, field 'ticket': empty text"],
    ),
    (
        "prompt longer than the context",
        ["evaluate", *RUN, "--data", "{w}/big.jsonl", "--output", "{w}/m.json"],
        ["{w}/big.jsonl, line 1, field 'ticket': the prompt is 200,", "context of 512", "--truncate-long-inputs"],
    ),
    (
        "YAML alias in a task spec",
        ["evaluate", *RUN, *DATA, "--output", "{w}/m.json", "--task", "{w}/bomb.yaml"],
        ["an alias (*a) is not allowed in a task spec"],
    ),
    (
        "count below 1",
        ["evaluate", *RUN, *DATA, "--output", "{w}/m.json", "--batch-size", "0", "--max-new-tokens", "0"],
        ["--batch-size: must be >= 1, got 0", "--max-new-tokens: must be >= 1, got 0"],
    ),
    (
        "count below 1",
        [*TRAIN, "--output", "{w}/new", "--max-steps", "0"],
        ["max_steps must be >= 1"],
    ),
    (
        "max length below the prompt",
        [*TRAIN, "--output", "{w}/new", "--max-length", "8"],
        ["max_length 8 cuts every example before its answer", "raise --max-length"],
    ),
    (
        "nothing to resume",
        [*TRAIN, "--output", "{w}/new", "--resume"],
        ["--resume: nothing to resume: {w}/.new.partial/trainer holds no complete checkpoint"],
    ),
    (
        "conflicting flags",
        [*TRAIN, "--output", "{w}/new", "--method", "full", "--lora-r", "64"],
        ["--lora-r: LoRA settings, but --method full"],
    ),
    (
        "conflicting flags",
        [*TRAIN, "--output", "{w}/new", "--resume", "--adapter", "{w}/run/adapter"],
        ["--resume with --adapter: pick one"],
    ),
    (
        "GPU asked for, none here",
        [*TRAIN, "--output", "{w}/new", "--device", "cuda"],
        ["--device cuda: torch sees no CUDA GPU"],
    ),
    (
        "curriculum data or lesson",
        ["curriculum", "--profile", "smoke", "--run-dir", "{w}/course", "--only", "03_lroa"],
        ["03_lroa.ipynb (the lessons: 01_base_model"],
    ),
    (
        "several at once",
        ["evaluate", *RUN, "--data", "{w}/blank.jsonl", "--output", "{w}/keep.txt", "--batch-size", "0"],
        ["error: 3 problems", "field 'ticket': empty text", "--batch-size: must be >= 1", "{w}/keep.txt: exists"],
    ),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: a file's SHA-256, a folder's mark."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(folder.rglob("*"))
    }


def case_id(case) -> str:
    return f"{case[0]}: {' '.join(case[1][:1] + [a for a in case[1] if a.startswith('--') and a not in RUN + DATA])}"


@pytest.mark.integration  # subprocesses
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_is_refused_before_any_model_loads(workspace, tmp_path, case):
    klass, arguments, expected = case
    if klass == "GPU asked for, none here":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    w = tmp_path / "w"
    shutil.copytree(workspace, w)
    before = snapshot(w)
    result = subprocess.run(
        [sys.executable, str(GUARDED_CLI), *(a.replace("{w}", str(w)) for a in arguments)],
        cwd=w,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = result.stderr
    assert "MODEL LOADED" not in err, "a model loaded before the refusal"
    assert result.returncode == 2, f"exit {result.returncode}:\n{err[-3000:]}"
    assert err.startswith("error: ") and "Traceback" not in err, err[-3000:]
    for text in expected:
        assert text.replace("{w}", str(w)) in err, err
    assert snapshot(w) == before, "a file was changed, added or removed"


@pytest.mark.unit
def test_docs_list_every_class_of_the_table():
    """docs/cli.md's table of what is refused names each class the table above tests."""
    docs = (ROOT / "docs" / "cli.md").read_text()
    missing = sorted({klass for klass, _, _ in CASES if f"| {klass} |" not in docs})
    assert not missing, f"docs/cli.md lacks rows for: {missing}"


@pytest.mark.integration
def test_ctrl_c_stops_training_without_a_traceback_or_a_run_folder(workspace, tmp_path):
    """SIGINT in the middle of training: exit 130, one line, no traceback, and no run folder in place."""
    data, val, output = workspace / "tickets.jsonl", workspace / "val.jsonl", tmp_path / "run"
    arguments = tiny_train_args(data, val, output, max_steps=100_000, eval_steps=100_000)
    process = subprocess.Popen(
        [sys.executable, "-m", "ftlib", *arguments], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True
    )
    key = tmp_path / ".run.partial" / "run_key.json"  # written as training starts
    deadline = time.monotonic() + 120
    while not key.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the training loop
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-3000:]
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err, err[-3000:]
    assert not output.exists()
