import json

import pytest

from ligo.data.tokenizer import (
    fingerprint,
    load_tokenizer,
    save_hf_tokenizer,
    special_ids,
    train_tokenizer,
    word_start_table,
)
from ligo.families import FAMILIES
from tests.conftest import BERT_VOCAB, GPT2_BPE, WIKI


def test_bert_vocab_loads_with_bert_ids(shared_data):
    tok = load_tokenizer(BERT_VOCAB, FAMILIES["bert"])
    ids = special_ids(tok, FAMILIES["bert"])
    assert (ids.pad, ids.unk, ids.bos, ids.eos, ids.mask) == (0, 100, 101, 102, 103)
    assert tok.encode("Hello world", add_special_tokens=False).ids == [7592, 2088]  # lowercased
    assert tok.encode("Hello", "world").tokens == ["[CLS]", "hello", "[SEP]", "world", "[SEP]"]


def test_gpt2_files_give_gpt2_ids_and_roberta_layout(shared_data):
    gpt2 = load_tokenizer(GPT2_BPE, FAMILIES["gpt2"])
    assert gpt2.encode("Hello world").ids == [15496, 995]
    assert special_ids(gpt2, FAMILIES["gpt2"]).eos == 50256
    roberta = load_tokenizer(GPT2_BPE, FAMILIES["roberta"])
    ids = special_ids(roberta, FAMILIES["roberta"])
    assert (ids.bos, ids.pad, ids.eos, ids.unk) == (0, 1, 2, 3)  # fairseq order
    assert roberta.encode("Hello world", add_special_tokens=False).ids == [15500, 999]  # shifted by 4
    assert ids.mask == roberta.get_vocab_size() - 1 == 50261


def test_wrong_tokenizer_for_the_family_is_named(shared_data):
    with pytest.raises(ValueError, match=r"no \[CLS\] token: it is not a bert tokenizer"):
        load_tokenizer(GPT2_BPE, FAMILIES["bert"])
    with pytest.raises(ValueError, match="no <s> token"):
        load_tokenizer(BERT_VOCAB, FAMILIES["roberta"])


def test_missing_tokenizer_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "vocab.txt", FAMILIES["bert"])
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(tmp_path, FAMILIES["bert"])


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2"])
def test_trained_tokenizer_has_family_specials_and_round_trips(family, tmp_path, shared_data):
    texts = WIKI.read_text().split("\n")[:3000]
    tok = train_tokenizer(lambda: texts, FAMILIES[family], vocab_size=2000)
    assert 1000 < tok.get_vocab_size() <= 2000
    special_ids(tok, FAMILIES[family])  # raises if a special token is missing
    tok.save(str(tmp_path / "tokenizer.json"))
    again = load_tokenizer(tmp_path / "tokenizer.json", FAMILIES[family])
    assert fingerprint(again) == fingerprint(tok)
    assert again.encode(texts[0]).ids == tok.encode(texts[0]).ids


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_training_twice_gives_the_same_tokenizer(family, shared_data):
    # tokenizers' own WordPiece trainer numbers its '##' tokens in hash-map order: on these
    # texts five trainings gave five different id maps (huggingface/tokenizers#1794)
    texts = WIKI.read_text().split("\n")[:1500]
    trained = [train_tokenizer(lambda: texts, FAMILIES[family], vocab_size=1500) for _ in range(4)]
    assert len({fingerprint(tok) for tok in trained}) == 1
    assert len({tuple(sorted(tok.get_vocab().items())) for tok in trained}) == 1


def test_trained_wordpiece_continuations_are_ordinary_tokens(shared_data):
    texts = WIKI.read_text().split("\n")[:1500]
    tok = train_tokenizer(lambda: texts, FAMILIES["bert"], vocab_size=1500)
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}
    assert specials == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert tok.token_to_id("##s") is not None  # in the vocabulary, as a continuation
    encoded = tok.encode("the tokenization of words", add_special_tokens=False)
    assert any(t.startswith("##") for t in encoded.tokens)
    assert tok.decode(encoded.ids) == "the tokenization of words"  # '##' pieces are not skipped


def test_word_starts_mark_wordpiece_continuations(shared_data):
    tok = load_tokenizer(BERT_VOCAB, FAMILIES["bert"])
    starts = word_start_table(tok, FAMILIES["bert"])
    encoded = tok.encode("unaffable tokenization", add_special_tokens=False)
    assert [starts[i] for i in encoded.ids] == [not t.startswith("##") for t in encoded.tokens]
    assert not all(starts[i] for i in encoded.ids)  # the words really were split


def test_saved_tokenizer_loads_in_transformers(tmp_path, shared_data):
    from transformers import AutoTokenizer

    save_hf_tokenizer(load_tokenizer(GPT2_BPE, FAMILIES["roberta"]), FAMILIES["roberta"], tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf.pad_token_id == 1 and hf.mask_token == "<mask>"
    assert hf("Hello world")["input_ids"] == [0, 15500, 999, 2]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())
