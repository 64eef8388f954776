"""kit.weights: the tiny local model and the real hub download (against a local hub-style server)."""

import hashlib
import json

import pytest
from hubserver import hub

from kit import weights
from kit.exceptions import ConfigError, SetupError

CANARY = "hf_CanaryToken0123456789abcdef"


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_tiny_model_is_deterministic_and_llama_shaped(tmp_path, tiny_model):
    """Building twice with the same seed gives identical files: a Llama config with head_dim 64."""
    again = weights.build_tiny_model(tmp_path / "again")
    assert _digest(again) == _digest(tiny_model)
    config = json.loads((again / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] // config["num_attention_heads"] == 64


def test_tiny_tokenizer_speaks_llama3_chat(tiny_model):
    """The tokenizer has Llama-3's special tokens and formats chats like Llama-3 Instruct."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert tok.decode(tok("hello world").input_ids) == "hello world"


def test_tiny_model_is_not_rebuilt_when_present(tiny_model):
    """A second call returns the existing folder without touching it."""
    before = {p.name: p.stat().st_mtime_ns for p in tiny_model.iterdir()}
    weights.build_tiny_model(tiny_model)
    assert before == {p.name: p.stat().st_mtime_ns for p in tiny_model.iterdir()}


def test_token_comes_from_env_file_or_environment(tmp_path, monkeypatch):
    """The token is read from HUGGINGFACE_HUB_TOKEN in the environment first, then from .env."""
    for name in weights.TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = tmp_path / ".env"
    env.write_text("# comment\nOTHER=1\nexport HUGGINGFACE_HUB_TOKEN='hf_fromfile'\n")
    assert weights.read_token(env) == "hf_fromfile"
    monkeypatch.setenv("HUGGINGFACE_HUB_TOKEN", "hf_fromenv")
    assert weights.read_token(env) == "hf_fromenv"
    assert weights.read_token(tmp_path / "missing") == "hf_fromenv"


def test_download_from_a_hub_style_server(tmp_path, tiny_model, monkeypatch, capsys):
    """The real huggingface_hub download fetches every file with the bearer token and never prints it."""
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    with hub("acme/tiny", tiny_model, CANARY) as (url, seen):
        target = weights.download_model("acme/tiny", tmp_path, token=CANARY, endpoint=url)
    assert weights.is_complete(target)
    assert _digest(target)["model.safetensors"] == _digest(tiny_model)["model.safetensors"]
    assert seen and all(h == f"Bearer {CANARY}" for h in seen)
    out = capsys.readouterr()
    assert CANARY not in out.out + out.err


def test_complete_model_is_not_downloaded_again(tmp_path, tiny_model):
    """A complete local copy is used as is: no token and no hub needed."""
    import shutil

    shutil.copytree(tiny_model, tmp_path / "tiny")
    assert weights.download_model("acme/tiny", tmp_path, token=None, progress=None) == tmp_path / "tiny"


def test_missing_token_names_the_env_line(tmp_path, monkeypatch):
    """Without a token the error says which .env line to add."""
    for name in weights.TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SetupError, match="HUGGINGFACE_HUB_TOKEN=<your token>"):
        weights.download_model("acme/gated", tmp_path, env_file=tmp_path / "none", progress=None)


def test_wrong_token_is_a_clear_error_without_the_token(tmp_path, tiny_model, monkeypatch):
    """A refused token gives an error that says to check access, and never contains the token."""
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    wrong = "hf_WrongCanary987654321"
    with hub("acme/tiny", tiny_model, CANARY) as (url, _):
        with pytest.raises(SetupError, match="granted access") as info:
            weights.download_model("acme/tiny", tmp_path, token=wrong, endpoint=url, progress=None)
    assert wrong not in str(info.value)


def test_bad_repo_id_is_refused(tmp_path):
    """A repo id that is not owner/name is refused before any network call."""
    with pytest.raises(ConfigError, match="owner/name"):
        weights.download_model("just-a-name", tmp_path, token="x")


def test_dummy_llama3_speaks_in_words_of_english_length(tmp_path):
    """Uniformly sampled tokens (what dummy weights emit) make words of ~1.3 tokens, which the
    output censor can release word by word: the pipeline's pieces follow the text, not the tokenizer."""
    import random

    from transformers import PreTrainedTokenizerFast

    from kit.guardrails import default_guard

    folder = weights.build_dummy_llama3(tmp_path / "dummy")
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    assert len(tok) == weights.LLAMA3_8B_CONFIG["vocab_size"]
    assert tok.convert_tokens_to_ids("<|eot_id|>") == weights.LLAMA3_8B_CONFIG["eos_token_id"]
    starts = sum(tok.convert_ids_to_tokens(i).startswith("Ġ") for i in range(weights.LLAMA3_REGULAR_VOCAB))
    assert starts / weights.LLAMA3_REGULAR_VOCAB == pytest.approx(weights.DUMMY_SPACE_LED_SHARE, abs=0.001)
    assert tok.decode(tok("the quick brown fox").input_ids) == "the quick brown fox"

    rng = random.Random(7)
    ids = [rng.randrange(weights.LLAMA3_REGULAR_VOCAB) for _ in range(300)]
    text = tok.decode(ids)
    assert 1.2 < 300 / len(text.split()) < 1.5  # tokens per word; the first version's: 6.7
    stream, released, previous = default_guard().stream(), 0, ""
    for n in range(1, len(ids) + 1):
        now = tok.decode(ids[:n])
        released += bool(stream.feed(now[len(previous):]))
        previous = now
    assert released > 150  # pieces a censored stream of 300 tokens comes in; the first version's: ~44


def test_dummy_llama3_is_rebuilt_only_when_its_tokenizer_changed(tmp_path):
    folder = weights.build_dummy_llama3(tmp_path / "dummy")
    before = (folder / "tokenizer.json").stat().st_mtime_ns
    assert weights.build_dummy_llama3(folder) == folder
    assert (folder / "tokenizer.json").stat().st_mtime_ns == before
    (folder / "kit_dummy_tokenizer_version").write_text("1\n")  # a folder from an older kit
    weights.build_dummy_llama3(folder)
    assert (folder / "kit_dummy_tokenizer_version").read_text().strip() == weights.DUMMY_TOKENIZER_VERSION
    assert (folder / "tokenizer.json").stat().st_mtime_ns != before


def test_lone_byte_tokens_are_the_byte_alphabets_upper_half(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    lone = weights.lone_byte_tokens(tok)
    assert len(lone) == 128  # bytes 0x80-0xFF; every merge of the ASCII corpus stays valid UTF-8
    assert all("\ufffd" not in tok.decode([i]) for i in range(len(tok)) if i not in set(lone))


def test_greedy_decoding_of_the_tiny_model_never_picks_a_lone_byte(tiny_model):
    """NVIDIA's additional-outputs test joins each token's decoded_token and compares with the text."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = LlamaForCausalLM.from_pretrained(tiny_model)
    lone = set(weights.lone_byte_tokens(tok))
    for prompt in ("In this example,", "Tell me about the ocean.", "é ü ß — ¿qué?"):
        ids = tok(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=64, do_sample=False, pad_token_id=tok.pad_token_id)
        generated = out[0, ids.shape[1]:].tolist()
        assert len(generated) > 0 and not lone & set(generated), prompt


def test_greedy_answers_of_the_tiny_model_run_to_max_tokens(tiny_model):
    """NVIDIA's cancellation test cancels a 1,500-token greedy answer after 1 s; the model must not end it first.

    The first version of the model ended this prompt's greedy answer with <|eot_id|> after 157 tokens.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = LlamaForCausalLM.from_pretrained(tiny_model)
    eos = tok.convert_tokens_to_ids("<|eot_id|>")
    assert model.generation_config.eos_token_id == eos
    ids = tok("Write an original and creative poem of at least 200 words.", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=400, do_sample=False, pad_token_id=tok.pad_token_id)
    generated = out[0, ids.shape[1]:].tolist()
    assert len(generated) == 400 and eos not in generated
