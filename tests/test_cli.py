import json
from pathlib import Path

import pytest
from conftest import TICKETS, tiny_train_args  # tests/, on pytest's path

from ftlib.core import runs
from ftlib.core.config import DATA_ORDERS, TrainConfig
from ftlib.course import cli
from ftlib.course.parser import build_parser
from ftlib.data.records import write_jsonl
from ftlib.engine import recipe, train

pytestmark = pytest.mark.unit


def test_evaluate_on_a_file_outside_the_repo(tmp_path, tickets, capsys):
    data_file = write_jsonl([{k: v for k, v in t.items() if k != "reply"} for t in tickets], tmp_path / "mine.jsonl")
    output = tmp_path / "out" / "metrics.json"
    code = cli.main(
        [
            "evaluate",
            "--run",
            "tiny-random-llama",
            "--data",
            str(data_file),
            "--output",
            str(output),
            "--max-new-tokens",
            "8",
        ]
    )
    assert code == 0
    result = json.loads(output.read_text())
    assert set(result["metrics"]) == {
        "json_valid",
        "category_accuracy",
        "urgency_accuracy",
        "labels_exact_match",
        "category_macro_f1",
        "urgency_macro_f1",
    }
    assert len(result["predictions"]) == 4
    assert "json_valid" in capsys.readouterr().out


def test_evaluate_and_generate_a_trained_run(tmp_path, tickets, task, cpu):
    run = tmp_path / "run"
    train.train(
        "tiny-random-llama",
        tickets,
        tickets,
        run,
        config=TrainConfig(max_steps=1, warmup_steps=0, eval_steps=1, batch_size=2, max_length=512),
        task=task,
        device=cpu,
    )
    data_file = write_jsonl(tickets, tmp_path / "t.jsonl")
    assert (
        cli.main(
            [
                "evaluate",
                "--run",
                str(run),
                "--data",
                str(data_file),
                "--output",
                str(tmp_path / "m.json"),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    assert "reply_rougeL" in json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert (
        cli.main(
            [
                "generate",
                "--run",
                str(run),
                "--data",
                str(data_file),
                "--output",
                str(tmp_path / "p.jsonl"),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 4
    # Again into the same file: refused without --overwrite (the file untouched), replaced with it.
    (tmp_path / "p.jsonl").write_text("mine\n")
    again = ["generate", "--run", str(run), "--data", str(data_file), "--output", str(tmp_path / "p.jsonl")]
    assert cli.main([*again, "--max-new-tokens", "4"]) == 2
    assert (tmp_path / "p.jsonl").read_text() == "mine\n"
    assert cli.main([*again, "--max-new-tokens", "4", "--overwrite"]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 4
    # A record without a category or urgency: its label metrics skip it, the others still count it.
    partial = write_jsonl(
        [tickets[0], {k: v for k, v in tickets[1].items() if k not in ("category", "urgency")}],
        tmp_path / "partial.jsonl",
    )
    assert (
        cli.main(
            [
                "evaluate",
                "--run",
                str(run),
                "--data",
                str(partial),
                "--output",
                str(tmp_path / "pm.json"),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    assert "category_accuracy" in json.loads((tmp_path / "pm.json").read_text())["metrics"]
    assert cli.main(["merge", "--run", str(run), "--output", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").exists() and (tmp_path / "merged" / "merge.json").exists()
    assert (
        cli.main(
            [
                "evaluate",
                "--run",
                str(tmp_path / "merged"),
                "--data",
                str(data_file),
                "--output",
                str(tmp_path / "merged.json"),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )


def test_merge_needs_a_run_folder(tmp_path, capsys):
    assert cli.main(["merge", "--run", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "no manifest.json there: --run must be a LoRA or QLoRA run folder" in capsys.readouterr().err


def test_bad_input_file_gives_a_located_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ticket": "ok"}\n{"ticket": \n')
    assert (
        cli.main(["evaluate", "--run", "tiny-random-llama", "--data", str(bad), "--output", str(tmp_path / "m.json")])
        == 2
    )
    assert f"{bad}, line 2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_missing_input_field_is_reported_before_loading_a_model(tmp_path, capsys):
    data_file = write_jsonl([{"text": "hello"}], tmp_path / "x.jsonl")
    assert (
        cli.main(["evaluate", "--run", "no-such-model", "--data", str(data_file), "--output", str(tmp_path / "m")]) == 2
    )
    assert "line 1, field 'ticket': missing field" in capsys.readouterr().err


def train_command(tmp_path, *extra: str) -> list[str]:
    """``train`` on the tiny model with files of the conftest tickets; ``extra`` adds or overrides flags."""
    data = write_jsonl(TICKETS * 2, tmp_path / "train.jsonl")
    val = write_jsonl(TICKETS, tmp_path / "val.jsonl")
    return [*tiny_train_args(data, val, tmp_path / "run", max_length=512, eval_steps=2, eval_batch_size=4), *extra]


def test_train_command_writes_a_run_and_prints_a_summary(tmp_path, capsys):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"lora_r": 4, "max_steps": 3, "batch_size": 4, "data_order": "random"}))
    code = cli.main(train_command(tmp_path, "--config", str(config_file), "--max-steps", "2", "--no-save-checkpoints"))
    assert code == 0
    record = runs.load_run(tmp_path / "run")
    assert record.config.lora_r == 4  # from the file
    assert record.config.max_steps == 2  # the flag wins over the file
    assert record.config.data_order == "random"
    assert record.config.save_checkpoints is False
    assert record.world_size == 1 and record.global_batch_size == 4
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())["train"]) == 2
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    out = capsys.readouterr().out
    assert f"final val loss     {record.metrics.final_val_loss:.4f}" in out
    assert "train tokens/s" in out and "peak memory" in out and str(tmp_path / "run") in out

    # A run's manifest works as --config: the same hyperparameters again.
    assert cli.main(train_command(tmp_path / "again", "--config", str(tmp_path / "run" / "manifest.json"))) == 0
    assert runs.load_run(tmp_path / "again" / "run").config == record.config


def test_every_train_config_field_has_a_flag():
    from dataclasses import fields

    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {option for action in train_parser._actions for option in action.option_strings}
    for spec in fields(TrainConfig):
        assert "--" + spec.name.replace("_", "-") in flags, spec.name
    args = train_parser.parse_args(
        [
            "--data",
            "d",
            "--val",
            "v",
            "--output",
            "o",
            "--max-steps",
            "none",
            "--num-epochs",
            "2",
            "--gradient-checkpointing",
        ]
    )
    assert args.max_steps is None and args.num_epochs == 2.0 and args.gradient_checkpointing is True
    assert not hasattr(args, "lora_r")  # flags left out leave the file's or the dataclass's value


@pytest.mark.parametrize("order", list(DATA_ORDERS))
def test_data_order_sets_trainer_sampling(tmp_path, cpu, order):
    config = TrainConfig(data_order=order)
    config.validate()
    arguments = recipe.training_arguments(config, tmp_path, cpu)
    assert arguments.train_sampling_strategy == DATA_ORDERS[order]


@pytest.mark.parametrize(
    "problem, message",
    [
        ("bad-json", "train.jsonl, line 3: not valid JSON"),
        ("missing-field", "val.jsonl, line 2, field 'urgency': missing field"),
        ("config-key", "config.json, field 'rank': not a TrainConfig field"),
        ("config-type", "config.json, field 'batch_size': expected int, got \"8\""),
        ("config-value", "data_order must be one of length-grouped, random, sequential, not 'shuffled'"),
        ("flag-value", "lora_r must be >= 1, got 0"),
    ],
)
def test_train_rejects_bad_input_before_loading_a_model(tmp_path, capsys, problem, message):
    command = train_command(tmp_path)
    command[command.index("--base-model") + 1] = "no-such-model"  # reaching the model would fail differently
    if problem == "bad-json":
        lines = (tmp_path / "train.jsonl").read_text().splitlines()
        (tmp_path / "train.jsonl").write_text("\n".join(lines[:2] + ['{"ticket": ']) + "\n")
    elif problem == "missing-field":
        records = [json.loads(line) for line in (tmp_path / "val.jsonl").read_text().splitlines()]
        del records[1]["urgency"]
        write_jsonl(records, tmp_path / "val.jsonl")
    elif problem.startswith("config"):
        values = {
            "config-key": {"rank": 8},
            "config-type": {"batch_size": "8"},
            "config-value": {"data_order": "shuffled"},
        }[problem]
        (tmp_path / "config.json").write_text(json.dumps(values))
        command += ["--config", str(tmp_path / "config.json")]
    else:
        command += ["--lora-r", "0"]
    assert cli.main(command) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_flag_of_the_wrong_type_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(train_command(tmp_path, "--batch-size", "eight"))
    assert exit_info.value.code == 2
    assert "argument --batch-size: expected int, got 'eight'" in capsys.readouterr().err


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model or tokenizer load fails the test: the errors below must come first."""
    from ftlib.engine import adapters, models

    def refuse(*args, **kwargs):
        pytest.fail("a model or tokenizer was loaded")

    for module, name in (
        (models, "load_model"),
        (models, "load_tokenizer"),
        (train, "load_model"),
        (train, "load_tokenizer"),
        (adapters, "load_model"),
    ):
        monkeypatch.setattr(module, name, refuse)


def with_weather(path):
    """Rewrite a JSONL file of tickets with the third record's category outside the schema."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[2]["category"] = "weather"
    write_jsonl(records, path)


def test_train_refuses_an_out_of_schema_label(tmp_path, capsys, no_model_loads):
    command = train_command(tmp_path)
    with_weather(tmp_path / "train.jsonl")
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'train.jsonl'}, line 3, field 'category': 'weather' is not one of billing" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_train_drops_out_of_schema_labels_when_asked(tmp_path, capsys):
    command = train_command(tmp_path, "--max-steps", "1", "--batch-size", "4", "--drop-invalid-labels")
    with_weather(tmp_path / "train.jsonl")
    assert cli.main(command) == 0
    assert "train.jsonl: dropped 1 of 8 record(s) with a label outside the support_tickets label sets" in (
        capsys.readouterr().out
    )
    assert runs.load_run(tmp_path / "run").data.train_examples == 7


def test_evaluate_refuses_an_out_of_schema_label(tmp_path, tickets, capsys, no_model_loads):
    data_file = write_jsonl(tickets, tmp_path / "t.jsonl")
    with_weather(data_file)
    assert (
        cli.main(
            ["evaluate", "--run", "tiny-random-llama", "--data", str(data_file), "--output", str(tmp_path / "m.json")]
        )
        == 2
    )
    assert "t.jsonl, line 3, field 'category': 'weather' is not one of" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "generate", "merge"])
@pytest.mark.parametrize("run", ["runs/nothing", "./nothing", "nobody/no-such-model"])
def test_a_missing_run_is_one_line_before_any_model_loads(
    tmp_path, tickets, capsys, monkeypatch, no_model_loads, command, run
):
    from ftlib.core import runtime

    monkeypatch.chdir(tmp_path)

    def offline_hub(*args, **kwargs):
        if run != "nobody/no-such-model":
            pytest.fail(f"asked the hub about the path {run}")
        return False

    monkeypatch.setattr(runtime, "hub_reachable", offline_hub)
    data_file = write_jsonl(tickets, tmp_path / "t.jsonl")
    args = ["--run", run, "--output", str(tmp_path / "out")]
    assert cli.main([command, *args] + ([] if command == "merge" else ["--data", str(data_file)])) == 2
    err = capsys.readouterr().err
    expected = (
        f"no run folder named {Path(run)}" if command == "merge" else f"no run folder or registry model named {run}"
    )
    assert err == f"error: {expected}\n"


def test_a_run_folder_of_an_unknown_version_is_refused_before_loading(tmp_path, tickets, capsys, no_model_loads):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"version": 9, "base_model": "x"}))
    data_file = write_jsonl(tickets, tmp_path / "t.jsonl")
    assert (
        cli.main(
            ["evaluate", "--run", str(tmp_path / "run"), "--data", str(data_file), "--output", str(tmp_path / "m.json")]
        )
        == 2
    )
    assert f"{tmp_path / 'run' / 'manifest.json'}: manifest version 9 is not one this ftlib reads" in (
        capsys.readouterr().err
    )


SENTIMENT_SPEC = """\
name: sentiment
input_field: review
answer_fields: [sentiment, summary]
labels:
  sentiment: [positive, negative]
instruction: Classify the review and summarise it.
stratify_field: sentiment
"""
REVIEWS = [
    {"id": "1", "review": "loved it, works great", "sentiment": "positive", "summary": "Works great."},
    {"id": "2", "review": "broke after a day", "sentiment": "negative", "summary": "It broke."},
    {"id": "3", "review": "arrived cracked", "sentiment": "negative", "summary": "Arrived cracked."},
]


def test_evaluate_takes_a_task_spec_file(tmp_path):
    """A task from a file: the metrics follow its fields (labels: accuracy and macro-F1, text: ROUGE-L)."""
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(SENTIMENT_SPEC)
    data_file = write_jsonl(REVIEWS, tmp_path / "reviews.jsonl")
    output = tmp_path / "metrics.json"
    command = ["evaluate", "--run", "tiny-random-llama", "--data", str(data_file), "--output", str(output)]
    assert cli.main([*command, "--task", str(spec), "--max-new-tokens", "4"]) == 0
    metrics = json.loads(output.read_text())["metrics"]
    assert set(metrics) == {"json_valid", "sentiment_accuracy", "sentiment_macro_f1", "summary_rougeL"}


@pytest.mark.parametrize("command", ["train", "evaluate", "curriculum"])
def test_a_bad_task_spec_is_one_error_before_any_work(tmp_path, capsys, no_model_loads, monkeypatch, command):
    from ftlib.course import curriculum

    monkeypatch.setattr(curriculum, "run_notebook", lambda *args: pytest.fail("a notebook ran"))
    spec = tmp_path / "bad.yaml"
    spec.write_text(SENTIMENT_SPEC.replace("stratify_field: sentiment", "stratify_field: summary\ncolour: red"))
    args = {
        "train": train_command(tmp_path, "--task", str(spec)),
        "evaluate": ["evaluate", "--run", "tiny-random-llama", "--data", "x.jsonl", "--output", "m.json"],
        "curriculum": ["curriculum", "--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--task", str(spec)],
    }[command]
    if command == "evaluate":
        args += ["--task", str(spec)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"task spec {spec}: 2 problem(s):" in err  # with evaluate's missing x.jsonl: every problem at once
    assert "  - colour: unknown key" in err and "  - stratify_field: 'summary' is not a label field" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("problem", ["typo in --only", "malformed data line", "missing data file"])
def test_curriculum_checks_its_notebooks_and_data_before_the_run_folder(tmp_path, capsys, monkeypatch, problem):
    from ftlib.course import curriculum

    monkeypatch.setattr(curriculum, "run_notebook", lambda *args: pytest.fail("a notebook ran"))
    spec, data = tmp_path / "sentiment.yaml", tmp_path / "reviews.jsonl"
    spec.write_text(SENTIMENT_SPEC + "data: reviews.jsonl\n")
    write_jsonl(REVIEWS, data)
    command = ["curriculum", "--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--task", str(spec)]
    if problem == "typo in --only":
        command += ["--only", "03_lroa"]
    elif problem == "malformed data line":
        data.write_text(data.read_text() + '{"review": "cut off\n')
    else:
        data.unlink()
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    expected = {
        "typo in --only": "03_lroa.ipynb (the lessons: 01_base_model, 02_data_curation, 03_lora",
        "malformed data line": f"{data}, line {len(REVIEWS) + 1}",
        "missing data file": f"data: no such file {data}",
    }[problem]
    assert expected in err, err
    assert not (tmp_path / "run").exists()


def test_train_checks_labels_against_the_spec(tmp_path, capsys, no_model_loads):
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(SENTIMENT_SPEC)
    write_jsonl(REVIEWS, tmp_path / "val.jsonl")
    write_jsonl([*REVIEWS, dict(REVIEWS[0], sentiment="meh")], tmp_path / "train.jsonl")
    command = ["train", "--task", str(spec), "--data", str(tmp_path / "train.jsonl"), "--val"]
    command += [str(tmp_path / "val.jsonl"), "--output", str(tmp_path / "run")]
    assert cli.main(command) == 2
    assert "train.jsonl, line 4, field 'sentiment': 'meh' is not one of positive, negative" in capsys.readouterr().err


def test_unknown_task_name_lists_the_known_ones(tmp_path, capsys):
    assert cli.main(["curriculum", "--dataset", "tickets", "--run-dir", str(tmp_path / "run")]) == 2
    assert "Unknown dataset/task 'tickets'. Known: support_tickets, listings" in capsys.readouterr().err


def test_make_samples_replaces_an_edited_file_only_with_overwrite(tmp_path, capsys, monkeypatch):
    from ftlib.data import samples

    def small_samples(folder, seed):  # the real generators take seconds; the command's logic is what is tested
        return [write_jsonl([{"ticket": f"seed {seed}"}], Path(folder) / "support_tickets.jsonl")]

    monkeypatch.setattr(samples, "write_samples", small_samples)
    out = tmp_path / "samples"
    assert cli.main(["make-samples", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["make-samples", "--out", str(out)]) == 0  # the same seed: nothing to write
    assert "unchanged" in capsys.readouterr().out
    edited = out / "support_tickets.jsonl"
    edited.write_text('{"ticket": "my own"}\n')
    assert cli.main(["make-samples", "--out", str(out)]) == 2
    assert f"--out {edited}: exists; pass --overwrite" in capsys.readouterr().err
    assert edited.read_text() == '{"ticket": "my own"}\n'
    assert cli.main(["make-samples", "--out", str(out), "--overwrite"]) == 0
    assert edited.read_text() == '{"ticket": "seed 1234"}\n'
