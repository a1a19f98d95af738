"""From a corpus and a model config to everything a language-model training loop consumes:
tokenizer, special ids, train/valid blocks and the collator. Shared by pretraining and by
anything else trained on the large model's own loss."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from tokenizers import Tokenizer

from ligo import distributed
from ligo.data import cache as token_cache
from ligo.data.blocks import TokenBlocks
from ligo.data.collators import CLMCollator, MLMCollator
from ligo.data.corpus import Corpus
from ligo.data.tokenizer import SpecialIds, load_tokenizer, special_ids, train_tokenizer, word_start_table
from ligo.families import Family
from ligo.fileio import atomic_write

log = logging.getLogger(__name__)


@dataclass
class LMData:
    train: TokenBlocks
    valid: TokenBlocks
    collator: MLMCollator | CLMCollator
    head_fraction: float  # share of tokens the LM head runs on (for the FLOPs count)


def obtain_tokenizer(tokenizer_path: str | None, corpus: Corpus, family: Family, vocab_size: int,
                     cache_dir: str | None, info: distributed.DistInfo) -> Tokenizer:
    """The given tokenizer, or one trained on the corpus (once: later runs and ranks load it)."""
    if tokenizer_path:
        return load_tokenizer(tokenizer_path, family)
    folder = token_cache.cache_folder(corpus, cache_dir)
    path = folder / f"{corpus.name}.{corpus.key()[:16]}.{family.name}-{vocab_size}.tokenizer.json"
    if info.is_main and not path.exists():
        log.info("no --tokenizer_path: training a %s tokenizer (%d tokens) on %s",
                 family.name, vocab_size, corpus.name)
        tok = train_tokenizer(corpus.iter_texts, family, vocab_size)
        with atomic_write(path) as tmp:
            tok.save(str(tmp))
    distributed.barrier(info)
    return load_tokenizer(path, family)


def align_config_with_tokenizer(config, family: Family, tok: Tokenizer, block_size: int) -> SpecialIds:
    """Check that the tokenizer fits the model, and give the config the tokenizer's special ids
    (RoBERTa's position ids, for one, are computed from pad_token_id)."""
    ids = special_ids(tok, family)
    tok_vocab = tok.get_vocab_size(with_added_tokens=True)
    if tok_vocab > config.vocab_size:
        raise ValueError(f"the tokenizer has {tok_vocab} tokens but the model's vocab_size is "
                         f"{config.vocab_size}: use a matching tokenizer or a config with "
                         f"vocab_size >= {tok_vocab}")
    if family.position_offset and ids.pad + 1 + block_size > config.max_position_embeddings:
        raise ValueError(f"the tokenizer's pad id is {ids.pad}, but {family.name} numbers positions "
                         f"from pad id + 1, so blocks of {block_size} tokens need "
                         f"max_position_embeddings >= {ids.pad + 1 + block_size}; use a "
                         f"tokenizer whose {family.specials.pad} has a small id")
    config.pad_token_id, config.bos_token_id, config.eos_token_id = ids.pad, ids.bos, ids.eos
    return ids


def build_lm_data(corpus: Corpus, tok: Tokenizer, ids: SpecialIds, family: Family, *,
                  block_size: int, valid_percent: float, cache_dir: str | None,
                  mlm_probability: float, whole_word_mask: bool, seed: int,
                  info: distributed.DistInfo, progress: bool = False) -> LMData:
    """Tokenise (rank 0, cached; `valid_percent` of the documents held out) and cut blocks of
    `block_size` tokens; pick the family's collator (masking seeded by `seed`)."""
    cache = None
    if info.is_main:
        cache = token_cache.build_or_reuse(corpus, tok, ids.eos, valid_percent,
                                           cache_dir=cache_dir, progress=progress)
        log.info("%s token cache %s (%.1fs)", "built" if cache.built else "reusing", cache.path,
                 cache.seconds)
    cache = distributed.broadcast_object(cache, info)
    bos = ids.bos if family.prepend_bos else None
    eos = ids.eos if family.objective == "mlm" else None
    blocks = {split: TokenBlocks(token_cache.open_split(cache.path, split), block_size, bos, eos)
              for split in ("train", "valid")}
    if len(blocks["valid"]) == 0:
        raise ValueError(f"the validation split has no complete block of {block_size} "
                         "tokens; raise --validation_split_percentage or use more data")
    if family.objective == "clm":
        return LMData(blocks["train"], blocks["valid"], CLMCollator(), head_fraction=1.0)
    collator = MLMCollator(ids.mask, tok.get_vocab_size(with_added_tokens=True), ids.all(), seed,
                           mlm_probability, word_start_table(tok, family) if whole_word_mask else None)
    return LMData(blocks["train"], blocks["valid"], collator, head_fraction=mlm_probability)
