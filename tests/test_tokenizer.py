"""The tokenizer against transformers' CLIPTokenizer built from the same vocabulary, on real captions."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from vop.backbone.tokenizer import EOT_ID, SOT_ID, Tokenizer, clean_text, get_tokenizer, read_merges, tokenize


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    """transformers' CLIPTokenizer from vocab.json / merges.txt written from our packaged BPE file."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf_clip_tok")
    merges = read_merges()
    (folder / "vocab.json").write_text(json.dumps(Tokenizer(merges).encoder), encoding="utf-8")
    lines = ["#version: 0.2"] + [" ".join(m) for m in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return transformers.CLIPTokenizer.from_pretrained(str(folder))


def msrvtt_captions(real_data) -> list[str]:
    with open(real_data / "msrvtt" / "MSRVTT_JSFUSION_test.csv", newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f)]


def test_vocabulary_size_and_special_ids():
    tok = get_tokenizer()
    assert len(tok) == 49408
    assert tok.encoder["<|startoftext|>"] == SOT_ID == 49406
    assert tok.encoder["<|endoftext|>"] == EOT_ID == 49407


def test_msrvtt_captions_equal_transformers(real_data, hf_tokenizer):
    captions = msrvtt_captions(real_data)
    assert len(captions) == 1000
    ours = tokenize(captions)
    theirs = hf_tokenizer(captions, padding="max_length", max_length=77, truncation=True)
    mismatched = []
    for i, (row, ids, mask) in enumerate(zip(ours, theirs["input_ids"], theirs["attention_mask"])):
        n = sum(mask)
        # transformers pads with EOT, CLIP (and we) pad with 0; compare the real tokens and the padding
        if row[:n].tolist() != ids[:n] or row[n:].any():
            mismatched.append((i, captions[i]))
    assert not mismatched, f"{len(mismatched)} captions differ, first: {mismatched[:3]}"


def test_hard_strings_equal_transformers(hf_tokenizer):
    texts = [
        "Hello, World!",
        "a dog's ball; it's 1984.",
        "naïve café — über 😀 emoji",
        "  tabs\tand\nnewlines  ",
        "UPPER lower MiXeD",
        "x" * 300,
        "#hashtag @user http://example.com/a?b=c",
    ]
    ours = tokenize(texts)
    for row, text in zip(ours, texts):
        ids = hf_tokenizer(text, max_length=77, truncation=True)["input_ids"]
        assert row[: len(ids)].tolist() == ids, text


def test_known_ids_and_padding():
    out = tokenize(["hello, world!", "a"], context_length=10)
    assert out.dtype == torch.long and out.shape == (2, 10)
    assert out[0].tolist() == [SOT_ID, 3306, 267, 1002, 256, EOT_ID, 0, 0, 0, 0]
    assert out[1].tolist()[:3] == [SOT_ID, 320, EOT_ID] and not out[1, 3:].any()


def test_cleaning_like_clip():
    assert clean_text("  A &amp;amp; B\n\tC  ") == "a & b c"
    assert clean_text("schÃ¶n") == "schön"  # ftfy repairs mojibake
    assert tokenize("The DOG")[0].tolist() == tokenize("the   dog")[0].tolist()


def test_truncation_keeps_eot_last():
    long = "word " * 200
    out = tokenize(long, context_length=16)
    assert out.shape == (1, 16)
    assert out[0, 0] == SOT_ID and out[0, -1] == EOT_ID
    assert out[0].argmax() == 15  # the text encoder reads out here


def test_truncate_false_raises_naming_the_text():
    with pytest.raises(ValueError, match="context_length=8.*truncate=True"):
        tokenize(["short", "far too many words for eight tokens here"], context_length=8, truncate=False)


def test_decode_round_trip():
    tok = get_tokenizer()
    assert tok.decode(tokenize("A man is playing a guitar.")[0].tolist()) == "a man is playing a guitar ."


def test_bpe_cache_is_used():
    tok = Tokenizer(read_merges())
    tok.encode("unbelievably")
    assert "unbelievably</w>" not in tok.cache  # keys are the raw byte-mapped words
    assert "unbelievably" in tok.cache
    first = tok.cache["unbelievably"]
    tok.encode("unbelievably")
    assert tok.cache["unbelievably"] is first
