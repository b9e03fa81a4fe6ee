"""Progress of long steps: training, generation, and the notebooks of ``python -m ftlib curriculum``.

Three modes, decided once per process by ``progress_mode()``:

- ``bar``: ``tqdm.auto`` bars, on a terminal or in a Jupyter front end (widgets there);
- ``lines``: plain lines, at most one every ``LINE_INTERVAL_S`` seconds, where nobody watches live and a
  carriage-return bar would leave a mess: CI logs, pipes, files, and the papermill kernels of the curriculum;
- ``off``: nothing.

``FTLIB_PROGRESS=bar|lines|off`` overrides the choice. Without it, a non-empty ``TQDM_DISABLE`` turns
progress off (tqdm itself treats any non-empty value as "disable"), which keeps ``make test`` quiet.
Lines start with ``LINE_PREFIX``, so the curriculum can pick them out of a kernel's output and relay them.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TextIO, TypeVar

MODES = ("bar", "lines", "off")
LINE_PREFIX = "[ftlib] "
# One line per 30 s: a ten-minute training run prints ~20, enough to see it move without flooding a CI log.
LINE_INTERVAL_S = 30.0
FIRST_LINE_WIDTH = 70  # a cell's first line is cut to this width, so a cell line fits an 80-column terminal

T = TypeVar("T")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook front end, Colab, Kaggle), where tqdm.auto draws widgets."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


def is_terminal(stream: TextIO) -> bool:
    """A terminal tqdm can draw on: a tty, unless it reports 0 rows (tqdm hides every bar on a 0x0 pseudo-terminal,
    e.g. ``script`` or ``docker exec -t`` without a size)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).lines > 0
    except (OSError, ValueError):  # no file descriptor to ask: trust isatty()
        return True


def choose_mode(
    environ: Mapping[str, str] | None = None, stream: TextIO | None = None, notebook: bool | None = None
) -> str:
    """The progress mode for this environment: ``bar``, ``lines`` or ``off`` (see the module docstring).

    Args:
        environ: the environment to read; ``os.environ`` by default.
        stream: where progress goes; ``sys.stderr`` by default. A terminal gets bars.
        notebook: whether this runs in a Jupyter kernel; detected when None.

    Raises:
        ValueError: ``FTLIB_PROGRESS`` holds something other than bar, lines or off.
    """
    environ = os.environ if environ is None else environ
    override = environ.get("FTLIB_PROGRESS", "").strip().lower()
    if override:
        if override not in MODES:
            raise ValueError(f"FTLIB_PROGRESS must be one of {', '.join(MODES)}, not {override!r}")
        return override
    if environ.get("TQDM_DISABLE", ""):
        return "off"
    stream = sys.stderr if stream is None else stream
    notebook = in_notebook() if notebook is None else notebook
    return "bar" if notebook or is_terminal(stream) else "lines"


@functools.cache
def progress_mode() -> str:
    """This process's progress mode, decided on first use (``choose_mode()``) and kept."""
    return choose_mode()


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_value(value: object) -> str:
    """A postfix value as text: floats to four significant digits (a loss of ``1.2345678`` -> ``1.235``)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Progress of one long step of ``total`` units: a tqdm.auto bar, plain lines, or nothing (by ``mode``).

    In ``lines`` mode a line is printed after the first update, then at most one per ``interval`` seconds,
    and always when the total is reached, e.g.
    ``[ftlib] train: step 40/220 (18%), loss 1.235, 1:40 elapsed, ~7:30 left``.
    Time left is extrapolated from the units done since this object was made (``initial`` excluded).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        mode: str | None = None,
        interval: float = LINE_INTERVAL_S,
        stream: TextIO | None = None,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.mode = progress_mode() if mode is None else mode
        self.interval = interval
        self.stream = stream
        self.postfix: dict[str, object] = {}
        self.started = time.monotonic()
        self.last_line: float | None = None  # when the last line was printed (lines mode)
        self.printed_n: int | None = None  # the position that line showed
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            # disable=False: FTLIB_PROGRESS=bar asks for bars even where TQDM_DISABLE is set
            self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=False, file=stream)

    def _write(self, text: str) -> None:
        stream = sys.stderr if self.stream is None else self.stream  # looked up late: tests swap sys.stderr
        print(text, file=stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """The state at ``now`` (``time.monotonic()``; the current time by default) as one line."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"{LINE_PREFIX}{self.desc}: {self.unit} {self.n}/{self.total}{percent}"]
        parts += [f"{key} {format_value(value)}" for key, value in self.postfix.items()]
        parts.append(f"{format_seconds(elapsed)} elapsed")
        done = self.n - self.initial
        if 0 < done and self.n < self.total:
            parts.append(f"~{format_seconds(elapsed / done * (self.total - self.n))} left")
        return ", ".join(parts)

    def update(self, n: int = 1, **postfix: object) -> None:
        """Advance by ``n`` units; ``postfix`` values (e.g. ``loss=1.23``) are shown from now on."""
        self.n += n
        self.postfix.update(postfix)
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: format_value(v) for k, v in self.postfix.items()}, refresh=False)
            self.bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            if self.last_line is None or now - self.last_line >= self.interval or self.n >= self.total:
                self._write(self.line(now))
                self.last_line, self.printed_n = now, self.n

    def note(self, text: str) -> None:
        """A one-off message about this step (e.g. a validation loss), above the bar or as a line."""
        if self.bar is not None:
            self.bar.write(f"{self.desc}: {text}", file=self.stream)
        elif self.mode == "lines":
            self._write(f"{LINE_PREFIX}{self.desc}: {text}")

    def close(self) -> None:
        """Finish: close the bar, or print the last state if it moved since the last line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines" and self.n not in (self.printed_n, self.initial):
            self._write(self.line())
            self.printed_n = self.n

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(iterable: Iterable[T], total: int, desc: str, unit: str = "it", mode: str | None = None) -> Iterator[T]:
    """Yield from ``iterable`` while showing its progress (one unit per item)."""
    with Progress(total, desc, unit, mode=mode) as progress:
        for item in iterable:
            yield item
            progress.update()


def first_line(source: str, width: int = FIRST_LINE_WIDTH) -> str:
    """A cell's first line, cut to ``width`` characters; blank lines and nbval's markers
    (``# NBVAL_CHECK_OUTPUT`` etc., which say nothing about the cell) are skipped."""
    lines = [text.strip() for text in source.splitlines() if text.strip()]
    line = next((text for text in lines if not text.startswith("# NBVAL_")), lines[0] if lines else "")
    return line if len(line) <= width else line[: width - 3] + "..."


class NotebookCells:
    """Which cell of a notebook is running, for nbclient's hooks (``papermill.execute_notebook(on_...=)``).

    ``lines`` mode prints a line as each code cell starts (number of total, time into the notebook, its
    first line) and indents the progress lines relayed from the kernel under it; ``bar`` mode shows a
    bar of cells with the running cell's first line, and writes the relayed lines above it.
    """

    def __init__(self, name: str, mode: str | None = None, stream: TextIO | None = None):
        self.name = name
        self.mode = progress_mode() if mode is None else mode
        self.stream = stream
        self.code_cells: list[int] = []
        self.started = time.monotonic()
        self.bar = None

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=sys.stdout if self.stream is None else self.stream, flush=True)

    def on_notebook_start(self, notebook, **_) -> None:
        """The kernel is up: count the code cells of the notebook as it will run (with injected parameters)."""
        self.code_cells = [
            i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and cell.source.strip()
        ]
        self.started = time.monotonic()
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=len(self.code_cells),
                desc=self.name,
                unit="cell",
                disable=False,
                file=self.stream,
                bar_format="{desc}: {bar:20} {n_fmt}/{total_fmt} cells [{elapsed}{postfix}]",
            )

    def on_cell_execute(self, cell, cell_index: int, **_) -> None:
        """A code cell is about to run."""
        number = self.code_cells.index(cell_index) + 1 if cell_index in self.code_cells else 0
        if self.bar is not None:
            self.bar.n = number - 1  # the cells finished before this one
            self.bar.set_postfix_str(f"cell {number}: {first_line(cell.source, 40)}", refresh=True)
        elif self.mode == "lines":
            elapsed = format_seconds(time.monotonic() - self.started)
            self._write(f"   cell {number}/{len(self.code_cells)} at {elapsed}: {first_line(cell.source)}")

    def relay(self, line: str) -> None:
        """A progress line from the kernel (its ``LINE_PREFIX`` taken off), shown under the running cell."""
        if self.mode != "off":
            self._write(f"      {line}")

    def finish(self, seconds: float, failed: bool = False) -> None:
        """The notebook ended: close the bar and print its time (in every mode, as the curriculum always did)."""
        if self.bar is not None:
            if not failed:
                self.bar.n = len(self.code_cells)
            self.bar.close()
            self.bar = None
        self._write(f"   {self.name} {'failed after' if failed else 'done in'} {seconds:.1f} s")


class KernelLines:
    """A file-like sink for papermill's ``stdout_file``/``stderr_file``: it passes on ftlib's progress lines.

    A kernel's output arrives in chunks, not lines; complete lines starting with ``LINE_PREFIX`` go to
    ``relay`` without the prefix, and the rest (tables, warnings, tracebacks) stays in the executed notebook
    only, so the console shows each progress line once and nothing else of the notebook.
    """

    def __init__(self, relay):
        self.relay = relay
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *complete, self.pending = self.pending.split("\n")
        for line in complete:
            if line.startswith(LINE_PREFIX):
                self.relay(line[len(LINE_PREFIX) :].rstrip())
        return len(text)

    def flush(self) -> None:
        """Nothing buffered here can be passed on before its line ends."""
