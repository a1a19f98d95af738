"""Model families described once, as data.

Everything the rest of the package needs to know about BERT, RoBERTa and GPT-2 lives in
one `Family` record each: which `transformers` class to build, which objective trains it,
where its LM head sits, how many positions a block may use and which special tokens its
tokenizer must have. Adding a family means adding one record (and its tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import transformers


@dataclass(frozen=True)
class SpecialTokens:
    """Names of the special tokens a family's tokenizer must provide."""

    bos: str  # prepended to each training block (BERT [CLS], RoBERTa <s>); GPT-2 prepends none
    eos: str  # separates documents in the token stream and closes each MLM block
    pad: str
    unk: str | None
    mask: str | None  # None for causal-LM families


@dataclass(frozen=True)
class Family:
    name: str
    model_class: str  # attribute of `transformers`
    objective: str  # "mlm" or "clm"
    head_attr: str  # the LM head module, applied to hidden states of the base model
    specials: SpecialTokens
    head_transform: bool = True  # an H x H dense + LayerNorm before the decoder (BERT, RoBERTa)
    position_offset: int = 0  # RoBERTa reserves positions 0..pad_token_id
    prepend_bos: bool = True

    def build_class(self):
        return getattr(transformers, self.model_class)

    def max_block_size(self, config) -> int:
        return config.max_position_embeddings - self.position_offset


BERT_SPECIALS = SpecialTokens(bos="[CLS]", eos="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]")
ROBERTA_SPECIALS = SpecialTokens(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", mask="<mask>")
GPT2_SPECIALS = SpecialTokens(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>",
                              unk=None, mask=None)

FAMILIES: dict[str, Family] = {
    "bert": Family("bert", "BertForMaskedLM", "mlm", "cls", BERT_SPECIALS),
    # RoBERTa position ids start at pad_token_id + 1, so two positions are never usable
    "roberta": Family("roberta", "RobertaForMaskedLM", "mlm", "lm_head", ROBERTA_SPECIALS,
                      position_offset=2),
    "gpt2": Family("gpt2", "GPT2LMHeadModel", "clm", "lm_head", GPT2_SPECIALS,
                   head_transform=False, prepend_bos=False),
}


def family_of(config) -> Family:
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"unknown model type {model_type!r}; supported: {', '.join(FAMILIES)}")
    return FAMILIES[model_type]
