import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import TICKETS, tiny_train_args  # tests/, on pytest's path

from ftlib.core import progress
from ftlib.core.config import Decoding, TrainConfig
from ftlib.core.progress import KernelLines, Progress, choose_mode

ROOT = Path(__file__).resolve().parents[1]


class Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def progress_env(monkeypatch):
    """Set FTLIB_PROGRESS for this test and decide the process's mode afresh, before and after."""

    def use(mode: str) -> None:
        monkeypatch.setenv("FTLIB_PROGRESS", mode)
        progress.progress_mode.cache_clear()

    yield use
    progress.progress_mode.cache_clear()


@pytest.mark.unit
@pytest.mark.parametrize(
    "environ, tty, notebook, expected",
    [
        ({}, True, False, "bar"),
        ({}, False, False, "lines"),  # a pipe, a file, a CI log
        ({}, False, True, "bar"),  # a Jupyter front end: tqdm.auto draws widgets
        ({"TQDM_DISABLE": "1"}, True, False, "off"),
        ({"TQDM_DISABLE": "1"}, False, True, "off"),
        ({"FTLIB_PROGRESS": "lines"}, True, False, "lines"),
        ({"FTLIB_PROGRESS": "bar"}, False, False, "bar"),
        ({"FTLIB_PROGRESS": "Off"}, True, True, "off"),
        ({"FTLIB_PROGRESS": "lines", "TQDM_DISABLE": "1"}, False, False, "lines"),  # the explicit choice wins
    ],
)
def test_mode_choice(environ, tty, notebook, expected):
    assert choose_mode(environ, Stream(tty), notebook) == expected


@pytest.mark.unit
def test_a_terminal_without_a_size_gets_lines():
    leader, follower = os.openpty()  # a fresh pseudo-terminal reports 0 rows and 0 columns
    try:
        with open(follower, "w", closefd=False) as terminal:
            assert terminal.isatty() and choose_mode({}, terminal, False) == "lines"
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.unit
def test_unknown_mode_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="FTLIB_PROGRESS must be one of bar, lines, off, not 'line'"):
        choose_mode({"FTLIB_PROGRESS": "line"}, Stream(True), False)


@pytest.mark.unit
def test_mode_is_decided_once(progress_env, monkeypatch):
    progress_env("lines")
    assert progress.progress_mode() == "lines"
    monkeypatch.setenv("FTLIB_PROGRESS", "off")
    assert progress.progress_mode() == "lines"


@pytest.mark.unit
def test_lines_come_at_the_interval_with_time_left(monkeypatch):
    clock = iter(range(0, 1000, 10))  # every reading of the clock is 10 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = Stream(False)
    with Progress(6, "train", "step", mode="lines", interval=30, stream=stream) as bar:
        for step in range(6):
            bar.update(1, loss=2.0 / (step + 1))
    # started at 0 s, updates at 10, 20, ... 60 s: the first, the first 30 s after it, and the last print
    assert stream.getvalue().splitlines() == [
        "[ftlib] train: step 1/6 (17%), loss 2, 0:10 elapsed, ~0:50 left",
        "[ftlib] train: step 4/6 (67%), loss 0.5, 0:40 elapsed, ~0:20 left",
        "[ftlib] train: step 6/6 (100%), loss 0.3333, 1:00 elapsed",
    ]


@pytest.mark.unit
def test_lines_close_prints_the_last_state_once():
    stream = Stream(False)
    with Progress(10, "train", "step", mode="lines", interval=3600, stream=stream) as bar:
        bar.update(2)
        bar.update(3)  # inside the interval: shown by close(), as an early stop would be
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "[ftlib] train: step 2/10 (20%)",
        "[ftlib] train: step 5/10 (50%)",
    ]
    with Progress(0, "generate", "batch", mode="lines", stream=stream):
        pass  # nothing to do: no line
    assert stream.getvalue().splitlines() == lines


@pytest.mark.unit
def test_off_prints_nothing(capsys):
    with Progress(3, "train", "step", mode="off", interval=0) as bar:
        bar.update(3, loss=1.0)
        bar.note("validation loss 1.0")
    assert capsys.readouterr() == ("", "")


@pytest.mark.unit
def test_kernel_lines_relays_whole_progress_lines_once():
    relayed = []
    sink = KernelLines(relayed.append)
    for chunk in [
        "a table row\n[ftl",
        "ib] train: step 1/2, loss 1\nmore",
        " text\n[ftlib] train: step 2/2\n",
        "Warning: not progress\n",
    ]:
        sink.write(chunk)
    assert relayed == ["train: step 1/2, loss 1", "train: step 2/2"]


@pytest.mark.unit
@pytest.mark.parametrize(
    "source, expected",
    [
        ("\n# NBVAL_CHECK_OUTPUT\nprint(plan)\n", "print(plan)"),
        ("# Parameters\nprofile = 'smoke'", "# Parameters"),
        ("# NBVAL_SKIP", "# NBVAL_SKIP"),  # nothing else to show
        ("x = " + "1" * 80, "x = " + "1" * 63 + "..."),
    ],
)
def test_cell_first_line(source, expected):
    assert progress.first_line(source) == expected


@pytest.mark.unit
def test_training_prints_step_lines(tmp_path, cpu, progress_env, capsys):
    from ftlib.core.tasks import SUPPORT_TICKETS
    from ftlib.engine import train
    from tests.conftest import TICKETS

    progress_env("lines")
    config = TrainConfig(
        max_steps=6,
        batch_size=4,
        eval_steps=3,
        warmup_steps=0,
        learning_rate=1e-2,
        lora_r=4,
        max_length=512,
        eval_batch_size=4,
    )
    train.train(
        "tiny-random-llama", TICKETS * 2, TICKETS, tmp_path / "run", config=config, task=SUPPORT_TICKETS, device=cpu
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[ftlib] train:")]
    assert lines[0].startswith("[ftlib] train: step 1/6 (17%), loss ")
    assert lines[0].endswith(" left") and " elapsed, ~" in lines[0]
    assert "[ftlib] train: validation loss " in lines[1] and lines[1].endswith(" at step 3")
    assert lines[2].startswith("[ftlib] train: step 6/6 (100%), loss ")
    assert lines[3].startswith("[ftlib] train: validation loss ") and lines[3].endswith(" at step 6")
    assert len(lines) == 4  # steps 2-5 fall inside the 30 s interval; the final evaluation is not training
    assert "{'loss'" not in err + capsys.readouterr().out  # Trainer's PrinterCallback is gone


@pytest.mark.unit
def test_generation_prints_batch_lines(tiny, progress_env, capsys):
    from ftlib.engine.inference import generate

    progress_env("lines")
    model, tokenizer = tiny
    prompts = [[{"role": "user", "content": f"ticket {i}"}] for i in range(3)]
    assert len(generate(model, tokenizer, prompts, decoding=Decoding(2, 2))) == 3
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[ftlib] generate (3 prompts): batch 1/2 (50%), ")
    assert lines[1].startswith("[ftlib] generate (3 prompts): batch 2/2 (100%), ")
    assert len(lines) == 2


@pytest.mark.unit
def test_kernels_hub_message_is_filtered_and_other_warnings_are_not(caplog):
    import ftlib  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure ...",
            "No module named 'kernels'",
        )
        logger.warning("some other bitsandbytes warning")
    assert [record.getMessage() for record in caplog.records] == ["some other bitsandbytes warning"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("TQDM_DISABLE", "FTLIB_PROGRESS")}
    return env | extra


@pytest.mark.integration
def test_cli_call_that_imports_bitsandbytes_is_quiet(tmp_path):
    # A one-step `train` on the tiny model imports ftlib.engine.train -> peft -> bitsandbytes, as every real run does.
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(ticket) + "\n" for ticket in TICKETS))
    arguments = tiny_train_args(data, data, tmp_path / "run", max_steps=1, batch_size=2, eval_steps=1)
    command = [sys.executable, "-X", "importtime", "-m", "ftlib", *arguments]
    result = subprocess.run(
        command, cwd=ROOT, env=cli_env(FTLIB_NUM_THREADS="1"), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"\|\s+bitsandbytes$", result.stderr, re.MULTILINE)  # -X importtime: it was imported
    assert "kernels-community" not in result.stdout + result.stderr


def throwaway_notebook(path: Path) -> Path:
    """Four code cells: parameters, one that sleeps, one with progress lines, one that imports bitsandbytes."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# A throwaway lesson"),
        nbformat.v4.new_code_cell(
            'profile = "auto"\ndataset = "support_tickets"\nrun_dir = None', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell("import time\n\ntime.sleep(1)"),
        nbformat.v4.new_code_cell(
            'from ftlib.core.progress import track\n\nfor _ in track(range(2), 2, "demo", "batch"):\n'
            '    print("[ftlib]-looking output that is not a progress line")'
        ),
        nbformat.v4.new_code_cell("import bitsandbytes  # its kernels-hub message must not show"),
    ]
    nbformat.write(notebook, path)
    return path


@pytest.mark.integration
def test_curriculum_shows_cells_and_relays_kernel_progress(tmp_path):
    source = throwaway_notebook(tmp_path / "tiny_lesson.ipynb")
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftlib",
            "curriculum",
            "--profile",
            "smoke",
            "--run-dir",
            str(run_dir),
            "--only",
            str(source),
        ],
        cwd=ROOT,
        env=cli_env(FTLIB_PROGRESS="lines"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    cells = [line for line in lines if line.startswith("   cell ")]
    # papermill injects a parameters cell after ours: five code cells
    assert [line.split(" at ")[0] for line in cells] == [f"   cell {n}/5" for n in range(1, 6)]
    assert cells[0].endswith(': profile = "auto"') and cells[1].endswith(": # Parameters")
    assert cells[2].endswith(": import time")
    assert cells[3].split(" at ")[1].startswith("0:01: ")  # the cell after the sleep starts a second later
    relayed = [line for line in lines if line.startswith("      demo:")]
    assert [line.split(",")[0] for line in relayed] == ["      demo: batch 1/2 (50%)", "      demo: batch 2/2 (100%)"]
    assert lines.index(relayed[0]) > lines.index(cells[3])  # under the cell that printed them
    assert lines[-3].startswith("   tiny_lesson done in ") and lines[-2].startswith("All notebooks ran")
    assert lines[-1] == f"HTML pages of the executed notebooks: {run_dir / 'html' / 'index.html'}"
    assert "not a progress line" not in result.stdout  # only ftlib's progress lines leave the kernel
    output = result.stdout + result.stderr
    assert "without encryption" not in output and "kernels-community" not in output
    assert "[IPKernelApp]" not in output  # e.g. "Parent appears to have exited": every kernel was shut down
    executed = (run_dir / "notebooks" / "tiny_lesson.ipynb").read_text()
    assert "kernels-community" not in executed and "import bitsandbytes" in executed
    assert list(json.loads((run_dir / "curriculum_timings.json").read_text())) == ["tiny_lesson"]


@pytest.mark.unit
def test_finished_kernels_are_shut_down_without_an_interrupt(monkeypatch):
    """jupyter_client interrupts before a shutdown request; the curriculum's manager skips that SIGINT
    (a loaded machine's kernel logged "KeyboardInterrupt caught in kernel"), but still interrupts a running one."""
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    from ftlib.course.curriculum import curriculum_kernel_manager

    sent = []

    async def record_interrupt(self):
        sent.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", record_interrupt)
    manager = curriculum_kernel_manager({})()
    manager.shutting_down = False
    asyncio.run(manager._async_interrupt_kernel())
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())
    assert sent == [False]
