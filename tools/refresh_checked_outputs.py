"""Refresh the outputs that nbval compares, and strip every other output from the notebooks.

Run after changing a notebook:  .venv/bin/python tools/refresh_checked_outputs.py [NAME ...]
(names such as 01_base_model; the default is all, in order, since 03-05 need 02's splits).
Each notebook runs with papermill in the smoke profile (the profile CI uses); the outputs (but stderr) of cells
marked ``# NBVAL_CHECK_OUTPUT`` are copied back into notebooks/, all other outputs are removed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ftlib.course.curriculum import NOTEBOOKS  # noqa: E402

MARK = "NBVAL_CHECK_OUTPUT"


def main(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as run_dir:
        for name in names or NOTEBOOKS:
            path = ROOT / "notebooks" / f"{name}.ipynb"
            executed_path = Path(run_dir) / f"{name}.ipynb"
            papermill.execute_notebook(
                str(path),
                str(executed_path),
                cwd=str(path.parent),
                kernel_name="python3",
                parameters={"profile": "smoke", "run_dir": run_dir},
                progress_bar=False,
            )
            executed = {c.source: c for c in nbformat.read(executed_path, as_version=4).cells if c.cell_type == "code"}
            notebook = nbformat.read(path, as_version=4)
            for cell in notebook.cells:
                if cell.cell_type != "code":
                    continue
                keep = MARK in cell.source
                # nbval refuses reference outputs without an execution count ("unrun reference cell").
                cell.execution_count = executed[cell.source].execution_count if keep else None
                cell.outputs = [o for o in executed[cell.source].outputs if o.get("name") != "stderr"] if keep else []
                cell.metadata.pop("execution", None)
                cell.metadata.pop("papermill", None)
            nbformat.write(notebook, path)
            print(f"refreshed {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
