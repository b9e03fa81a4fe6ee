"""The curriculum runner (``python -m ftlib curriculum``, ``make curriculum``): every lesson notebook run with papermill
in one folder, with the running cell and its kernel's progress lines shown, each notebook's time, and the executed
notebooks written as HTML pages."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NOTEBOOKS = (
    "01_base_model",
    "02_data_curation",
    "03_lora",
    "04_qlora",
    "05_evaluation",
    "06_what_matters",
    "07_after_training",
)


def curriculum_kernel_manager(extra_env: dict[str, str]) -> type:
    """A Jupyter kernel manager class for the notebooks ftlib runs: ``extra_env`` added to the kernel's
    environment, and CurveZMQ transport encryption where the kernel supports it.

    It goes to nbclient as ``kernel_manager_class``, not as a ``km`` instance: nbclient then owns the
    kernel and shuts it down when the notebook ends (a passed-in manager's kernel would outlive it).

    ipykernel warns "Kernel is running over TCP without encryption" at every start of a kernel without
    Curve keys: a learner cannot act on it, and encrypting the local sockets (jupyter_client 8.10's
    ``transport_encryption``) is cheaper than hiding the warning. "auto" asks only for kernels whose spec
    declares Curve support (ipykernel's does); pyzmq builds without Curve keep the old plain transport.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    class CurriculumKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs) -> None:
            kwargs.setdefault("transport_encryption", "auto" if zmq.has("curve") else "disabled")
            super().__init__(**kwargs)

        async def start_kernel(self, **kwargs) -> None:
            kwargs["env"] = {**os.environ, **kwargs.get("env", {}), **extra_env}
            await super().start_kernel(**kwargs)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client sends SIGINT before every shutdown request. The notebook has finished by then, but
            # on a loaded machine the kernel can still be flushing its last output, and ipykernel then logs
            # "KeyboardInterrupt caught in kernel" into the curriculum's output. Nothing is left to interrupt.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return CurriculumKernelManager


def run_notebook(source: Path, output: Path, parameters: dict, mode: str) -> float:
    """Execute one notebook with papermill, showing its cells and the progress lines its kernel prints.

    The kernel gets ``FTLIB_PROGRESS=lines`` (or ``off`` when this process's progress is off): nobody
    watches its output live, so its training and generation progress comes as lines, which
    ``ftlib.core.progress.KernelLines`` passes on to this console; ``TQDM_DISABLE=1`` keeps other libraries'
    bars out of the executed notebook. Returns the seconds the notebook took.
    """
    import papermill

    from ftlib.core.progress import KernelLines, NotebookCells

    cells = NotebookCells(source.stem, mode)
    kernel_env = {"FTLIB_PROGRESS": "off" if mode == "off" else "lines", "TQDM_DISABLE": "1"}
    started, failed = time.perf_counter(), True
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            cwd=str(source.parent),
            kernel_name="python3",
            progress_bar=False,
            kernel_manager_class=curriculum_kernel_manager(kernel_env),
            stdout_file=KernelLines(cells.relay),
            stderr_file=KernelLines(cells.relay),
            on_notebook_start=cells.on_notebook_start,
            on_cell_execute=cells.on_cell_execute,
        )
        failed = False
    finally:
        seconds = round(time.perf_counter() - started, 1)
        cells.finish(seconds, failed)
    return seconds


def command_curriculum(args) -> int:
    """Run the curriculum's notebooks (or those of ``--only``: names or .ipynb paths) into the run folder."""
    from ftlib.core.fileio import write_json
    from ftlib.core.progress import progress_mode
    from ftlib.core.tasks import get_task, is_spec_path, raw_data_file
    from ftlib.data.records import read_records
    from ftlib.engine.profiles import project_root, resolve_profile, run_paths

    # Before the first notebook runs for minutes, and before the run folder is made: the spec, its data file
    # (read whole: a malformed line is named here, not in lesson 02), the profile and the notebooks asked for.
    task = get_task(args.dataset)
    read_records(raw_data_file(task))
    # the notebooks run in their own folder: a spec path reaches them absolute
    dataset = str(Path(args.dataset).resolve()) if is_spec_path(args.dataset) else args.dataset
    profile = resolve_profile(args.profile)
    root = project_root()
    sources = [
        Path(entry) if entry.endswith(".ipynb") else root / "notebooks" / f"{entry}.ipynb"
        for entry in args.only or NOTEBOOKS
    ]
    missing = [str(source) for source in sources if not source.is_file()]
    if missing:
        raise FileNotFoundError(f"no such notebook: {', '.join(missing)} (the lessons: {', '.join(NOTEBOOKS)})")
    paths = run_paths(args.run_dir, profile, task.name)
    out_dir = paths.root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = progress_mode()
    executed = [out_dir / f"{source.stem}.ipynb" for source in sources]
    title = f"ftlib curriculum: {task.name} task, {profile.name} profile"
    timings = {}
    for source, output in zip(sources, executed):
        name = source.stem
        print(f"== {name} ({profile.name} profile) -> {output}", flush=True)
        started = time.perf_counter()
        try:
            timings[name] = run_notebook(
                source, output, {"profile": profile.name, "dataset": dataset, "run_dir": str(paths.root)}, mode
            )
        except Exception:  # the failed notebook's partial output is a page too, marked failed; later ones "not run"
            if not args.no_html:
                seconds = {**timings, name: round(time.perf_counter() - started, 1)}
                try:
                    write_curriculum_html(executed, paths.root / "html", title, seconds, failed=name)
                except Exception as error:  # the notebook's error is the one to see
                    print(f"warning: no HTML pages ({type(error).__name__}: {error})", file=sys.stderr)
            raise
    write_json(timings, paths.root / "curriculum_timings.json")
    print(f"All notebooks ran; outputs under {paths.root}")
    if not args.no_html:
        write_curriculum_html(executed, paths.root / "html", title, timings)
    return 0


def write_curriculum_html(
    executed: list[Path], folder: Path, title: str, timings: dict[str, float], failed: str | None = None
) -> Path:
    """The executed notebooks as HTML pages under ``folder`` (``ftlib.course.report.export_html``); prints the index."""
    from ftlib.course.report import export_html

    index = export_html(executed, folder, title, timings, failed)
    print(f"HTML pages of the executed notebooks: {index}", flush=True)
    return index
