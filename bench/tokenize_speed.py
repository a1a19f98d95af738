#!/usr/bin/env python
"""Time tokenising a corpus into ligo's HDF5 cache (cold cache, then the reuse).

Default input: every corpus in ../shared/data/corpus plus the embedded BBC News corpus,
about 26 MB of English text, with the BERT WordPiece and GPT-2 BPE tokenizers.

    python bench/tokenize_speed.py
    python bench/tokenize_speed.py --train_files my_corpus/ --tokenizer bert=path/to/vocab.txt
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))


def main(argv=None):
    from ligo.data import cache as token_cache
    from ligo.data.corpus import Corpus, default_corpus_dir, resolve_corpus
    from ligo.data.tokenizer import load_tokenizer, special_ids
    from ligo.families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_files", nargs="+",
                        default=[str(SHARED / "corpus"), str(default_corpus_dir())])
    parser.add_argument("--tokenizer", nargs="+", default=[f"bert={SHARED / 'vocab/bert-base-uncased-vocab.txt'}",
                                                           f"gpt2={SHARED / 'vocab/gpt2'}"],
                        help="FAMILY=PATH pairs")
    args = parser.parse_args(argv)
    corpus: Corpus = resolve_corpus(args.train_files)
    megabytes = sum(p.stat().st_size for p in corpus.files) / 1e6
    rows = []
    for pair in args.tokenizer:
        family_name, path = pair.split("=", 1)
        family = FAMILIES[family_name]
        tok = load_tokenizer(path, family)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            built = token_cache.build_or_reuse(corpus, tok, special_ids(tok, family).eos, 2.0, cache_dir=tmp)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            token_cache.build_or_reuse(corpus, tok, special_ids(tok, family).eos, 2.0, cache_dir=tmp)
            warm = time.perf_counter() - start
            tokens = len(token_cache.open_split(built.path, "train")) + len(token_cache.open_split(built.path, "valid"))
        rows.append({"tokenizer": family_name, "megabytes": round(megabytes, 1), "files": len(corpus.files),
                     "tokens": tokens, "seconds": round(cold, 2), "reuse_seconds": round(warm, 3),
                     "mb_per_s": round(megabytes / cold, 1)})
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
