"""The workshop kit (workshop/): its commands, flags and notebook names exist, and its timing table is the tool's."""

import argparse
import json
import re
from pathlib import Path

import pytest
from conftest import load_script

from ftlib.course.curriculum import NOTEBOOKS
from ftlib.course.parser import build_parser
from ftlib.course.timings import CPU_2_CORES, CPU_2_CORES_LATEST, SMOKE_2_CORES

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "workshop" / "README.md"
DISCUSSION = ROOT / "workshop" / "discussion.md"
# The figures the guide quotes (and every notebook's run-time line): one source, ftlib.course.timings.
MEASURED = CPU_2_CORES.seconds
MEASURED_LABEL = CPU_2_CORES.label


def load_tool():
    return load_script(ROOT / "tools" / "workshop_timings.py", "workshop_timings")


def code_text(path: Path) -> list[str]:
    """Every inline code span and every line of a fenced block: where commands and flags are written."""
    text = path.read_text(encoding="utf-8")
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    outside = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    return [line for block in fenced for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", outside)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(train_flags=True)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.unit
def test_every_ftlib_command_and_flag_in_the_kit_exists():
    commands = subcommands()
    every_flag = {flag for sub in commands.values() for flag in sub._option_string_actions}
    checked = set()
    for path in (GUIDE, DISCUSSION):
        for snippet in code_text(path):
            for rest in re.findall(r"python -m ftlib\s+([^`]*)", snippet):
                words = rest.split()
                assert words[0] in commands, f"{path.name}: no command `python -m ftlib {words[0]}`"
                options = commands[words[0]]._option_string_actions
                for word in words[1:]:
                    if word.startswith("--"):
                        flag = word.split("=")[0]
                        assert flag in options, f"{path.name}: `python -m ftlib {words[0]}` has no flag {flag}"
                        checked.add(flag)
            if re.fullmatch(r"--[a-z][a-z-]*", snippet):  # a flag named on its own, e.g. `--resume`
                assert snippet in every_flag, f"{path.name}: no python -m ftlib command has the flag {snippet}"
                checked.add(snippet)
    assert {"--profile", "--only", "--resume", "--no-html", "--run-dir", "--task"} <= checked


@pytest.mark.unit
def test_every_notebook_make_target_and_parameter_in_the_kit_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.M))
    parameters = set()
    for name in NOTEBOOKS:
        notebook = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
        cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        parameters |= set(re.findall(r"^(\w+) =", "".join(cell["source"]), flags=re.M))
    for path in (GUIDE, DISCUSSION):
        text = path.read_text(encoding="utf-8")
        named = set(re.findall(r"\b(\d\d_[a-z]+(?:_[a-z]+)*)", text))
        assert named, path.name
        for name in named:
            assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), f"{path.name}: no notebook {name}"
        for snippet in code_text(path):
            for target in re.findall(r"(?:^|\s)make ([a-z-]+)", snippet):
                assert target in targets, f"{path.name}: no make target {target}"
            for parameter in re.findall(r"-p (\w+)", snippet):
                assert parameter in parameters, f"{path.name}: no notebook parameter {parameter}"
            for parameter in re.findall(r"^(\w+) ?= ?\"", snippet):  # `run_dir="drive"`, `profile = "smoke"`
                if parameter.islower() and not parameter.startswith("ftlib"):
                    assert parameter in parameters, f"{path.name}: no notebook parameter {parameter}"
    guide = GUIDE.read_text(encoding="utf-8")
    assert all(f"`{name}`" in guide for name in NOTEBOOKS), "the guide's lesson table names every notebook"


@pytest.mark.unit
def test_discussion_has_three_to_five_prompts_per_lesson():
    sections = re.split(r"^## ", DISCUSSION.read_text(encoding="utf-8"), flags=re.M)[1:]
    by_notebook = {name: [s for s in sections if f"`{name}`" in s.splitlines()[0]] for name in NOTEBOOKS}
    for name, found in by_notebook.items():
        assert len(found) == 1, f"one section for {name}"
        prompts = re.findall(r"^\d+\. ", found[0], flags=re.M)
        assert 3 <= len(prompts) <= 5, f"{name}: {len(prompts)} prompts"


@pytest.mark.unit
def test_timing_tool_reads_curriculum_timings_and_prints_the_guides_table(tmp_path, capsys):
    tool = load_tool()
    cpu = tmp_path / "support_tickets-cpu" / "curriculum_timings.json"
    cpu.parent.mkdir()
    cpu.write_text(json.dumps(MEASURED))  # the format command_curriculum writes: notebook name -> seconds
    assert tool.read_timings(cpu) == {name: float(seconds) for name, seconds in MEASURED.items()}

    assert tool.main([f"{MEASURED_LABEL}={cpu}"]) == 0
    table = capsys.readouterr().out.strip()
    assert table in GUIDE.read_text(encoding="utf-8"), "the guide's table is the tool's output for these figures"
    assert "| `03_lora` | 906 s (15 min 6 s) |" in table
    assert table.splitlines()[-1] == "| notebooks in all | 3814 s (63 min 34 s) |"

    smoke = tmp_path / "support_tickets-smoke" / "curriculum_timings.json"  # an --only run: one notebook
    smoke.parent.mkdir()
    smoke.write_text(json.dumps({"05_evaluation": 42.25}))
    assert tool.main([str(smoke), str(cpu)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| notebook | support_tickets-smoke | support_tickets-cpu |"
    assert lines[2] == "| `01_base_model` | not run | 67 s (1 min 7 s) |"
    assert "| `05_evaluation` | 42.2 s | 658 s (10 min 58 s) |" in lines


@pytest.mark.unit
@pytest.mark.parametrize("timings", [SMOKE_2_CORES, CPU_2_CORES_LATEST], ids=["smoke", "current lessons"])
def test_the_guides_table_of_ftlibs_figures_is_the_tools_output(timings, tmp_path, capsys):
    figures = tmp_path / "curriculum_timings.json"
    figures.write_text(json.dumps(timings.seconds))
    assert load_tool().main([f"{timings.label}={figures}"]) == 0
    assert capsys.readouterr().out.strip() in GUIDE.read_text(encoding="utf-8")


@pytest.mark.unit
def test_timing_tool_refuses_a_file_that_is_not_a_timings_file(tmp_path, capsys):
    tool = load_tool()
    bad = tmp_path / "curriculum_timings.json"
    for content, message in (
        ("{", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"03_lora": "x"}', "03_lora"),
    ):
        bad.write_text(content)
        with pytest.raises(ValueError, match=message):
            tool.read_timings(bad)
    assert tool.main([str(tmp_path / "missing.json")]) == 2
    assert "file not found" in capsys.readouterr().err
