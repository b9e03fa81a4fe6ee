"""One source of truth for versions: pyproject.toml. Everything else must agree with it."""

import json
import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    pins = {canonical(m.group(1)): m.group(2) for line in lines if (m := PIN.fullmatch(line))}
    unpinned = [line for line in lines if not PIN.fullmatch(line) and not line.startswith("ftlib[")]
    assert not unpinned, f"every dependency must be pinned with ==: {unpinned}"
    return pins


def test_environment_yml_matches_pyproject():
    text = (ROOT / "environment.yml").read_text()
    pins = {canonical(m.group(1)): m.group(2) for m in PIN.finditer(text)}
    assert pins == pyproject_pins()
    assert "conda-forge" in text and "nodefaults" in text


def test_makefile_torch_pin_matches():
    makefile = (ROOT / "Makefile").read_text()
    assert f"TORCH_PIN := torch=={pyproject_pins()['torch']}" in makefile


def test_hosted_setup_installs_exactly_the_pins():
    """Colab/Kaggle setup cells install from pyproject itself, so no notebook can carry a drifting pin list."""
    from ftlib.core import hosted

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = {
        canonical(m.group(1)): m.group(2)
        for line in project["dependencies"] + project["optional-dependencies"]["notebooks"]
        if (m := PIN.fullmatch(line))
    }
    assert hosted.read_pins(ROOT) == expected
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
        assert "pip install" not in source, f"{path.name}: installs belong to ftlib.core.hosted, which reads pyproject"


def test_installed_versions_are_the_pinned_ones():
    """Fails loudly when the environment drifts from the pins the course was tested with."""
    for name, version in pyproject_pins().items():
        installed = metadata.version(name)
        assert installed.split("+")[0] == version, f"{name} {installed} installed, {version} pinned"
