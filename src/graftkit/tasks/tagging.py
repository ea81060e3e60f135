"""Tag sequences: schemes (IOB1, IOB2, BIOES / BILOU) read into IOB2, entity spans <-> word tags, and words with
their character offsets. Pure functions on lists; the token-classification task uses them.

IOB2 is the one internal scheme (every entity starts with ``B-``), the one seqeval's strict mode scores.
"""

from __future__ import annotations

import re
from collections import Counter

from graftkit.errors import DataError
from graftkit.scoring.entities import OUTSIDE, entities, split_tag  # noqa: F401  (re-exported)

SCHEMES = ("iob1", "iob2", "bioes")
# words for text given as one string: runs of word characters, or single other non-space characters
WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]", re.UNICODE)


def check_tags(tags, where: str) -> None:
    for tag in tags:
        if not isinstance(tag, str):
            raise DataError(f"{where}: tag {tag!r} is not a string; tags are O or PREFIX-TYPE such as B-PER")
        prefix, kind = split_tag(tag)
        if prefix != OUTSIDE and (prefix not in ("B", "I", "E", "S", "L", "U") or not kind):
            raise DataError(f"{where}: tag {tag!r} is not O or B-/I-/E-/S- followed by an entity type (e.g. B-PER); "
                            "fix the tag column")


def detect_scheme(sequences) -> str:
    """The scheme of a whole tag column: BIOES when any E-/S-/L-/U- tag occurs; IOB1 when entities mostly
    start with ``I-`` (IOB1 writes ``B-`` only between two adjacent entities of one type); else IOB2."""
    prefixes = Counter()
    starts_with_inside = 0
    for tags in sequences:
        previous = None
        for tag in tags:
            prefix, kind = split_tag(tag)
            prefixes[prefix] += 1
            if prefix == "I" and previous != kind:
                starts_with_inside += 1
            previous = kind
    if prefixes["E"] or prefixes["S"] or prefixes["L"] or prefixes["U"]:
        return "bioes"
    return "iob1" if starts_with_inside > prefixes["B"] else "iob2"


def to_iob2(tags: list[str], scheme: str) -> tuple[list[str], int]:
    """``tags`` in IOB2 and how many were repaired: an ``I-X`` that does not continue an ``X`` entity starts one
    (``B-X``) — the rule of IOB1, and the repair of an IOB2 violation (conlleval reads it the same way)."""
    out, repaired, previous = [], 0, None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == OUTSIDE:
            out.append(OUTSIDE)
        elif prefix in ("B", "S", "U"):
            out.append(f"B-{kind}")
        else:  # I, E, L continue the entity of their type, or start one
            if previous != kind:
                repaired += scheme == "iob2"
                out.append(f"B-{kind}")
            else:
                out.append(f"I-{kind}")
        previous = None if prefix in ("E", "S", "L", "U") and scheme == "bioes" else kind
    return out, repaired


def words_of(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a text given as one string, with their ``(start, end)`` character offsets."""
    matches = list(WORD.finditer(text))
    return [m.group() for m in matches], [(m.start(), m.end()) for m in matches]


def joined(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Pre-split words as one text (joined by spaces), with each word's character offsets in it."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), offsets


def spans_to_tags(spans, offsets: list[tuple[int, int]], where: str) -> list[str]:
    """Character spans ``[{start, end, label}]`` (or ``[start, end, label]`` lists) as IOB2 word tags: a word
    belongs to a span it overlaps. A span covering no word, or two spans over one word, is a DataError."""
    tags = [OUTSIDE] * len(offsets)
    for span in sorted((_span(s, where) for s in spans), key=lambda s: s[0]):
        start, end, label = span
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        if not inside:
            raise DataError(f"{where}: the span {start}-{end} ({label!r}) covers no word of the text; check its "
                            "character offsets (end is exclusive)")
        if any(tags[i] != OUTSIDE for i in inside):
            raise DataError(f"{where}: the span {start}-{end} ({label!r}) overlaps another span; nested or "
                            "overlapping entities are not supported: keep one of them")
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return tags


def _span(span, where: str) -> tuple[int, int, str]:
    try:
        if isinstance(span, dict):
            start, end, label = span["start"], span["end"], span["label"]
        else:
            start, end, label = span
        start, end, label = int(start), int(end), str(label)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: entity span {span!r} is not {{start, end, label}} or [start, end, label]; fix "
                        "the span column") from None
    if not 0 <= start < end or not label or "-" in label and label.split("-", 1)[0] in ("B", "I"):
        raise DataError(f"{where}: entity span {span!r} needs 0 <= start < end and a type name (such as PER, not "
                        "B-PER)")
    return start, end, label
