"""The tokenizer of the ``tiny`` backbone, built in memory: no files, no network.

The tiny backbone is a small random XLM-R used by the smoke demo and the tests. Its tokenizer has to behave like
XLM-R's where the pipeline depends on it (special ids 0-3 = <s> <pad> </s> <unk>, <mask> last, the
``<s> A </s></s> B </s>`` pair layout, only ``input_ids`` and ``attention_mask`` as model inputs, offsets, word ids,
sliding windows), while being small enough that the random embedding table stays tiny.

Vocab, in this order (so ids are the same on every build): the four specials, every word of the toy tasks in every
toy language (``stepstone.toy.vocabulary()``, so toy data never hit <unk>), every printable ASCII character and
its ``##`` continuation (so any ASCII text tokenises, unknown words falling back to characters), then <mask>.
A word with a character outside ASCII (after NFKC) becomes a single <unk>, as WordPiece does.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from stepstone import toy

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0, 1, 2, 3 exactly as XLM-R
MASK_TOKEN = "<mask>"  # the last id, as in XLM-R
MODEL_MAX_LENGTH = 512
# Printable ASCII without whitespace (space, tab, newline are separators, never tokens).
_ASCII = tuple(chr(c) for c in range(33, 127))


def tiny_vocab() -> dict[str, int]:
    """Token -> id, deterministic. Duplicates (e.g. "a", "." are both toy words and characters) keep their first id."""
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *toy.vocabulary(), *_ASCII, *("##" + c for c in _ASCII), MASK_TOKEN):
        vocab.setdefault(token, len(vocab))
    return vocab


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer with XLM-R's special-token layout; ``len(tokenizer)`` is the tiny model's vocab size."""
    vocab = tiny_vocab()
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="<unk>", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    bos, eos = SPECIAL_TOKENS[0], SPECIAL_TOKENS[2]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token=MASK_TOKEN,
        model_max_length=MODEL_MAX_LENGTH, padding_side="right",
        # Like XLM-R: no token_type_ids (its type vocab has one entry), so collation matches real backbones.
        model_input_names=["input_ids", "attention_mask"],
    )
