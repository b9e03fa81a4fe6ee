"""A notebook opened the way Colab opens it: alone, in a runtime that has only its own torch and numpy.

The runtime is a fresh virtualenv holding torch, a numpy at another version than our pin (as Colab's is) and
ipykernel; ``COLAB_RELEASE_TAG`` is set; the "published repository" is a local git repository made from this
working tree, stamped into the notebook's setup cell in place of the GitHub URL. The notebook's real setup cell
then clones, installs and imports, and the rest of the notebook runs in the smoke profile in the same kernel.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftlib.core import hosted
from ftlib.course import publish

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "03_lora.ipynb"  # trains, so it also proves the splits are rebuilt on a fresh machine
RUNTIME_NUMPY = "2.2.6"  # not our pin: the setup cell must leave the runtime's numpy alone
REF = "course-test"


def run(command: list[str], **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def published_repository(folder: Path) -> str:
    """This working tree (tracked and untracked-not-ignored files) committed into a local repository, tagged."""
    files = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    git = ["git", "-C", str(folder), "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    run(["git", "init", "--quiet", str(folder)])
    run(git + ["add", "--all"])
    run(git + ["commit", "--quiet", "-m", "published course"])
    run(git + ["tag", REF])
    return run(git + ["rev-parse", "HEAD"]).strip()


def runtime_venv(folder: Path) -> Path:
    """A fresh virtualenv with only what a hosted runtime brings: torch, numpy and a kernel."""
    pins = hosted.read_pins(ROOT)
    run([sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # as the setup cell's own installs (ftlib.core.hosted.pip_install): 30 s less
            f"torch=={pins['torch']}",
            f"numpy=={RUNTIME_NUMPY}",
            f"ipykernel=={pins['ipykernel']}",
        ]
    )
    run(
        [
            str(python),
            "-m",
            "ipykernel",
            "install",
            "--prefix",
            str(folder),
            "--name",
            "colab-sim",
            "--display-name",
            "simulated Colab",
        ]
    )
    return python


def version(python: Path, module: str) -> str:
    return run([str(python), "-c", f"import {module}; print({module}.__version__)"], cwd="/").strip()


def test_a_notebook_opened_alone_on_colab_sets_itself_up_and_runs(tmp_path, monkeypatch):
    import papermill

    remote = tmp_path / "published-course"
    commit = published_repository(remote)
    python = runtime_venv(tmp_path / "runtime")
    torch_before = version(python, "torch")
    assert (
        run([str(python), "-c", "import importlib.util as u; print(u.find_spec('ftlib'))"], cwd="/").strip() == "None"
    )

    # Only the notebook arrives, as when Colab opens it from GitHub; its setup cell points at the local repository.
    notebook = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    setup = [c for c in notebook["cells"] if "setup" in c["metadata"].get("tags", [])]
    assert len(setup) == 1
    setup[0]["source"] = publish.Publication(str(remote), REF).setup_cell()
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    (content / NOTEBOOK).write_text(json.dumps(notebook))

    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-simulated")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "runtime" / "share" / "jupyter"))
    # PYTHONDONTWRITEBYTECODE too: Colab writes bytecode, and the setup cell installs without it (--no-compile).
    for name in ("FTLIB_RUN_DIR", "FTLIB_PROFILE", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE"):
        monkeypatch.delenv(name, raising=False)
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(content / NOTEBOOK),
        str(executed),
        cwd=str(content),
        kernel_name="colab-sim",
        parameters={"profile": "smoke"},
        progress_bar=False,
    )

    cells = json.loads(executed.read_text())["cells"]
    setup_output = "".join(
        "".join(o.get("text", "")) for c in cells if "setup" in c["metadata"].get("tags", []) for o in c["outputs"]
    )
    assert f"course at {REF} ({commit[:10]})" in setup_output
    assert "No GPU" in setup_output
    clone = content / "published-course"
    assert run(["git", "-C", str(clone), "rev-parse", "HEAD"]).strip() == commit
    # The runtime keeps its own torch and numpy; the rest of the stack is the pinned one.
    assert version(python, "numpy") == RUNTIME_NUMPY
    assert version(python, "torch") == torch_before
    assert version(python, "transformers") == hosted.read_pins(ROOT)["transformers"]
    run_dir = clone / "runs" / "support_tickets-smoke"
    assert (run_dir / "data" / "train.jsonl").exists(), "the splits of lesson 02 were not rebuilt"
    assert (run_dir / "lora" / "adapter" / "adapter_model.safetensors").exists()
    assert os.environ.get("COLAB_RELEASE_TAG")  # still the simulated runtime (monkeypatch undoes it afterwards)
