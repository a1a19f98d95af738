import numpy as np
import torch

from ligo.data.collators import IGNORE_INDEX, CLMCollator, MLMCollator
from ligo.data.tokenizer import load_tokenizer, special_ids, word_start_table
from ligo.families import FAMILIES
from tests.conftest import BERT_VOCAB, WIKI

VOCAB, MASK, CLS, SEP = 1000, 3, 1, 2


def collator(**kwargs):
    return MLMCollator(mask_id=MASK, vocab_size=VOCAB, special_ids=[0, CLS, SEP, MASK], seed=0, **kwargs)


def batch_of(n, length=128):
    ids = torch.randint(10, VOCAB, (n, length), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids


def test_masking_rates_follow_bert():
    ids = batch_of(400)
    out = collator()(ids, np.arange(400))
    chosen = out["labels"] != IGNORE_INDEX
    n = chosen.sum().item()
    assert abs(n / (400 * 126) - 0.15) < 0.01  # 15% of the non-special tokens
    masked = (out["input_ids"] == MASK) & chosen
    kept = (out["input_ids"] == ids) & chosen
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(kept.sum().item() / n - 0.1) < 0.02  # (a random draw can hit the same id: rare)
    assert torch.equal(out["labels"][chosen], ids[chosen])
    assert torch.equal(out["input_ids"][~chosen], ids[~chosen])  # unchosen tokens untouched


def test_special_tokens_are_never_chosen():
    out = collator(probability=0.9)(batch_of(50), np.arange(50))
    assert (out["labels"][:, 0] == IGNORE_INDEX).all() and (out["labels"][:, -1] == IGNORE_INDEX).all()


def test_a_sample_gets_the_same_mask_in_any_batch():
    ids = batch_of(6)
    together = collator()(ids, np.arange(6))
    alone = collator()(ids[4:5], np.array([4]))
    assert torch.equal(together["input_ids"][4:5], alone["input_ids"])
    other_key = collator()(ids[4:5], np.array([5]))
    assert not torch.equal(other_key["labels"], alone["labels"])


def test_whole_word_masking_masks_all_pieces_of_a_word(shared_data):
    family = FAMILIES["bert"]
    tok = load_tokenizer(BERT_VOCAB, family)
    ids = special_ids(tok, family)
    starts = word_start_table(tok, family)
    lines = [line for line in WIKI.read_text().splitlines() if len(line) > 400][:64]
    encoded = [[ids.bos] + tok.encode(line, add_special_tokens=False).ids[:62] + [ids.eos]
               for line in lines]
    batch = torch.tensor(encoded)
    wwm = MLMCollator(ids.mask, tok.get_vocab_size(), ids.all(), seed=0, word_starts=starts)
    labels = wwm(batch, np.arange(len(lines)))["labels"]
    chosen = labels != IGNORE_INDEX
    is_start = torch.from_numpy(starts)[batch]
    continuation = ~is_start
    assert continuation.sum() > 50  # the text really has multi-piece words
    # a continuation piece is chosen exactly when the piece before it is
    prev_chosen = torch.nn.functional.pad(chosen[:, :-1], (1, 0))
    assert torch.equal(chosen[continuation], prev_chosen[continuation])
    assert abs(chosen.float().mean().item() - 0.15) < 0.04


def test_clm_labels_are_the_inputs():
    ids = batch_of(2)
    out = CLMCollator()(ids, np.arange(2))
    assert torch.equal(out["labels"], ids) and torch.equal(out["input_ids"], ids)
