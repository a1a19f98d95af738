import pytest

from ligo.data.corpus import default_corpus_dir, resolve_corpus, split_documents

TEXT = "First line of doc one.\nSecond line.\n\n\nDoc two, alone.\n  \nDoc three\n"


def test_blank_line_documents_keep_their_first_line_number():
    docs = list(split_documents(TEXT, "blank_line"))
    assert [d.text for d in docs] == ["First line of doc one.\nSecond line.", "Doc two, alone.",
                                      "Doc three"]
    assert [d.line for d in docs] == [1, 5, 7]


def test_line_and_file_modes():
    assert len(list(split_documents(TEXT, "line"))) == 4
    (whole,) = split_documents(TEXT, "file")
    assert whole.text.startswith("First") and whole.text.endswith("Doc three")


def test_folder_is_searched_recursively_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("beta\n")
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "ignored.csv").write_text("not text")
    corpus = resolve_corpus([str(tmp_path)])
    assert [p.name for p in corpus.files] == ["a.txt", "x.txt"]
    assert list(corpus.iter_texts()) == ["alpha", "beta"]


def test_missing_and_empty_data_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_corpus([str(tmp_path / "nope.txt")])
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        resolve_corpus([str(tmp_path)])
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        resolve_corpus([str(tmp_path / "empty.txt")])


def test_embedded_default_corpus_is_installed_real_text():
    folder = default_corpus_dir()
    corpus = resolve_corpus(None)
    assert corpus.documents == "file" and len(corpus.files) > 2000
    assert all(folder in p.parents for p in corpus.files)
    first = next(corpus.iter_texts())
    assert len(first.split()) > 50  # a whole news article, not a stub


def test_hf_dataset_rows_become_documents(monkeypatch):
    """The `--dataset_name` path, with a stand-in `datasets` module (no network in tests)."""
    import sys
    import types

    class Rows(dict):
        column_names = ["text", "id"]

    calls = []
    fake = types.SimpleNamespace(load_dataset=lambda name, config, split: calls.append(
        (name, config, split)) or Rows(text=["A first article.", "  ", "Second one."], id=[1, 2, 3]))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    corpus = resolve_corpus(None, dataset_name="org/wiki", dataset_config_name="en")
    assert corpus.name == "org_wiki"
    docs = list(corpus.iter_documents())
    assert [(d.text, d.line) for d in docs] == [("A first article.", 0), ("Second one.", 2)]
    assert calls == [("org/wiki", "en", "train")]
    with pytest.raises(ValueError, match="no column 'body'"):
        list(resolve_corpus(None, dataset_name="org/wiki", text_column="body").iter_documents())
    with pytest.raises(ValueError, match="not both"):
        resolve_corpus(["a.txt"], dataset_name="org/wiki")


def test_a_file_that_is_not_utf8_text_is_refused(tmp_path):
    import os

    from ligo.data.corpus import resolve_corpus

    binary = tmp_path / "random.txt"
    binary.write_bytes(os.urandom(20_000))
    with pytest.raises(ValueError, match=r"random\.txt is not UTF-8 text \(\d+% of its first"):
        resolve_corpus([str(binary)])
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("A plain English sentence.\n" * 50, encoding="utf-16")
    with pytest.raises(ValueError, match="NUL bytes"):
        resolve_corpus([str(utf16)])
    latin1 = tmp_path / "latin1.txt"  # a stray accent in Latin-1 is tolerated (replaced)
    latin1.write_bytes(("Caf\xe9 society. " + "Plain words follow here. " * 20).encode("latin-1"))
    assert resolve_corpus([str(latin1)]).files == (latin1,)


def test_the_key_follows_the_content_not_the_modification_time(tmp_path):
    """A corpus provisioned again (same bytes, new mtime) keeps its key, so its tokenizer, token
    cache and runs are reused; one changed byte (same size) gives a new key."""
    import hashlib
    import os

    path = tmp_path / "c.txt"
    path.write_text("one document\n\nanother document\n")
    corpus = resolve_corpus([str(path)])
    key = corpus.key()
    assert corpus.fingerprint()["files"][0][2] == hashlib.sha256(path.read_bytes()).hexdigest()
    os.utime(path, ns=(10**18, 10**18))
    assert resolve_corpus([str(path)]).key() == key
    path.write_text("one document\n\nanother documenT\n")
    assert resolve_corpus([str(path)]).key() != key
