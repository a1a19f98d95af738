"""Tokenise a corpus once into HDF5, reuse it on every later run.

File layout (`<name>.<key>.h5`, plus a human-readable `<name>.<key>.line` index):

    /train/ids          uint16/uint32 token stream, an end-of-document token after each document
    /train/doc_offsets  int64, start of each document in /train/ids (plus the end)
    /valid/ids, /valid/doc_offsets   the same for the held-out documents
    attrs: tokenizer fingerprint, vocabulary size, corpus description, split

The `.line` index has one row per document: split, token_start, token_end, source file and
the line where the document starts, so any block can be traced back to its text.

The key hashes the corpus (paths, sizes, contents), the tokenizer and the split, so a changed
file or tokenizer makes a new cache instead of silently reusing a stale one. Files are
written under a temporary name and renamed, so an interrupted run never leaves a cache
that looks complete. The token streams are stored contiguous and uncompressed, which lets
`open_split` memory-map them: a 10 GB corpus costs no RAM.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tokenizers import Tokenizer

from ligo.data.corpus import Corpus
from ligo.data.tokenizer import fingerprint
from ligo.fileio import atomic_write, atomic_write_text

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
BATCH_CHARS = 4_000_000  # documents are sent to the (multi-threaded) tokenizer in batches this big


@dataclass(frozen=True)
class TokenCache:
    path: Path
    built: bool  # False when an existing cache was reused
    seconds: float


def cache_key(corpus: Corpus, tok: Tokenizer, eos_id: int, valid_percent: float,
              split_seed: int) -> str:
    description = {"version": FORMAT_VERSION, "corpus": corpus.key(), "tokenizer": fingerprint(tok),
                   "eos": eos_id, "valid_percent": valid_percent, "split_seed": split_seed}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def cache_folder(corpus: Corpus, cache_dir: str | None) -> Path:
    """Next to the data when that folder is writable, else the user's cache folder."""
    candidates = [Path(cache_dir)] if cache_dir else []
    if not cache_dir and corpus.files:
        common = Path(os.path.commonpath([str(p.parent) for p in corpus.files]))
        if not _inside_installed_package(common):  # e.g. the default corpus: not site-packages
            candidates.append(common / ".ligo_cache")
    candidates.append(Path(os.environ.get("LIGO_CACHE", Path.home() / ".cache" / "ligo")))
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise PermissionError(f"no writable cache folder among {', '.join(map(str, candidates))}; "
                          "pass --cache_dir")


def _inside_installed_package(folder: Path) -> bool:
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    resolved = folder.resolve()
    return any(Path(root).resolve() in (resolved, *resolved.parents) for root in roots if root) \
        or "site-packages" in resolved.parts or "dist-packages" in resolved.parts


def build_or_reuse(corpus: Corpus, tok: Tokenizer, eos_id: int, valid_percent: float,
                   split_seed: int = 0, cache_dir: str | None = None,
                   progress: bool = False) -> TokenCache:
    key = cache_key(corpus, tok, eos_id, valid_percent, split_seed)
    path = cache_folder(corpus, cache_dir) / f"{corpus.name}.{key}.h5"
    if path.exists():
        if usable(path, tok.get_vocab_size(with_added_tokens=True)):
            return TokenCache(path, built=False, seconds=0.0)
        log.warning("token cache %s is damaged or incomplete: tokenising again", path)
    start = time.perf_counter()
    ids, doc_lengths, sources = _tokenize(corpus, tok, eos_id, progress)
    if ids.size == 0:
        raise ValueError(f"the corpus {corpus.name!r} contains no text to train on")
    _write(path, corpus, tok, ids, doc_lengths, sources, valid_percent, split_seed)
    return TokenCache(path, built=True, seconds=time.perf_counter() - start)


def usable(path: Path, vocab_size: int, sample: int = 1 << 20) -> bool:
    """Whether a cache file is complete and consistent: both splits present, document offsets
    that span the stream, and token ids (of a sample at each end) inside the vocabulary; a
    damaged file fails here and is rebuilt instead of failing later with an IndexError."""
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False) or int(f.attrs.get("vocab_size", -1)) != vocab_size:
                return False
            for split in ("train", "valid"):
                ids, offsets = f[f"{split}/ids"], f[f"{split}/doc_offsets"]
                if offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != ids.shape[0]:
                    return False
                if ids.shape[0] and max(ids[:sample].max(), ids[-sample:].max()) >= vocab_size:
                    return False
    except (OSError, KeyError, ValueError, TypeError):
        return False
    return True


def _tokenize(corpus: Corpus, tok: Tokenizer, eos_id: int, progress: bool):
    from tqdm import tqdm

    from ligo.progress import interactive

    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: no offsets computed
    chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    sources: list[tuple[int, int]] = []
    batch: list[str] = []
    batch_chars = 0
    bar = tqdm(desc=f"tokenising {corpus.name}", unit="doc", disable=not progress or not interactive())

    def flush():
        nonlocal batch, batch_chars
        encodings = encode(batch, add_special_tokens=False)
        pieces = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        eos = np.array([eos_id], dtype=np.int64)
        chunks.append(np.concatenate([p for piece in pieces for p in (piece, eos)]))
        lengths.append(np.fromiter((len(p) + 1 for p in pieces), dtype=np.int64, count=len(pieces)))
        bar.update(len(batch))
        batch, batch_chars = [], 0

    for doc in corpus.iter_documents():
        batch.append(doc.text)
        sources.append((doc.source, doc.line))
        batch_chars += len(doc.text)
        if batch_chars >= BATCH_CHARS:
            flush()
    if batch:
        flush()
    bar.close()
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    return np.concatenate(chunks), np.concatenate(lengths), sources


def split_documents(n_docs: int, valid_percent: float, split_seed: int) -> np.ndarray:
    """Boolean mask of held-out documents: a fixed-seed choice, the same on every machine."""
    n_valid = max(1, int(round(n_docs * valid_percent / 100))) if n_docs > 1 else 0
    is_valid = np.zeros(n_docs, dtype=bool)
    is_valid[np.random.default_rng(split_seed).permutation(n_docs)[:n_valid]] = True
    return is_valid


def _write(path: Path, corpus: Corpus, tok: Tokenizer, ids: np.ndarray, doc_lengths: np.ndarray,
           sources: list[tuple[int, int]], valid_percent: float, split_seed: int) -> None:
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    is_valid_doc = split_documents(len(doc_lengths), valid_percent, split_seed)
    is_valid_token = np.repeat(is_valid_doc, doc_lengths)
    rows = ["split\ttoken_start\ttoken_end\tfile\tline"]
    with atomic_write(path) as tmp_name:
        with h5py.File(tmp_name, "w") as f:
            for split, doc_mask, token_mask in (("train", ~is_valid_doc, ~is_valid_token),
                                                ("valid", is_valid_doc, is_valid_token)):
                offsets = np.concatenate([[0], np.cumsum(doc_lengths[doc_mask])])
                f.create_dataset(f"{split}/ids", data=ids[token_mask].astype(dtype))
                f.create_dataset(f"{split}/doc_offsets", data=offsets)
                kept = [s for s, keep in zip(sources, doc_mask, strict=True) if keep]
                for (source, line), start, end in zip(kept, offsets[:-1], offsets[1:], strict=True):
                    name = str(corpus.files[source]) if source >= 0 else corpus.name
                    rows.append(f"{split}\t{start}\t{end}\t{name}\t{line}")
            f.attrs.update(tokenizer=fingerprint(tok), vocab_size=vocab_size,
                           corpus=json.dumps(corpus.fingerprint()), valid_percent=valid_percent,
                           split_seed=split_seed, version=FORMAT_VERSION, complete=True)
        atomic_write_text(path.with_suffix(".line"), "\n".join(rows) + "\n")


def open_split(path: Path, split: str) -> np.ndarray:
    """Memory-map one split's token stream (read-only, zero-copy)."""
    with h5py.File(path, "r") as f:
        dataset = f[f"{split}/ids"]
        offset, shape, dtype = dataset.id.get_offset(), dataset.shape, dataset.dtype
    if offset is None:  # h5py allocates no storage for an empty dataset
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
