"""Load a tokenizer from local files, or train one on the corpus, with the `tokenizers` library.

Accepted paths: a BERT WordPiece `vocab.txt`; a folder holding GPT-2's `encoder.json` and
`vocab.bpe`; a `tokenizer.json`; or a folder holding either. Whatever is loaded must carry
the special tokens of the model family (checked here, so a GPT-2 tokenizer handed to a BERT
run fails with a sentence, not an index error three hours later).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from ligo.families import Family


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    mask: int | None
    unk: int | None

    def all(self) -> list[int]:
        return sorted({i for i in (self.bos, self.eos, self.pad, self.mask, self.unk) if i is not None})


def _wordpiece(vocab: dict[str, int] | None, lowercase: bool) -> Tokenizer:
    model = models.WordPiece(vocab, unk_token="[UNK]") if vocab else models.WordPiece(unk_token="[UNK]")
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def _byte_level_bpe(model: models.BPE) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _family_special_tokens(family: Family) -> list[str]:
    s = family.specials
    ordered = [s.bos, s.pad, s.eos, s.unk, s.mask]  # RoBERTa's own id order: <s> <pad> </s> <unk>
    if family.name == "bert":
        ordered = [s.pad, s.unk, s.bos, s.eos, s.mask]  # BERT's: [PAD] [UNK] [CLS] [SEP] [MASK]
    return list(dict.fromkeys(t for t in ordered if t is not None))


def load_tokenizer(path: str | Path, family: Family) -> Tokenizer:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer path {path} does not exist")
    if path.is_dir():
        for name in ("tokenizer.json", "vocab.txt"):
            if (path / name).is_file():
                return load_tokenizer(path / name, family)
        if (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
            tok = _gpt2_bpe(path / "encoder.json", path / "vocab.bpe", family)
        else:
            raise FileNotFoundError(f"{path} holds no tokenizer.json, vocab.txt or "
                                    "encoder.json + vocab.bpe")
    elif path.name.endswith(".json"):
        tok = Tokenizer.from_file(str(path))
    else:  # a WordPiece vocabulary, one token per line
        tokens = path.read_text(encoding="utf-8").splitlines()
        if not tokens:
            raise ValueError(f"the vocabulary file {path} is empty")
        vocab = {t: i for i, t in enumerate(tokens)}
        # an uncased vocabulary has no capital letters outside its [SPECIAL] tokens
        lowercase = not any(t != t.lower() for t in tokens if not t.startswith("["))
        tok = _wordpiece(vocab, lowercase)
    return _finish(tok, family, source=str(path))


def _finish(tok: Tokenizer, family: Family, source: str) -> Tokenizer:
    """Mark the family's special tokens as special and add its sentence(-pair) template.

    The template only matters to users of the saved tokenizer (fine-tuning, evaluation):
    pretraining encodes with add_special_tokens=False and builds its own blocks.
    """
    tok.add_special_tokens([t for t in _family_special_tokens(family) if tok.token_to_id(t) is not None])
    ids = special_ids(tok, family, source=source)  # fail now if the family's tokens are missing
    bos, eos = family.specials.bos, family.specials.eos
    if family.name == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B:1 {eos}:1",
            special_tokens=[(bos, ids.bos), (eos, ids.eos)])
    elif family.name == "roberta":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
            special_tokens=[(bos, ids.bos), (eos, ids.eos)])
    return tok


def _gpt2_bpe(encoder: Path, merges: Path, family: Family) -> Tokenizer:
    """GPT-2's byte-level BPE; for RoBERTa laid out as fairseq does it.

    RoBERTa's position embeddings use pad_token_id as padding index, so <pad> must have a
    small id: <s> <pad> </s> <unk> take ids 0-3, GPT-2's tokens follow shifted by 4, and
    <mask> comes last (50,262 tokens, within roberta's vocab_size of 50,265).
    """
    vocab, merge_list = models.BPE.read_file(str(encoder), str(merges))
    if family.name == "roberta":
        head = ["<s>", "<pad>", "</s>", "<unk>"]
        vocab = {**{t: i for i, t in enumerate(head)},
                 **{t: i + len(head) for t, i in vocab.items()}}
        vocab["<mask>"] = len(vocab)
    return _byte_level_bpe(models.BPE(vocab, merge_list))


def train_tokenizer(texts: Callable[[], Iterable[str]], family: Family, vocab_size: int) -> Tokenizer:
    """Train a WordPiece (BERT) or byte-level BPE (RoBERTa, GPT-2) tokenizer on `texts()`.

    The same texts give the same tokenizer, byte for byte, in every process. `tokenizers`'
    WordPiece trainer alone does not (huggingface/tokenizers#1794): it numbers the '##'
    continuation tokens in hash-map order, and those ids break ties between merges of equal
    count, so two runs of one command could train on different vocabularies. Handing it every
    '##c' up front, in sorted order, fixes their ids (found by a first trainer pass that stops
    before any merge: one more pass over the texts, hence a function that gives them);
    byte-level BPE numbers nothing lazily.
    """
    specials = _family_special_tokens(family)
    if family.name == "bert":
        tok = _wordpiece(None, lowercase=True)
        continuations = _continuation_tokens(texts())
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials + continuations,
                                            show_progress=False)
        tok.train_from_iterator(texts(), trainer=trainer)
        # WordPiece encodes by its vocabulary alone: rebuilt from it, the '##c' are ordinary
        # tokens again, not special ones (which would be matched in raw text and skipped on decode)
        tok = _wordpiece(tok.get_vocab(with_added_tokens=False), lowercase=True)
    else:
        tok = _byte_level_bpe(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts(), trainer=trainer)
    return _finish(tok, family, source="the trained tokenizer")


def _continuation_tokens(texts: Iterable[str]) -> list[str]:
    """Every '##c' the WordPiece trainer creates on `texts` (a character c inside a word, as its
    normaliser and pre-tokeniser see it), sorted: a trainer run that stops before any merge."""
    tok = _wordpiece(None, lowercase=True)
    tok.train_from_iterator(texts, trainer=trainers.WordPieceTrainer(vocab_size=1, show_progress=False))
    return sorted(t for t in tok.get_vocab() if t.startswith("##"))


def special_ids(tok: Tokenizer, family: Family, source: str = "the tokenizer") -> SpecialIds:
    s = family.specials

    def need(token: str | None) -> int | None:
        if token is None:
            return None
        index = tok.token_to_id(token)
        if index is None:
            raise ValueError(f"{source} has no {token} token: it is not a {family.name} "
                             f"tokenizer (a {family.name} model needs {s.bos}, {s.eos}"
                             f"{', ' + s.mask if s.mask else ''})")
        return index

    return SpecialIds(bos=need(s.bos), eos=need(s.eos), pad=need(s.pad), mask=need(s.mask),
                      unk=need(s.unk))


def fingerprint(tok: Tokenizer) -> str:
    return hashlib.sha256(tok.to_str().encode()).hexdigest()


def word_start_table(tok: Tokenizer, family: Family) -> np.ndarray:
    """Boolean per vocabulary id: does this token begin a word? (for whole-word masking)

    WordPiece marks continuations with '##'; byte-level BPE marks word starts with 'Ġ'
    (an encoded space) — a token without it continues the previous word.
    """
    vocab = tok.get_vocab(with_added_tokens=True)
    starts = np.ones(max(vocab.values()) + 1, dtype=bool)
    for token, index in vocab.items():
        if family.name == "bert":
            starts[index] = not token.startswith("##")
        else:
            starts[index] = token.startswith("Ġ") or not token[:1].isalnum()
    return starts


def save_hf_tokenizer(tok: Tokenizer, family: Family, out_dir: str | Path) -> None:
    """Save as a `transformers` fast tokenizer so AutoTokenizer.from_pretrained(out_dir) works."""
    from transformers import PreTrainedTokenizerFast

    s = family.specials
    names = {"bos_token": s.bos, "eos_token": s.eos, "pad_token": s.pad, "unk_token": s.unk,
             "mask_token": s.mask}
    if family.name == "bert":
        names.update(cls_token=s.bos, sep_token=s.eos)
    elif family.name == "roberta":
        names.update(cls_token=s.bos, sep_token=s.eos)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in names.items() if v})
    hf.save_pretrained(str(out_dir))
