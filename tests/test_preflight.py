"""ftlib.course.preflight: the checks every command makes before anything loads (the CLI table is
tests/test_bad_input.py; these are the pieces, in process)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from ftlib.core.tasks import SUPPORT_TICKETS
from ftlib.course import preflight
from ftlib.data.batches import prompt_text
from ftlib.data.records import Records
from ftlib.engine.models import load_tokenizer

pytestmark = pytest.mark.unit


def test_one_problem_is_one_line_and_several_are_listed():
    assert preflight.PreflightError(["a: b"]).report() == "error: a: b"
    report = preflight.PreflightError(["a: b", "spec: 2 problem(s):\n  - x"]).report()
    assert report == "error: 2 problems (nothing was loaded or written):\n  - a: b\n  - spec: 2 problem(s):\n      - x"


def test_safetensors_header_is_read_without_loading(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((64, 64), dtype=np.float32)}, str(path))
    assert preflight.safetensors_problem(path) is None
    path.write_bytes(path.read_bytes()[:1000])
    assert "damaged or cut short" in preflight.safetensors_problem(path)
    assert preflight.safetensors_problem(tmp_path / "none.safetensors") == "missing"


def long_records(tmp_path) -> Records:
    short = {"id": "s", "ticket": "router down"}
    long = {"id": "l", "ticket": "my router blinks red and " * 40}  # 1,000 bytes: over the tiny model's 512
    return Records([short, long], lines=[1, 3], source=str(tmp_path / "t.jsonl"))


def test_a_prompt_over_the_context_is_refused_by_line_and_field(tmp_path):
    checks = preflight.Preflight()
    records = long_records(tmp_path)
    assert preflight.fit_context(checks, records, SUPPORT_TICKETS, "tiny-random-llama", "auto", 96, False) is records
    assert len(checks.problems) == 1
    assert checks.problems[0].startswith(f"{tmp_path / 't.jsonl'}, line 3, field 'ticket': the prompt is ")
    assert "the model's context of 512 leaves 416 beside --max-new-tokens 96" in checks.problems[0]


def test_truncate_cuts_only_the_long_input_to_fit(tmp_path, capsys):
    checks = preflight.Preflight()
    records = long_records(tmp_path)
    fitted = preflight.fit_context(checks, records, SUPPORT_TICKETS, "tiny-random-llama", "auto", 96, True)
    assert checks.ok and fitted[0] == records[0] and fitted.lines == [1, 3] and fitted.source == records.source
    tokenizer = load_tokenizer("tiny-random-llama")
    length = len(tokenizer(prompt_text(tokenizer, SUPPORT_TICKETS.prompt_messages(fitted[1])))["input_ids"])
    assert 400 < length <= 416  # cut to fit, not far below
    assert records[1]["ticket"].startswith(fitted[1]["ticket"])  # cut from the end; the caller's record unchanged
    assert "cut 1 input(s) from the end to fit the model's context of 512 tokens" in capsys.readouterr().out
