"""Hosted notebooks (Colab, Kaggle): install the pinned stack around the runtime's own torch and numpy.

Every notebook's setup cell clones the course at its pinned ref, puts the clone on ``sys.path`` and calls
``setup``. This module imports only the standard library at import time: it runs before the pinned stack is
there. On your own machine (``make setup``) the setup cell never calls it.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The runtime's own builds: Colab's torch is compiled for its CUDA, and replacing numpy under a running kernel
# breaks every extension compiled against it until the runtime restarts (colabtools#5238).
RUNTIME_OWNED = ("torch", "numpy")
# Notebook front-end packages the hosted runtime provides and wires to its own UI: never replaced there.
FRONT_END = ("ipykernel", "papermill", "jupyterlab", "notebook")
DRIVE_MOUNT = Path("/content/drive")
PIN = re.compile(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)")


def hosted_runtime() -> str | None:
    """ "colab", "kaggle" or None, from the variables those runtimes set in every kernel."""
    if "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    return None


def canonical(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(course: str | Path) -> dict[str, str]:
    """The ``name==version`` pins of pyproject.toml: core dependencies, then the ``notebooks`` extra."""
    import tomllib

    project = tomllib.loads((Path(course) / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project.get("optional-dependencies", {}).get("notebooks", [])
    return {canonical(m.group(1)): m.group(2) for line in lines if (m := PIN.fullmatch(line.strip()))}


def installed_versions() -> dict[str, str]:
    """Every installed distribution and its version, by canonical name."""
    versions = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions[canonical(name)] = dist.version
    return versions


@dataclass(frozen=True)
class InstallPlan:
    """What the setup cell installs, and what it leaves to the runtime."""

    requirements: list[str]  # name==version, given to pip
    constraints: list[str]  # the runtime's own torch and numpy, held at their installed versions
    kept: dict[str, str]  # runtime-owned or front-end packages left as they are: name -> installed version


def install_plan(pins: dict[str, str], installed: dict[str, str]) -> InstallPlan:
    """Pins to install, with torch and numpy held where the runtime has them and front-end packages left alone."""
    requirements, constraints, kept = [], [], {}
    for name, version in pins.items():
        if name in RUNTIME_OWNED and name in installed:
            constraints.append(f"{name}=={installed[name]}")
            kept[name] = installed[name]
        elif name in FRONT_END or (name == "ipywidgets" and name in installed):
            # Colab ships its own widget manager for its ipywidgets; an installed one is left as it is.
            if name in installed:
                kept[name] = installed[name]
        else:
            requirements.append(f"{name}=={version}")
    for name in RUNTIME_OWNED:
        if name in installed and f"{name}=={installed[name]}" not in constraints:
            constraints.append(f"{name}=={installed[name]}")
    return InstallPlan(requirements, constraints, kept)


def top_level_modules(distribution: str) -> set[str]:
    """The import names a distribution provides (``top_level.txt``, else its files), e.g. PyYAML -> yaml."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return set()
    names = set((dist.read_text("top_level.txt") or "").split())
    for file in dist.files or ():
        parts = Path(str(file)).parts
        if parts and not parts[0].endswith((".dist-info", ".data")) and parts[0] != "..":
            names.add(parts[0].removesuffix(".py"))
    return {name for name in names if name.isidentifier()}


def stale_imports(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Packages whose version pip changed while an old version is already imported in this kernel."""
    stale = []
    for name, version in after.items():
        if before.get(name) not in (None, version) and top_level_modules(name) & set(sys.modules):
            stale.append(f"{name} {before[name]} -> {version}")
    return sorted(stale)


def pip_install(arguments: list[str]) -> None:
    """Run pip in this kernel's interpreter; its error output reaches the notebook.

    ``--no-compile``: pip would byte-compile every installed module, most of which a lesson never imports; Python
    compiles what is imported on first use instead, and keeps it, as Colab and Kaggle write bytecode (installing
    torch into a fresh virtualenv: 49 s with byte compilation, 19 s without, 2026-12-07, 2 cores)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *arguments,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        hint = (
            "On Kaggle, switch Internet on in the notebook's settings (Session options). "
            if hosted_runtime() == "kaggle"
            else ""
        )
        raise RuntimeError(
            f"pip could not install the course's pinned stack. {hint}pip said:\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


def imported_distributions(installed: dict[str, str]) -> list[str]:
    """``name==version`` of every distribution with a module imported in this kernel (pip must not replace them)."""
    loaded = {name.partition(".")[0] for name in list(sys.modules)}
    return [f"{name}=={version}" for name, version in installed.items() if top_level_modules(name) & loaded]


def install_with_constraints(requirements: list[str], constraints: list[str]) -> None:
    """``pip install`` the requirements with a constraints file."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(constraints) + "\n")
    try:
        pip_install(["--constraint", handle.name, *requirements])
    finally:
        os.unlink(handle.name)


def install_stack(course: str | Path) -> list[str]:
    """Install the pinned stack (torch and numpy held at the runtime's versions) and ftlib from the clone.

    First try holding every package this kernel has already imported at its version too, so no restart is
    needed; when a pin needs a newer version of one of them, install anyway and report it.

    Returns:
        The packages that changed while an older version was already imported ("name old -> new"): the
        runtime must restart before they can be used.
    """
    course = Path(course)
    before = installed_versions()
    plan = install_plan(read_pins(course), before)
    missing = [r for r in plan.requirements if before.get(canonical(r.split("==")[0])) != r.split("==")[1]]
    if missing:
        print(
            f"Installing {len(missing)} pinned package(s), keeping the runtime's "
            + ", ".join(f"{n} {v}" for n, v in plan.kept.items())
            + " ...",
            flush=True,
        )
        pinned = {r.split("==")[0] for r in plan.requirements}
        held = [c for c in imported_distributions(before) if c.split("==")[0] not in pinned | set(RUNTIME_OWNED)]
        try:
            install_with_constraints(plan.requirements, plan.constraints + held)
        except RuntimeError:
            install_with_constraints(plan.requirements, plan.constraints)
    if "ftlib" not in before:
        # Editable, so `python -m ftlib ...` works in subprocesses too; this kernel uses the sys.path entry.
        pip_install(["--no-deps", "--editable", str(course)])
    importlib.invalidate_caches()
    return stale_imports(before, installed_versions())


def clone_state(course: str | Path, ref: str) -> str:
    """A line saying which commit the clone is at, and whether it is the pinned ref."""

    def rev(name: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(course), "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    head, pinned = rev("HEAD"), rev(ref)
    if head and head == pinned:
        return f"course at {ref} ({head[:10]}) in {course}"
    return (
        f"course in {course} is at {head[:10] or 'an unknown commit'}, not at {ref}"
        f"{f' ({pinned[:10]})' if pinned else ''}: an earlier clone is kept as it is"
    )


def describe_gpu() -> str:
    """The GPU this runtime has: name, memory, compute capability, bf16 support (or why there is none)."""
    import torch

    if not torch.cuda.is_available():
        return (
            "No GPU: this runtime runs on the CPU. On Colab choose Runtime > Change runtime type > T4 GPU; "
            "on Kaggle, Settings > Accelerator."
        )
    lines = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        bf16 = props.major >= 8  # bf16 tensor cores arrived with Ampere (compute capability 8.0)
        lines.append(
            f"GPU {index}: {props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability "
            f"{props.major}.{props.minor}, bf16 {'yes' if bf16 else 'no: fp16 is used'}"
        )
    if torch.cuda.device_count() > 1:
        lines.append(
            "The notebooks train on GPU 0 (a 4-bit model cannot be split by DataParallel); "
            "use `python -m ftlib train` under torchrun for several GPUs."
        )
    return "\n".join(lines)


def setup(course: str | Path, ref: str) -> None:
    """What the setup cell does after cloning: install, check the kernel can use it, show the clone and the GPU."""
    course = Path(course).resolve()
    if str(course) not in sys.path:
        sys.path.insert(0, str(course))
    stale = install_stack(course)
    if stale:
        raise RuntimeError(
            "Restart the runtime (Colab: Runtime > Restart session; Kaggle: Run > Restart & clear "
            "cell outputs), then run this notebook again from the top. These packages were already "
            "imported in this kernel in an older version: " + "; ".join(stale)
        )
    import ftlib

    if Path(ftlib.__file__).resolve().parent != course / "ftlib":
        raise RuntimeError(
            f"`import ftlib` finds {ftlib.__file__}, not the clone in {course}: restart the runtime "
            "and run this notebook again from the top."
        )
    print(clone_state(course, ref))
    print(describe_gpu())


def mount_drive(folder: str = "ftlib-runs") -> Path:
    """Mount Google Drive on Colab and return a folder in it for run outputs that outlive the VM."""
    if hosted_runtime() != "colab":
        raise ValueError(
            "run_dir='drive' keeps runs on Google Drive and works on Colab only; "
            "elsewhere pass a folder path as run_dir."
        )
    from google.colab import drive  # only on Colab

    if not (DRIVE_MOUNT / "MyDrive").is_dir():
        drive.mount(str(DRIVE_MOUNT))
    root = DRIVE_MOUNT / "MyDrive" / folder
    root.mkdir(parents=True, exist_ok=True)
    return root
