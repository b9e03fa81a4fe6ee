import json

import pytest

from ftlib import cli, train
from ftlib.data import write_jsonl

pytestmark = pytest.mark.unit


def test_evaluate_on_a_file_outside_the_repo(tmp_path, tickets, capsys):
    data_file = write_jsonl([{k: v for k, v in t.items() if k != "reply"} for t in tickets], tmp_path / "mine.jsonl")
    output = tmp_path / "out" / "metrics.json"
    code = cli.main(["evaluate", "--run", "tiny-random-llama", "--data", str(data_file), "--output", str(output),
                     "--max-new-tokens", "8"])
    assert code == 0
    result = json.loads(output.read_text())
    assert set(result["metrics"]) == {"json_valid", "category_accuracy", "urgency_accuracy", "labels_exact_match",
                                      "category_macro_f1", "urgency_macro_f1"}
    assert len(result["predictions"]) == 4
    assert "json_valid" in capsys.readouterr().out


def test_evaluate_and_generate_a_trained_run(tmp_path, tickets, task, cpu):
    run = tmp_path / "run"
    train.train("tiny-random-llama", tickets, tickets, run,
                train.TrainConfig(max_steps=1, warmup_steps=0, eval_steps=1, batch_size=2, max_length=512), task, cpu)
    data_file = write_jsonl(tickets, tmp_path / "t.jsonl")
    assert cli.main(["evaluate", "--run", str(run), "--data", str(data_file), "--output", str(tmp_path / "m.json"),
                     "--max-new-tokens", "4"]) == 0
    assert "reply_rougeL" in json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert cli.main(["generate", "--run", str(run), "--data", str(data_file), "--output", str(tmp_path / "p.jsonl"),
                     "--max-new-tokens", "4"]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 4


def test_bad_input_file_gives_a_located_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ticket": "ok"}\n{"ticket": \n')
    assert cli.main(["evaluate", "--run", "tiny-random-llama", "--data", str(bad), "--output", str(tmp_path / "m.json")]) == 2
    assert f"{bad}, line 2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_missing_input_field_is_reported_before_loading_a_model(tmp_path, capsys):
    data_file = write_jsonl([{"text": "hello"}], tmp_path / "x.jsonl")
    assert cli.main(["evaluate", "--run", "no-such-model", "--data", str(data_file), "--output", str(tmp_path / "m")]) == 2
    assert "line 1, field 'ticket': missing field" in capsys.readouterr().err
