"""CLIP's byte-level BPE tokenizer, written for vop.

The vocabulary is CLIP's (49,408 ids: 256 byte symbols, the same 256 with the end-of-word
marker ``</w>``, 48,894 merges, then ``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407).
The merge list ships as package data (``bpe_simple_vocab_16e6.txt.gz``, from the MIT-licensed
open_clip wheel). Text is cleaned the way CLIP cleaned its training captions: ``ftfy.fix_text``,
HTML unescaping (twice, for doubly escaped scraped text), whitespace collapsed, lower case.

``tokenize(texts)`` returns ``[N, context_length]`` ids: SOT, the word pieces, EOT, zero
padding. The text encoder reads out the EOT position (the largest id in a row), so truncation
always keeps EOT as the last token.
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
from importlib import resources

import torch

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
SOT_ID = 49406
EOT_ID = 49407
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
CONTEXT_LENGTH = 77  # CLIP's documented text context; a model tokenizes to its own (model.context_length)
NUM_MERGES = 49408 - 2 * 256 - 2  # the vocabulary is cut to 49,408 ids; later merges are unused

# Words are split on CLIP's pattern: the special tokens, English contractions, letter runs,
# single digits, and runs of other non-space symbols.
_WORD_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def bytes_to_unicode() -> dict[int, str]:
    """A reversible map from the 256 byte values to printable unicode characters.

    BPE works on strings; mapping every byte to a visible character (printable latin bytes map
    to themselves, the rest to code points from 256 on) lets merges operate on any UTF-8 input
    without whitespace or control characters inside the symbols.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clean_text(text: str) -> str:
    """CLIP's caption cleaning: fix mojibake, unescape HTML, collapse whitespace, lower case."""
    import ftfy
    import regex

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return regex.sub(r"\s+", " ", text).strip().lower()


def read_merges() -> list[tuple[str, str]]:
    """The merge rules, in priority order, from the packaged vocabulary file."""
    raw = resources.files("vop.backbone").joinpath(VOCAB_FILE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    # line 0 is a version header; the first NUM_MERGES rules make up the vocabulary
    return [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]


TEXT_CACHE_SIZE = 100_000


class Tokenizer:
    """Byte-level BPE with CLIP's vocabulary; BPE results are cached per word."""

    def __init__(self, merges: list[tuple[str, str]] | None = None):
        import regex

        merges = read_merges() if merges is None else merges
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.pattern = regex.compile(_WORD_PATTERN, regex.IGNORECASE)
        self.cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}
        self.text_cache: dict[str, tuple[int, ...]] = {}  # whole texts: training reads each caption many times
        if self.encoder[SOT] != SOT_ID or self.encoder[EOT] != EOT_ID:
            raise ValueError(f"vocabulary has {len(vocab)} entries; expected CLIP's 49,408")

    def __len__(self) -> int:
        return len(self.encoder)

    def bpe(self, word: str) -> list[str]:
        """Split one byte-mapped word into vocabulary pieces (the last piece ends in ``</w>``)."""
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            # merge the adjacent pair with the lowest rank, everywhere it occurs
            best = min(itertools.pairwise(parts), key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Cleaned text -> token ids, without SOT/EOT."""
        cached = self.text_cache.get(text)
        if cached is not None:
            return list(cached)
        ids = []
        for word in self.pattern.findall(clean_text(text)):
            mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(mapped))
        if len(self.text_cache) >= TEXT_CACHE_SIZE:  # bounded: a served index sees endless new queries
            self.text_cache.clear()
        self.text_cache[text] = tuple(ids)
        return ids

    def decode(self, ids: list[int]) -> str:
        """Token ids -> text (cleaned, lower case). Stops at EOT, so a padded row decodes too."""
        ids = [int(i) for i in ids]
        if EOT_ID in ids:
            ids = ids[: ids.index(EOT_ID)]
        text = "".join(self.decoder[i] for i in ids if i != SOT_ID)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ").strip()


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The shared tokenizer (built on first use, since reading the merges file is not free)."""
    return Tokenizer()


def tokenize(texts: str | list[str], context_length: int = CONTEXT_LENGTH, truncate: bool = True) -> torch.Tensor:
    """Texts -> ``LongTensor [N, context_length]``: SOT, pieces, EOT, then zeros.

    A text longer than ``context_length`` is cut so that EOT stays last (``truncate=True``), or
    raises ``ValueError`` naming the text (``truncate=False``).
    """
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError(f"context_length must be >= 2 (SOT and EOT), got {context_length}")
    tok = get_tokenizer()
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [SOT_ID, *tok.encode(text), EOT_ID]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(
                    f"text {row} has {len(ids)} tokens (with SOT/EOT), more than context_length="
                    f"{context_length}: {text[:80]!r}; pass truncate=True to cut it"
                )
            ids = ids[: context_length - 1] + [EOT_ID]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


__all__ = ["EOT_ID", "SOT_ID", "Tokenizer", "bytes_to_unicode", "clean_text", "get_tokenizer", "tokenize"]
