"""Badges, setup cells and the hosted (Colab/Kaggle) install plan: one place for the repository and ref."""

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from ftlib.core import hosted
from ftlib.course import publish

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent


def test_notebooks_and_readme_agree_with_pyproject():
    assert publish.check(ROOT) == [], "run `python -m ftlib publish` after changing [tool.ftlib.publish]"


def test_badges_point_at_that_notebook_at_that_ref():
    publication = publish.Publication("https://github.com/me/course.git", "v1.2")
    badges = publication.badges("03_lora.ipynb")
    assert "](https://colab.research.google.com/github/me/course/blob/v1.2/notebooks/03_lora.ipynb)" in badges
    assert (
        "(https://kaggle.com/kernels/welcome?src=https://github.com/me/course/blob/v1.2/notebooks/03_lora.ipynb)"
        in badges
    )
    with pytest.raises(ValueError, match="github.com/OWNER/REPO"):
        publish.Publication("/tmp/local-clone", "main").badges("03_lora.ipynb")


def test_stamping_a_fork_rewrites_every_place_and_check_sees_a_stale_one(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    pyproject = tmp_path / "pyproject.toml"
    original = publish.read_publication(ROOT)
    pyproject.write_text(
        pyproject.read_text()
        .replace(f'ref = "{original.ref}"', 'ref = "v9"')
        .replace(original.repository, "https://github.com/fork/course")
    )
    problems = publish.check(tmp_path)
    assert len(problems) == 3 * len(list((tmp_path / "notebooks").glob("*.ipynb")))  # badges, setup, README

    changed = publish.stamp(tmp_path)
    assert len(changed) == len(list((tmp_path / "notebooks").glob("*.ipynb"))) + 1
    assert publish.check(tmp_path) == []
    assert publish.stamp(tmp_path) == []  # idempotent
    cells = json.loads((tmp_path / "notebooks" / "05_evaluation.ipynb").read_text())["cells"]
    setup = [c for c in cells if "setup" in c["metadata"].get("tags", [])]
    assert len(setup) == 1 and "COURSE_REF = 'v9'" in "".join(setup[0]["source"])
    assert cells.index(setup[0]) == 1 + next(
        i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])
    )
    assert "blob/v9/notebooks/05_evaluation.ipynb" in (tmp_path / "README.md").read_text()


def test_missing_publish_table_is_a_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(ValueError, match=r"pyproject.toml: \[tool.ftlib.publish\] needs `repository` and `ref`"):
        publish.read_publication(tmp_path)


def test_setup_cell_does_nothing_off_colab(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    namespace = {}
    exec(publish.read_publication(ROOT).setup_cell(), namespace)  # would clone and pip install on Colab
    assert "course" not in namespace and "hosted" not in namespace


def test_install_plan_holds_the_runtimes_torch_and_numpy():
    pins = {
        "torch": "2.13.0",
        "numpy": "2.4.6",
        "transformers": "5.23.0",
        "ipywidgets": "8.1.9",
        "ipykernel": "7.4.0",
        "jupyterlab": "4.6.6",
        "papermill": "2.7.0",
    }
    colab = {"torch": "2.8.0+cu126", "numpy": "2.0.2", "ipywidgets": "7.7.1", "ipykernel": "6.17.1"}
    plan = hosted.install_plan(pins, colab)
    assert plan.requirements == ["transformers==5.23.0"]
    assert plan.constraints == ["torch==2.8.0+cu126", "numpy==2.0.2"]
    assert plan.kept == {"torch": "2.8.0+cu126", "numpy": "2.0.2", "ipywidgets": "7.7.1", "ipykernel": "6.17.1"}
    bare = hosted.install_plan(pins, {"torch": "2.13.0"})  # no ipywidgets, no numpy: installed from the pins
    assert bare.requirements == ["numpy==2.4.6", "transformers==5.23.0", "ipywidgets==8.1.9"]
    assert bare.constraints == ["torch==2.13.0"]


def test_read_pins_takes_core_and_notebook_pins():
    pins = hosted.read_pins(ROOT)
    assert pins["transformers"] and pins["ipywidgets"] and "pytest" not in pins


def test_stale_imports_name_packages_replaced_under_the_kernel(monkeypatch):
    monkeypatch.setattr(hosted, "top_level_modules", lambda name: {"json"} if name == "fake-json" else {"nope_x"})
    stale = hosted.stale_imports({"fake-json": "1.0", "other": "1.0"}, {"fake-json": "2.0", "other": "2.0"})
    assert stale == ["fake-json 1.0 -> 2.0"]  # "other" changed too, but nothing imported it
    assert hosted.stale_imports({"fake-json": "1.0"}, {"fake-json": "1.0"}) == []


def test_top_level_modules_reads_installed_distributions():
    assert "yaml" in hosted.top_level_modules("pyyaml")
    assert "transformers" in hosted.top_level_modules("transformers")


def test_hosted_runtime_and_drive(monkeypatch, tmp_path):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    assert hosted.hosted_runtime() is None
    with pytest.raises(ValueError, match="works on Colab only"):
        hosted.mount_drive()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert hosted.hosted_runtime() == "kaggle"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    mounted = []
    drive = types.SimpleNamespace(
        mount=lambda path: (mounted.append(path), (Path(path) / "MyDrive").mkdir(parents=True))
    )
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(drive=drive))
    monkeypatch.setattr(hosted, "DRIVE_MOUNT", tmp_path / "drive")
    root = hosted.mount_drive()
    assert mounted == [str(tmp_path / "drive")] and root == tmp_path / "drive" / "MyDrive" / "ftlib-runs"
    assert root.is_dir()
    hosted.mount_drive()
    assert len(mounted) == 1  # already mounted: not asked again


def test_describe_gpu_reports_bf16_from_compute_capability(monkeypatch):
    import torch

    props = types.SimpleNamespace(name="Tesla T4", total_memory=15 * 2**30, major=7, minor=5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    assert hosted.describe_gpu() == "GPU 0: Tesla T4, 15.0 GiB, compute capability 7.5, bf16 no: fp16 is used"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hosted.describe_gpu().startswith("No GPU")
