"""ftlib's generation on the real embedded model answers exactly as plain ``model.generate`` does.

``ftlib.engine.inference.generate_tokens`` runs the shared prompt prefix once and batches prompts of similar length,
left-padded; neither may change a greedy answer. The tiny-model tests in test_evaluate.py check the mechanics; this
one checks the real model, on hand-written tickets, zero- and few-shot, against one prompt at a time.
"""

import random

import pytest
import torch

from ftlib.core.config import Decoding
from ftlib.core.tasks import SUPPORT_TICKETS
from ftlib.data.batches import prompt_text
from ftlib.data.records import read_jsonl
from ftlib.data.samples import generate_clean_tickets
from ftlib.engine import inference
from ftlib.engine.models import DEFAULT_MODEL, load_model
from ftlib.engine.profiles import field_test_path
from ftlib.measure.evaluate import few_shot_examples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm(cpu):
    return load_model(DEFAULT_MODEL, device=cpu)


@pytest.mark.parametrize("shots", [0, 3])
def test_answers_on_the_real_model_match_plain_generate_one_by_one(smollm, shots):
    model, tokenizer = smollm
    # Three tickets where one answer ends at its EOS before the others reach the limit (ticket 12 zero-shot after
    # 25 tokens, ticket 8 few-shot after 41), so a row leaves the batch early (greedy_decode).
    first, limit = (7, 44) if shots else (10, 28)
    tickets = read_jsonl(field_test_path("support_tickets"))[first : first + 3]
    examples = (
        few_shot_examples(generate_clean_tickets(40, random.Random(0)), SUPPORT_TICKETS, k=shots) if shots else ()
    )
    conversations = [SUPPORT_TICKETS.prompt_messages(t, examples) for t in tickets]
    ours = inference.generate_tokens(model, tokenizer, conversations, Decoding(batch_size=3, max_new_tokens=limit))
    assert len({len(answer) for answer in ours}) > 1 and min(len(answer) for answer in ours) < limit
    with torch.no_grad():
        for conversation, answer in zip(conversations, ours):
            ids = tokenizer(prompt_text(tokenizer, conversation), add_special_tokens=False, return_tensors="pt")
            output = model.generate(
                **ids,
                max_new_tokens=limit,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            plain = inference.answer_ids(output[0, ids["input_ids"].shape[1] :].tolist(), tokenizer.eos_token_id)
            assert answer == plain, tokenizer.decode(answer) + " != " + tokenizer.decode(plain)


def test_json_answers_on_the_real_model_stop_once_they_cannot_parse(smollm):
    """The base model answers these tickets zero-shot in prose (invalid JSON, run to the limit): scored as JSON,
    each answer stops 4 tokens after its first word, and what is kept is the beginning of the full answer."""
    model, tokenizer = smollm
    tickets = read_jsonl(field_test_path("support_tickets"))[:3]
    conversations = [SUPPORT_TICKETS.prompt_messages(t) for t in tickets]
    decoding = Decoding(batch_size=3, max_new_tokens=24, invalid_tail_tokens=4)
    full = inference.generate_tokens(model, tokenizer, conversations, decoding)
    cut = inference.generate_tokens(model, tokenizer, conversations, decoding, json_answers=True)
    for short, whole in zip(cut, full):
        assert len(whole) == 24 and short == whole[: len(short)] and len(short) <= 6
        assert inference.decode_answer(tokenizer, whole)[:1] not in "{ "  # prose: invalid from its first letter
