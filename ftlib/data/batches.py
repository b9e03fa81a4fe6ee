"""Records as training batches: a prompt and answer tokenized with the answer alone scored (labels), the dataset and
padding collator, and the forward pass that runs a batch's shared prompt prefix once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ftlib.core.tasks import Task
from ftlib.data.records import numbered, to_messages

IGNORE_INDEX = -100


def prompt_text(tokenizer, messages: list[dict]) -> str:
    """The chat-template rendering of every message but the answer, ending with the assistant cue."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def token_lengths(records: list[dict], tokenizer, task: Task | None = None) -> list[int]:
    """Untruncated token count (prompt + answer + EOS) of each record, with the real chat template."""
    return [len(tokenize_example(tokenizer, to_messages(r, task), max_length=10**9).input_ids) for r in records]


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    weights: list[float] | None = None  # per-token loss weights (0 where the label is -100); None: all 1


def _answer_tokens(tokenizer, answer: str, spans: list[tuple[int, int]], weight: float):
    """The answer's token ids, and their loss weights: ``weight`` for a token overlapping a span, else 1.

    Uses the fast tokenizer's character offsets; with no spans no offsets are asked for (weights None).
    """
    if not spans:
        return tokenizer(answer, add_special_tokens=False)["input_ids"], None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("label_token_weight needs a fast tokenizer: its character offsets find the label tokens")
    encoded = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    weights = [
        weight if any(start < span_end and end > span_start for span_start, span_end in spans) else 1.0
        for start, end in encoded["offset_mapping"]
    ]
    return encoded["input_ids"], weights


def tokenize_example(
    tokenizer,
    messages: list[dict],
    max_length: int,
    task: Task | None = None,
    label_token_weight: float = 1.0,
) -> TokenizedExample:
    """Tokenize one chat example with completion-only labels: every assistant turn is learned, nothing else.

    Each assistant turn's prompt (everything before it) is tokenized exactly as it will be at generation
    time, and its tokens get the label -100 (ignored by the loss). The turn's tokens and the EOS token that
    closes it keep their ids as labels: a model that never sees EOS as a target never learns to stop, a
    classic failure when pad == eos and padding is masked by token id. In a multi-turn chat the text between
    two assistant turns (the template's line break, the next user turn, the next assistant cue) is masked.

    With ``label_token_weight`` != 1 (and a ``task`` with label fields), ``weights`` gives every label token a
    loss weight: ``label_token_weight`` for the tokens overlapping a closed-label value of a JSON answer
    (``Task.label_value_spans``: the ``billing`` and ``high`` of ``{"category":"billing","urgency":"high",...}``),
    1 for the other answer tokens and the EOS, 0 where the label is -100. At 1 ``weights`` is None.

    Raises:
        ValueError: the chat template renders an earlier turn differently once later turns follow (so no
            single token sequence holds every turn as it is generated).
    """
    weighted = label_token_weight != 1 and task is not None and bool(task.label_fields)
    input_ids: list[int] = []
    labels: list[int] = []
    weights: list[float] = []
    rendered = ""  # the text tokenized so far
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = prompt_text(tokenizer, messages[:index])
        if not prompt.startswith(rendered):
            raise ValueError(
                f"the chat template renders turns 0-{index - 1} differently once turn {index} follows: "
                "completion-only labels for every assistant turn need a template that only appends"
            )
        context = tokenizer(prompt[len(rendered) :], add_special_tokens=False)["input_ids"]
        spans = task.label_value_spans(message["content"]) if weighted else []
        answer, answer_weights = _answer_tokens(tokenizer, message["content"], spans, label_token_weight)
        answer = answer + [tokenizer.eos_token_id]
        input_ids += context + answer
        labels += [IGNORE_INDEX] * len(context) + answer
        weights += [0.0] * len(context) + (answer_weights or [1.0] * (len(answer) - 1)) + [1.0]
        rendered = prompt + message["content"] + tokenizer.eos_token
    truncated = len(input_ids) > max_length
    return TokenizedExample(
        input_ids[:max_length], labels[:max_length], truncated, weights[:max_length] if weighted else None
    )


class SupervisedDataset(torch.utils.data.Dataset):
    """Tokenized examples, ready for ``transformers.Trainer``.

    With ``label_token_weight`` != 1 every example also holds ``label_weights`` (see ``tokenize_example``),
    which ``PaddingCollator`` pads and ``ftlib.engine.trainer.answer_only_loss`` weighs the token losses with.
    """

    def __init__(
        self,
        records: list[dict],
        tokenizer,
        max_length: int = 256,
        task: Task | None = None,
        label_token_weight: float = 1.0,
    ):
        tokenized = [
            tokenize_example(tokenizer, to_messages(r, task, line=line), max_length, task, label_token_weight)
            for line, r in numbered(records)
        ]
        # A prompt longer than max_length leaves no answer token: such an example trains nothing.
        useless = [t for t in tokenized if all(label == IGNORE_INDEX for label in t.labels)]
        tokenized = [t for t in tokenized if t not in useless]
        if not tokenized:
            raise ValueError(f"No example keeps an answer token within max_length={max_length}: raise max_length")
        self.dropped_no_answer = len(useless)
        self.examples = [
            {"input_ids": t.input_ids, "labels": t.labels}
            | ({"label_weights": t.weights} if t.weights is not None else {})
            for t in tokenized
        ]
        self.truncated = sum(t.truncated for t in tokenized)
        self.lengths = [len(t.input_ids) for t in tokenized]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def common_prefix_length(rows: list[list[int]]) -> int:
    """Leading tokens shared by every row, leaving each row at least one token of its own.

    Both users need that last own token: training's prefix pass returns no logits, and generation needs a new
    input to continue from. No rows share nothing.
    """
    if not rows:
        return 0
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the positions whose *next* token is a label: the only logits the loss reads."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


class PaddingCollator:
    """Pads a batch on the right: pad id for inputs, 0 in the attention mask, -100 in labels.

    Rows with ``label_weights`` (``SupervisedDataset`` with a ``label_token_weight``) give a float
    ``label_weights`` tensor, padded with 0; rows without give none.

    With ``answer_logits_only`` it adds ``logits_to_keep``, a boolean mask for ``transformers``
    models: the vocabulary projection then runs on the answer positions only (a third of a ticket
    example's tokens), which saves most of the lm_head compute and the full-vocabulary logits memory.

    With ``share_prefix`` it adds ``shared_prefix_length``: how many leading tokens every row of the
    batch has in common (the system prompt and the user-turn header: 63 of a ticket's ~136 tokens).
    ``ftlib.engine.train`` runs that prefix once per batch instead of once per row.
    """

    def __init__(
        self,
        pad_token_id: int,
        pad_to_multiple_of: int | None = None,
        answer_logits_only: bool = False,
        share_prefix: bool = False,
    ):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.answer_logits_only = answer_logits_only
        self.share_prefix = share_prefix

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(example["input_ids"]) for example in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for row, example in enumerate(rows):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if "label_weights" in rows[0]:
            weights = torch.zeros((len(rows), length), dtype=torch.float)
            for row, example in enumerate(rows):
                weights[row, : len(example["label_weights"])] = torch.tensor(example["label_weights"])
            batch["label_weights"] = weights
        scored = answer_positions(labels)
        if self.answer_logits_only:
            batch["logits_to_keep"] = scored
        if self.share_prefix:
            # Stop before the first position whose logit the loss reads: the prefix pass returns no logits.
            first_scored = int(scored.float().argmax(dim=1).min())
            shared = common_prefix_length([example["input_ids"] for example in rows])
            batch["shared_prefix_length"] = min(shared, first_scored)
        return batch


def forward_with_shared_prefix(model, inputs: dict, prefix: int):
    """Run the first ``prefix`` tokens (the same in every row) once, then every row's own tokens on its cache.

    Returns the model output of the second pass: logits at ``inputs["logits_to_keep"]`` positions
    past the prefix, which are all of them, since the prefix holds no answer token. A prefix of 0 (rows that
    differ from their first token) is one plain pass.
    """
    input_ids = inputs["input_ids"]
    if prefix == 0:
        return model(
            input_ids=input_ids, attention_mask=inputs["attention_mask"], logits_to_keep=inputs["logits_to_keep"]
        )
    cache = model(input_ids=input_ids[:1, :prefix], use_cache=True, logits_to_keep=1).past_key_values
    cache.batch_repeat_interleave(input_ids.shape[0])
    return model(
        input_ids=input_ids[:, prefix:],
        attention_mask=inputs["attention_mask"],
        past_key_values=cache,
        logits_to_keep=inputs["logits_to_keep"][:, prefix:],
        use_cache=False,
    )
