"""ftlib.engine.export: adapter -> merged -> GGUF, with the parity checks that must catch a broken hand-over."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TICKETS  # tests/, on pytest's path

from ftlib.core.config import Decoding, TrainConfig
from ftlib.core.fileio import write_jsonl
from ftlib.core.runtime import pick_device
from ftlib.course import cli
from ftlib.engine import export, gguf, train
from ftlib.engine.models import CHATML_TEMPLATE, chatml_tokenizer, tiny_random_llama_config, tiny_tokenizer

CONVERSATIONS = [
    [{"role": "system", "content": "Triage the ticket."}, {"role": "user", "content": ticket["ticket"]}]
    for ticket in TICKETS
]
IDS = [ticket["id"] for ticket in TICKETS]


def bpe_tokenizer():
    """A real byte-level BPE tokenizer (merges learned from the tickets) with ChatML tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,  # the 256 bytes, 3 specials and ~140 merges: enough for multi-byte tokens
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [json.dumps(ticket) for ticket in TICKETS] + ["system user assistant Triage the ticket."] * 3
    backend.train_from_iterator(texts, trainer)
    return chatml_tokenizer(backend)


@pytest.fixture(scope="module")
def bpe_base(tmp_path_factory):
    """A folder with a seeded tiny random Llama and the BPE tokenizer: a base model ``train`` can load."""
    from transformers import AutoModelForCausalLM

    tokenizer = bpe_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(tiny_random_llama_config(len(tokenizer)), dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("bpe-base")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def bpe_model(bpe_base):
    from ftlib.engine.models import load_model

    return load_model(str(bpe_base), device=pick_device("cpu"))


@pytest.fixture(scope="module")
def active_run(bpe_base, tmp_path_factory):
    """A LoRA run on the BPE base whose adapter does something: 1 training step, then random B matrices."""
    from safetensors.torch import load_file, save_file

    from ftlib.core.tasks import SUPPORT_TICKETS

    run = tmp_path_factory.mktemp("runs") / "lora"
    config = TrainConfig(max_steps=1, warmup_steps=0, eval_steps=1, batch_size=2, max_length=512)
    tickets = [dict(t) for t in TICKETS]
    train.train(str(bpe_base), tickets, tickets, run, config=config, task=SUPPORT_TICKETS, device=pick_device("cpu"))
    weights = run / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(0)
    for name in tensors:
        if "lora_B" in name:  # fresh B is zero, and one small step leaves it near zero: make the merge matter
            tensors[name] = torch.randn(tensors[name].shape, generator=generator) * 0.1
    save_file(tensors, weights)
    return run


@pytest.mark.unit
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gguf_round_trip_keeps_logits_answers_and_template(bpe_model, tmp_path, dtype):
    from gguf import GGUFReader

    model, tokenizer = bpe_model
    path = gguf.write_gguf(model, tokenizer, tmp_path / "m.gguf", dtype)
    names = {tensor.name for tensor in GGUFReader(path).tensors}
    assert {"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output_norm.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: readers tie them again
    reloaded, reloaded_tokenizer = gguf.load_gguf(path)
    parity, _ = export.compare_stage(
        "merged -> GGUF",
        model,
        tokenizer,
        reloaded,
        reloaded_tokenizer,
        CONVERSATIONS,
        IDS,
        export.GGUF_TOLERANCE[dtype],
        Decoding(max_new_tokens=8),
    )
    assert parity.ok, parity
    if dtype == "f32":
        assert parity.max_abs_logit_diff < 1e-5  # bit-identical weights: only summation order may differ
    template = export.compare_templates(tokenizer, reloaded_tokenizer, CONVERSATIONS, IDS)
    assert template.ok, template
    assert reloaded_tokenizer.chat_template == tokenizer.chat_template
    assert (reloaded_tokenizer.bos_token, reloaded_tokenizer.eos_token, reloaded_tokenizer.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
    )


@pytest.mark.unit
def test_a_gguf_parsed_once_loads_what_transformers_loads_alone(bpe_model, tmp_path):
    """``gguf.parsed_once`` (one parse per file instead of three) changes nothing that is loaded, and leaves the
    ``gguf`` package as it found it."""
    import gguf as gguf_package
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf.write_gguf(*bpe_model, tmp_path / "m.gguf", "f32")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    plain_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    reader_class, name_map = gguf_package.GGUFReader, gguf_package.get_tensor_name_map
    parses = []

    def counting_reader(*args, **kwargs):
        parses.append(args[0])
        return reader_class(*args, **kwargs)

    gguf_package.GGUFReader = counting_reader
    try:
        with gguf.parsed_once():
            cached = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
            cached_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
        assert gguf_package.GGUFReader is counting_reader and len(parses) == 1
    finally:
        gguf_package.GGUFReader = reader_class
    assert gguf_package.get_tensor_name_map is name_map
    assert plain.state_dict().keys() == cached.state_dict().keys()
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, cached.state_dict()[name]), name
    assert cached.config.to_dict() == plain.config.to_dict()
    assert cached_tokenizer.get_vocab() == plain_tokenizer.get_vocab()
    assert cached_tokenizer.chat_template == plain_tokenizer.chat_template


@pytest.mark.unit
def test_forgetting_the_qk_permutation_is_caught(bpe_model, tmp_path, monkeypatch):
    model, tokenizer = bpe_model
    monkeypatch.setattr(gguf, "llama_cpp_permute", lambda weights, n_head: weights)
    reloaded, reloaded_tokenizer = gguf.load_gguf(gguf.write_gguf(model, tokenizer, tmp_path / "m.gguf"))
    parity, _ = export.compare_stage(
        "merged -> GGUF",
        model,
        tokenizer,
        reloaded,
        reloaded_tokenizer,
        CONVERSATIONS,
        IDS,
        1e-3,
        Decoding(max_new_tokens=8),
    )
    assert not parity.logits_ok and not parity.ok
    assert parity.max_abs_logit_diff > 1e-2


@pytest.mark.unit
def test_one_corrupted_tensor_is_reported(bpe_model, tmp_path):
    model, tokenizer = bpe_model
    corrupted = copy.deepcopy(model)
    with torch.no_grad():
        corrupted.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    parity, _ = export.compare_stage(
        "adapter -> merged",
        model,
        tokenizer,
        corrupted,
        tokenizer,
        CONVERSATIONS,
        IDS,
        export.MERGE_TOLERANCE,
        Decoding(max_new_tokens=8),
    )
    assert parity.max_abs_logit_diff > export.MERGE_TOLERANCE and not parity.ok


@pytest.mark.unit
def test_the_permutation_is_the_one_transformers_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rng = np.random.default_rng(0)
    n_head, n_kv, head_dim, hidden = 4, 2, 8, 32
    processor = LlamaTensorProcessor({"num_attention_heads": n_head, "num_key_value_heads": n_kv})
    for name, heads in (("blk.0.attn_q.weight", n_head), ("blk.0.attn_k.weight", n_kv)):
        weights = rng.standard_normal((heads * head_dim, hidden)).astype(np.float32)
        permuted = gguf.llama_cpp_permute(weights, heads)
        assert not np.array_equal(permuted, weights)
        np.testing.assert_array_equal(processor.process(permuted, name).weights, weights)


@pytest.mark.unit
def test_ship_merges_writes_and_checks_a_lora_run(active_run, tmp_path, task):
    out = tmp_path / "out"
    report = export.ship(active_run, out, [dict(t) for t in TICKETS], task, decoding=Decoding(max_new_tokens=8))
    assert report.ok, report.rows()
    assert report.merge.max_abs_logit_diff <= export.MERGE_TOLERANCE and report.merge.answers_compared == 4
    assert report.gguf_parity.max_abs_logit_diff <= export.GGUF_TOLERANCE["f32"]
    assert {path.name for path in out.iterdir()} == {"merged", "model.gguf", "Modelfile", "export_report.json"}
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["ok"] is True and saved["gguf_parity"]["differing_answers"] == []
    modelfile = (out / "Modelfile").read_text()
    assert f'SYSTEM """{task.instruction}"""' in modelfile
    assert [row["ok"] for row in report.rows()] == [True] * 5
    # The merge must have mattered: the active adapter moves the base model's logits.
    from ftlib.engine.models import load_model

    base, tokenizer = load_model(str(train.load_run(active_run).base_model), device=pick_device("cpu"))
    merged, _ = load_model(str(out / "merged"), device=pick_device("cpu"))
    rows = [export._prompt_ids(tokenizer, conversation) for conversation in CONVERSATIONS]
    assert export.max_logit_difference(base, merged, rows)[0] > 100 * export.MERGE_TOLERANCE


@pytest.mark.unit
def test_export_command_prints_a_table_writes_a_report_and_keeps_earlier_output(active_run, tmp_path, capsys):
    records = write_jsonl(TICKETS, tmp_path / "tickets.jsonl")
    out = tmp_path / "out"
    arguments = ["export", "--run", str(active_run), "--output", str(out), "--records", str(records)]
    assert cli.main([*arguments, "--limit", "2", "--max-new-tokens", "4"]) == 0
    printed = capsys.readouterr().out
    assert "adapter -> merged: logits" in printed and "merged -> GGUF: greedy answers" in printed
    report = json.loads((out / "export_report.json").read_text())
    assert report["gguf_parity"]["answers_compared"] == 2
    before = (out / "model.gguf").stat().st_mtime_ns
    assert cli.main(arguments) == 2  # out is not empty now
    assert "is not empty" in capsys.readouterr().err
    assert (out / "model.gguf").stat().st_mtime_ns == before


@pytest.mark.unit
def test_modelfile_translates_chatml_and_says_what_it_cannot():
    tokenizer = tiny_tokenizer()
    text = gguf.modelfile_text("model.gguf", tokenizer, "Answer in JSON.")
    lines = text.splitlines()
    assert "FROM ./model.gguf" in lines
    assert 'SYSTEM """Answer in JSON."""' in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|im_start|>"' in lines
    assert "<|im_start|>user\n{{ .Content }}<|im_end|>\n<|im_start|>assistant\n" in text
    smol = (
        "{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are SmolLM<|im_end|>\\n' }}{% endif %}"
    )
    tokenizer.chat_template = smol + CHATML_TEMPLATE
    assert 'SYSTEM """You are SmolLM"""' in gguf.modelfile_text("model.gguf", tokenizer)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
    other = gguf.modelfile_text("model.gguf", tokenizer)
    assert "TEMPLATE" not in other.replace("# No TEMPLATE", "") and "<|im_start|>" not in other
    with pytest.raises(ValueError, match='"""'):
        gguf.modelfile_text("model.gguf", tokenizer, 'say """hi"""')


@pytest.mark.unit
def test_a_non_llama_model_is_refused_by_name(active_run, bpe_base, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, Qwen2Config

    qwen = AutoModelForCausalLM.from_config(
        Qwen2Config(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(gguf.UnsupportedModel, match="'qwen2'"):
        gguf.write_gguf(qwen, bpe_tokenizer(), tmp_path / "q.gguf")
    assert not list(tmp_path.glob("*gguf*"))
    # A run whose base is a Qwen2 model: refused before anything is written.
    qwen_base = tmp_path / "qwen-base"
    qwen.save_pretrained(qwen_base)
    bpe_tokenizer().save_pretrained(qwen_base)
    run = tmp_path / "run"
    shutil.copytree(active_run / "adapter", run / "adapter")  # a whole run folder: only its base is refused
    manifest = json.loads((active_run / "manifest.json").read_text()) | {"base_model": str(qwen_base)}
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["export", "--run", str(run), "--output", str(tmp_path / "out")]) == 2
    assert "architecture 'qwen2'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_a_tokenizer_without_merges_is_refused(tmp_path):
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()  # the fixtures' byte-level vocabulary has no merges: llama.cpp needs them
    model = AutoModelForCausalLM.from_config(tiny_random_llama_config(len(tokenizer)))
    with pytest.raises(gguf.UnsupportedModel, match="without merges"):
        gguf.write_gguf(model, tokenizer, tmp_path / "m.gguf")


# The pre-tokenizer names llama.cpp's vocabulary loader accepts for these two splits (src/llama-vocab.cpp,
# llama-cpp-python 0.3.36); any other name fails the load with "unknown pre-tokenizer type".
LLAMA_CPP_PRE_TOKENIZERS = {"gpt-2", "smollm"}


@pytest.mark.unit
@pytest.mark.parametrize(
    "pre_tokenizer",
    [
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, {"type": "ByteLevel"}]},
    ],
    ids=["byte-level", "digits-then-byte-level"],
)
def test_the_pre_tokenizer_is_named_as_llama_cpp_reads_it(pre_tokenizer):
    """A name llama.cpp does not know made it refuse the course's own GGUF (found by benchmarks/llama_cpp_speed.py)."""
    assert gguf._pre_tokenizer_name({"pre_tokenizer": pre_tokenizer}) in LLAMA_CPP_PRE_TOKENIZERS
