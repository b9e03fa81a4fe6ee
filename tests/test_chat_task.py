"""Chat tasks: a spec with ``input_format: messages`` (multi-turn chats), from masking to curation and scoring."""

import copy
import re

import pytest

from ftlib.core.tasks import BUILTIN_SPECS, TaskSpecError, load_task_spec
from ftlib.data import batches, curate
from ftlib.data import records as data
from ftlib.data.batches import IGNORE_INDEX
from ftlib.data.records import DataError
from ftlib.measure import evaluate

pytestmark = pytest.mark.unit

CHAT = {
    "id": "c1",
    "topic": "returns",
    "messages": [
        {"role": "user", "content": "Hi, I want to return the blue kettle from order #48213."},
        {"role": "assistant", "content": "Of course. Is it unused and in its box?"},
        {"role": "user", "content": "yes, never opened"},
        {"role": "assistant", "content": "Great: I have emailed you a free return label for order #48213."},
        {"role": "user", "content": "and when do I get my money back?"},
        {"role": "assistant", "content": "Your refund reaches your card 5-7 working days after the kettle arrives."},
    ],
}


@pytest.fixture
def chat_task():
    return load_task_spec(BUILTIN_SPECS / "shop_chats.yaml")


def chat(**changes) -> dict:
    return {**CHAT, "messages": [dict(m) for m in CHAT["messages"]], **changes}


def test_the_chat_spec_loads_as_a_text_answer_task(chat_task):
    assert chat_task.input_is_chat and chat_task.input_format == "messages"
    assert chat_task.answer_format == "text" and chat_task.headline_metrics == ["reply_rougeL"]
    assert chat_task.stratum(CHAT) == "returns"
    assert chat_task.answers(CHAT) == {"reply": CHAT["messages"][-1]["content"]}


def test_three_turn_labels_decode_to_each_assistant_turn_with_its_eos(tiny, chat_task):
    """Everything but the assistant turns is masked; each assistant turn ends with a learned EOS."""
    _, tokenizer = tiny
    messages = chat_task.to_messages(CHAT)
    assert messages[0] == {"role": "system", "content": chat_task.instruction}
    example = batches.tokenize_example(tokenizer, messages, max_length=4096)
    assert tokenizer.decode(example.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
    spans, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
                current = []
        else:
            assert label == token
            current.append(label)
    spans.append(current)
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    assert [tokenizer.decode(span) for span in spans] == [text + tokenizer.eos_token for text in assistant]
    assert all(span[-1] == tokenizer.eos_token_id for span in spans)
    for turn in (m["content"] for m in messages if m["role"] != "assistant"):  # no user or system text is learned
        assert all(turn not in tokenizer.decode(span) for span in spans)


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny, chat_task):
    _, tokenizer = tiny
    rewriting = copy.deepcopy(tokenizer)
    # Like templates that drop earlier turns' reasoning: the last assistant turn alone is rendered in full.
    rewriting.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}<|im_start|>assistant\n"
        "...<|im_end|>\n{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ValueError, match="renders turns 0-3 differently once turn 4 follows"):
        batches.tokenize_example(rewriting, chat_task.to_messages(CHAT), max_length=4096)


def test_the_prompt_is_every_turn_before_the_answer(chat_task):
    prompt = chat_task.prompt_messages(CHAT)
    assert prompt[0]["role"] == "system" and prompt[1:] == CHAT["messages"][:-1]
    own_system = chat(messages=[{"role": "system", "content": "Be brief."}, *CHAT["messages"]])
    assert chat_task.prompt_messages(own_system)[0] == {"role": "system", "content": "Be brief."}
    assert chat_task.to_messages(own_system) == own_system["messages"]
    waiting = chat(messages=CHAT["messages"][:-1])  # a new chat, waiting for the agent: nothing is cut
    assert chat_task.prompt_messages(waiting)[1:] == CHAT["messages"][:-1]
    assert chat_task.input_text(waiting) == chat_task.input_text(CHAT)
    shots = chat_task.prompt_messages(CHAT, examples=[CHAT])
    assert shots[1 : 1 + len(CHAT["messages"])] == CHAT["messages"]  # a few-shot example is a whole chat
    assert "assistant: Great" in chat_task.input_text(CHAT) and "5-7 working days" not in chat_task.input_text(CHAT)


@pytest.mark.parametrize(
    ("messages", "field", "problem"),
    [
        ("hello", "messages", "expected a non-empty list"),
        ([{"role": "user", "content": "hi there"}], "messages[0].role", "the last turn must be the assistant"),
        ([{"role": "customer", "content": "x"}, {"role": "assistant", "content": "y"}], "messages[0].role", "not one"),
        ([{"role": "user"}, {"role": "assistant", "content": "y"}], "messages[0].content", "missing"),
        ([{"role": "assistant", "content": "y"}], "messages", "no user turn"),
    ],
)
def test_bad_chats_name_the_line_and_the_turn(chat_task, messages, field, problem):
    with pytest.raises(DataError, match=rf"chats.jsonl, line 4, field .{re.escape(field)}.*{problem}"):
        data.to_messages(chat(messages=messages), chat_task, source="chats.jsonl", line=4)


def test_chat_spec_problems_are_listed_by_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ninput_field: messages\ninput_format: messages\nanswer_fields: [reply, topic]\n"
        "answer_format: json\nlabels: {topic: [a, b]}\ninstruction: x\nstratify_field: topic\n"
    )
    with pytest.raises(TaskSpecError) as error:
        load_task_spec(path)
    text = str(error.value)
    assert "answer_format: a messages input is answered by its last assistant turn" in text
    assert "labels: a messages input has no label fields" in text
    good = tmp_path / "good.yaml"
    good.write_text(
        "name: good\ninput_field: messages\ninput_format: messages\nanswer_fields: [reply]\ninstruction: x\n"
    )
    assert load_task_spec(good).answer_format == "text"  # text is the default for chats


def test_curation_reads_every_turn_of_a_chat(chat_task):
    sharegpt = {
        "id": "c2",
        "topic": "payment",
        "conversations": [
            {"from": "human", "value": "I was charged twice for order #51120, my card is 4111 1111 1111 1111."},
            {"from": "gpt", "value": "Sorry about that. <b>Which</b> date were you charged?"},
            {"from": "human", "value": "on the 3rd"},
            {"from": "gpt", "value": "I have refunded the second charge for order #51120."},
        ],
    }
    junk = chat(id="c3", messages=[*CHAT["messages"][:4], {"role": "user", "content": "asdf"}, CHAT["messages"][5]])
    spanish = chat(
        id="c4",
        messages=[
            {"role": "user", "content": "Hola, quiero devolver el pedido porque está roto desde ayer."},
            {"role": "assistant", "content": "Sorry to hear that."},
        ],
    )
    duplicate = chat(id="c5")
    result = curate.curate([CHAT, sharegpt, junk, spanish, duplicate], chat_task)
    kept = {r["id"]: r for r in result.records}
    assert set(kept) == {"c1", "c2"}
    steps = {o.id: o.step for o in result.outcomes}
    assert steps == {"c1": None, "c2": None, "c3": "quality", "c4": "language", "c5": "exact_duplicates"}
    turns = kept["c2"]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert "4111" not in turns[0]["content"] and "<b>" not in turns[1]["content"]
    assert "conversations" not in kept["c2"]
    assert {o.id: o.changes for o in result.outcomes}["c2"] == ["layout", "markup", "pii"]
    assert "messages[4].content" in next(o.reason for o in result.outcomes if o.id == "c3")


def test_a_chat_is_scored_on_its_last_assistant_turn(chat_task):
    reference = CHAT["messages"][-1]["content"]
    assert evaluate.per_example_scores(reference, CHAT, chat_task)["reply_rougeL"] == pytest.approx(1.0)
    assert evaluate.per_example_scores("No idea.", CHAT, chat_task)["reply_rougeL"] < 0.2
    few_shot = evaluate.few_shot_examples([CHAT, chat(id="x", topic="payment")], chat_task, k=2)
    assert {r["id"] for r in few_shot} == {"c1", "x"}


def test_generate_and_evaluate_check_every_chat_before_a_model_loads(tmp_path, monkeypatch, capsys):
    import json

    from ftlib.course import cli
    from ftlib.engine import adapters

    monkeypatch.setattr(adapters, "load_for_eval", lambda *a, **k: pytest.fail("a model loaded before the data check"))
    data = tmp_path / "new.jsonl"
    waiting = {"id": "w", "messages": [{"role": "user", "content": "where is order #1?"}]}
    bad = {"id": "b", "messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}
    data.write_text("\n".join(json.dumps(r) for r in (waiting, bad)) + "\n")
    for command in ("generate", "evaluate"):
        code = cli.main([command, "--task", "shop_chats", "--run", str(tmp_path), "--data", str(data),
                         "--output", str(tmp_path / "out.json")])  # fmt: skip
        assert code == 2
        assert "new.jsonl, line 2, field 'messages[1].role': 'bot' is not one of" in capsys.readouterr().err
