"""Lesson 03's configuration table and its plain peft/transformers recipe, checked against what train() builds."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from ftlib.core.config import TrainConfig, config_rows, training_epochs, training_steps
from ftlib.engine import train
from ftlib.engine.profiles import PROFILES
from ftlib.engine.recipe import RECIPE_ARGUMENTS, plain_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.unit
def test_steps_become_epochs():
    config = PROFILES["cpu"].train_config("lora")
    assert training_epochs(config, 2112) == pytest.approx(290 * 8 / 2112)
    assert round(training_epochs(config, 2112), 2) == 1.10
    accumulated = TrainConfig(max_steps=10, batch_size=4, grad_accum=3)
    assert training_epochs(accumulated, 60) == pytest.approx(2.0)
    by_epochs = TrainConfig(max_steps=None, num_epochs=2.0, batch_size=4, grad_accum=2)
    assert training_epochs(by_epochs, 60) == 2.0
    assert training_steps(by_epochs, 60) == 16  # ceil(60 / 8) = 8 steps an epoch


@pytest.mark.unit
def test_config_rows_cover_every_field_with_an_explanation():
    config = PROFILES["cpu"].train_config("lora")
    rows = config_rows(config, 2112)
    settings = {row["setting"]: row for row in rows}
    assert {field.name for field in dataclasses.fields(TrainConfig)} <= set(settings)
    assert all(row["what it does"] for row in rows)
    assert settings["epochs"]["value"] == "1.10"
    assert settings["effective batch"]["value"] == "8"
    assert settings["LoRA scale (alpha / r)"]["value"] == "2"
    assert settings["learning_rate"]["value"] == "0.001"
    assert PROFILES["gpu"].train_config("qlora").learning_rate == 2e-4
    assert {r["setting"]: r for r in config_rows(PROFILES["gpu"].train_config("qlora"), 100)}["learning_rate"][
        "value"
    ] == "0.0002"  # not rounded to 0.000
    full = {r["setting"]: r for r in config_rows(TrainConfig(method="full"), 100)}
    assert full["lora_r"]["what it does"].startswith("not used")


@pytest.fixture(scope="module")
def built(tmp_path_factory, cpu):
    """What train() really builds: the adapters' LoraConfig and the Trainer's TrainingArguments of a tiny run."""
    from ftlib.core.tasks import SUPPORT_TICKETS
    from tests.conftest import TICKETS

    captured = {}
    fit = train.fit

    def capturing_fit(run):
        captured["args"] = run.trainer.args
        return fit(run)

    config = TrainConfig(
        lora_r=4,
        lora_alpha=12,
        lora_dropout=0.1,
        target_modules="attention",
        learning_rate=3e-3,
        max_steps=2,
        batch_size=2,
        grad_accum=2,
        warmup_steps=1,
        lr_scheduler="linear",
        weight_decay=0.01,
        eval_steps=2,
        eval_batch_size=4,
        seed=7,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "fit", capturing_fit)
        result = train.train(
            "tiny-random-llama",
            TICKETS,
            TICKETS[:2],
            tmp_path_factory.mktemp("runs") / "lora",
            config=config,
            task=SUPPORT_TICKETS,
            device=cpu,
        )
    return config, result.model.peft_config["default"], captured["args"]


@pytest.mark.unit
def test_plain_recipe_matches_what_train_builds(built, cpu, tmp_path):
    config, lora, args = built
    recipe = plain_recipe(config, tmp_path / "plain", cpu)
    for name in ("r", "lora_alpha", "lora_dropout", "target_modules", "task_type"):
        assert getattr(recipe.lora, name) == getattr(lora, name), name
    assert lora.r == 4 and lora.lora_alpha == 12 and lora.lora_dropout == 0.1
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    for name in RECIPE_ARGUMENTS:
        if name != "output_dir":
            assert getattr(recipe.args, name) == getattr(args, name), name
    assert (args.learning_rate, args.max_steps, args.per_device_train_batch_size) == (3e-3, 2, 2)
    assert (args.gradient_accumulation_steps, args.warmup_steps, args.weight_decay, args.seed) == (2, 1, 0.01, 7)
    assert args.lr_scheduler_type.value == "linear"


@pytest.mark.unit
def test_recipe_source_builds_the_same_objects(built, cpu, tmp_path):
    config, _, _ = built
    recipe = plain_recipe(config, tmp_path / "plain", cpu)
    source = recipe.source()
    setup = source.split("model = AutoModelForCausalLM")[0]  # the configs, not the model download
    namespace = {}
    exec(compile(setup, "recipe", "exec"), namespace)
    assert namespace["lora"] == recipe.lora
    for name in RECIPE_ARGUMENTS:
        if name == "num_train_epochs":  # left out: with max_steps set, Trainer ignores it
            continue
        assert getattr(namespace["args"], name) == getattr(recipe.args, name), name
    assert "get_peft_model(model, lora)" in source
    assert plain_recipe(TrainConfig(method="full"), tmp_path).lora is None
    assert "LoraConfig(" not in plain_recipe(TrainConfig(method="full"), tmp_path).source()


@pytest.mark.unit
def test_lesson_03_shows_the_recipe_the_function_writes():
    cells = json.loads((ROOT / "notebooks" / "03_lora.ipynb").read_text())["cells"]
    (cell,) = [c for c in cells if c.get("id") == "plain-recipe"]
    shown = re.search(r"```python\n(.*?)\n```", "".join(cell["source"]), re.S).group(1)
    expected = plain_recipe(PROFILES["cpu"].train_config("lora"), "runs/support_tickets-cpu/lora").source()
    assert shown == expected
