"""Word-piece alignment for token classification, owned by the task so that training, feature extraction and
prediction read words the same way.

A word's label (and its feature) sits on its *first* sub-token; the other sub-tokens and the special tokens
are ignored (label ``IGNORE``, the index PyTorch's cross-entropy skips), the rule of the BERT paper's NER
experiments and of Hugging Face's token-classification examples. A sentence longer than the model's window is
cut into windows of whole words that overlap by about ``stride`` sub-tokens; each word is *owned* by one window
(the first half of an overlap by the earlier window, the second half by the later), so every word gets exactly
one feature and one prediction, each with context on both sides, and nothing is silently truncated.
"""

from __future__ import annotations

from dataclasses import dataclass

from graftkit.errors import ConfigError

IGNORE = -100


@dataclass
class Window:
    sentence: int            # position of the sentence in the input list
    encoding: dict           # input_ids (+ token_type_ids, attention_mask) of this window, with special tokens
    positions: list[int]     # token position of each owned word's first sub-token
    words: list[int]         # the owned words' indices in the sentence


def check_tokenizer(tokenizer, spec: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"backbone {spec!r}: token classification needs a fast (Rust) tokenizer to map sub-tokens "
                          "to words, and this one is a Python tokenizer; use a backbone with tokenizer.json")


def _encode(tokenizer, words: list[str], max_length: int | None = None) -> tuple[dict, list]:
    kwargs = {"truncation": True, "max_length": max_length} if max_length else {"truncation": False}
    encoded = tokenizer(words, is_split_into_words=True, **kwargs)
    return {k: list(v) for k, v in encoded.items()}, encoded.word_ids()


def _first_positions(word_ids: list) -> dict[int, int]:
    first: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in first:
            first[word] = position
    return first


def _encode_readable(tokenizer, words: list[str]) -> tuple[list[str], dict, list]:
    """The sentence encoded once; words the tokenizer turned into no token at all (a zero-width space, a control
    character) are read as its unknown token and the sentence encoded again, so every word has a first sub-token."""
    encoding, word_ids = _encode(tokenizer, words)
    seen = set(word_ids)
    if len(seen - {None}) < len(words):
        unknown = tokenizer.unk_token or "?"
        words = [w if i in seen else unknown for i, w in enumerate(words)]
        encoding, word_ids = _encode(tokenizer, words)
    return words, encoding, word_ids


def plan(counts: list[int], budget: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(first word, end word, first owned word, end owned word)`` over words of ``counts`` sub-tokens
    each: at most ``budget`` sub-tokens per window (a longer word alone, its tail cut), consecutive windows
    overlapping by at most ``stride`` sub-tokens, each word owned by exactly one window."""
    spans: list[list[int]] = []
    start, n = 0, len(counts)
    while start < n:
        end, used = start, 0
        while end < n and (end == start or used + min(counts[end], budget) <= budget):
            used += min(counts[end], budget)
            end += 1
        spans.append([start, end])
        if end >= n:
            break
        # step back over at most `stride` sub-tokens, leaving room for the next unread word
        room = min(stride, budget - min(counts[end], budget))
        back, overlap = end, 0
        while back - 1 > start and overlap + counts[back - 1] <= room:
            back -= 1
            overlap += counts[back]
        start = back
    # the middle of each overlap: the earlier window owns its first half, the later one the rest
    owned = [0] + [(current[0] + previous[1] + 1) // 2 for previous, current in zip(spans, spans[1:])] + [n]
    return [(a, b, owned[i], owned[i + 1]) for i, (a, b) in enumerate(spans)]


def word_windows(tokenizer, sentences: list[list[str]], max_length: int, stride: int | None = None) -> list[Window]:
    """Every sentence (a list of words) as one window, or several overlapping ones when it is longer than
    ``max_length`` sub-tokens with the special tokens."""
    windows: list[Window] = []
    for s, words in enumerate(sentences):
        words, encoding, word_ids = _encode_readable(tokenizer, [str(w) for w in words])
        if len(encoding["input_ids"]) <= max_length:
            first = _first_positions(word_ids)
            windows.append(Window(s, encoding, [first[w] for w in range(len(words))], list(range(len(words)))))
            continue
        counts = [0] * len(words)
        for word in word_ids:
            if word is not None:
                counts[word] += 1
        budget = max_length - sum(1 for word in word_ids if word is None)
        if budget < 1:
            raise ConfigError(f"max_length {max_length} leaves no room for words after the special tokens")
        overlap = stride if stride is not None else max(1, budget // 4)
        for begin, end, own_begin, own_end in plan(counts, budget, overlap):
            part, part_ids = _encode(tokenizer, words[begin:end], max_length=max_length)
            first = _first_positions(part_ids)
            mine = list(range(own_begin, own_end))
            windows.append(Window(s, part, [first[w - begin] for w in mine], mine))
    return windows
