"""The curriculum on a dataset the code does not know, from a spec file alone: multi-turn chats (smoke profile).

A file of its own so that, under ``make test``'s two workers, this run goes beside the other long groups rather than
after the smoke run on listings (tests/conftest.py's ``test_group``).
"""

import json
from pathlib import Path

import pytest
from conftest import NOTEBOOK_PATHS as PATHS  # tests/, on pytest's path
from conftest import run_curriculum

from ftlib.course.curriculum import NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent
CHAT_LESSONS = (0, 1, 2, 4)  # the chat run's lessons (01, 02, 03 and 05): see chat_run


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """The curriculum on a dataset the code does not know, from a spec file alone: multi-turn chats.

    The spec and its data are copied to a user's folder under new names, so nothing but the spec file
    (passed as the ``dataset`` parameter) tells the notebooks what the data are.
    """
    import yaml

    user = tmp_path_factory.mktemp("user")
    spec = yaml.safe_load((ROOT / "data" / "tasks" / "shop_chats.yaml").read_text())
    (user / "chats.jsonl").write_bytes((ROOT / "data" / "samples" / "shop_chats.jsonl").read_bytes())
    (user / "my_chats.yaml").write_text(yaml.safe_dump(spec | {"name": "my_chats", "data": "chats.jsonl"}))
    run_dir = user / "runs"
    run_dir.mkdir()
    # Within the 20-minute test budget: the lessons whose data handling differs for chats. 04 (QLoRA) reads the
    # data as 03 does, and 06 runs on tickets (nbval) and listings (conftest.py's smoke_run); both were run on
    # chats by hand (2026-11-29). Lesson 05 then scores the runs it finds: the bases and LoRA.
    return run_dir, run_curriculum(run_dir, str(user / "my_chats.yaml"), [PATHS[i] for i in CHAT_LESSONS])


@pytest.mark.integration
@pytest.mark.parametrize("name", [NOTEBOOKS[i] for i in CHAT_LESSONS])
def test_notebook_runs_on_chats_from_a_spec_file_alone(chat_run, name):
    run_dir, outcomes = chat_run
    if outcomes[name] is not None:
        raise outcomes[name]
    if name == "05_evaluation":
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
        assert set(metrics) == {"base (zero-shot)", "base (few-shot)", "LoRA"}  # 04 did not run here
        for result in metrics.values():
            assert set(result["metrics"]) == {"reply_rougeL"}  # the spec's one text answer, no labels
            assert result["predictions"][0]["reference"].keys() == {"reply"}
        report = json.loads((run_dir / "data" / "curation_report.json").read_text())
        assert report["raw_file"].endswith("chats.jsonl") and report["leakage"] == []
        assert set(report["splits"]["train"]["topic"]) >= {"returns", "payment"}
