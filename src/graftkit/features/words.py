"""Word features for token classification: the backbone's hidden state at each word's first sub-token, in
windows that the task's alignment plans (``tasks.alignment``), batched by window length under inference mode.

The feature cache keeps one row per *word*: the key of word ``i`` is the sentence's key (its words, the window
settings) plus ``i``, so a sentence seen before costs nothing and the cache's layout stays one vector per key.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from tqdm.auto import tqdm

from graftkit.errors import ConfigError
from graftkit.tasks.alignment import check_tokenizer, word_windows
from graftkit.tasks.ragged import ragged


def check_word_backbone(backbone) -> None:
    if not callable(getattr(backbone, "token_states", None)) or getattr(backbone, "tokenizer", None) is None:
        raise ConfigError(f"backbone {backbone.source.spec!r} ({backbone.family}) gives no per-token features; token "
                          "classification needs a text encoder (--backbone all-MiniLM-L6-v2, a BERT-like model)")
    check_tokenizer(backbone.tokenizer, backbone.source.spec)


def window_batches(backbone, windows, batch_size: int):
    """``(windows of the batch, padded tensors)``, longest windows first so a batch pads little."""
    order = sorted(range(len(windows)), key=lambda w: -len(windows[w].encoding["input_ids"]))
    keys = [k for k in windows[0].encoding if k in ("input_ids", "attention_mask", "token_type_ids")] if windows else []
    encoded = {k: [w.encoding[k] for w in windows] for k in keys}
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield [windows[r] for r in rows], backbone.collate(encoded, rows)


def extract_word_features(backbone, sentences: list[list[str]], *, batch_size: int = 32,
                          progress: bool = True) -> np.ndarray:
    """Ragged ``(words, hidden_size)`` features of every sentence, in order."""
    check_word_backbone(backbone)
    windows = word_windows(backbone.tokenizer, sentences, backbone.max_length)
    out = [np.empty((len(words), backbone.hidden_size), dtype=np.float32) for words in sentences]
    bar = tqdm(total=len(windows), desc=f"embedding words ({backbone.source.spec.rsplit('/', 1)[-1]})",
               unit="window", disable=not progress or None, leave=False)
    with torch.inference_mode(), bar:
        for batch_windows, batch in window_batches(backbone, windows, batch_size):
            states = backbone.token_states(batch).to("cpu", torch.float32).numpy()
            for b, window in enumerate(batch_windows):
                out[window.sentence][window.words] = states[b, window.positions]
            bar.update(len(batch_windows))
    return ragged(out)


def sentence_key(words: list[str], backbone) -> str:
    identity = json.dumps({"words": list(words), "max_length": backbone.max_length}, ensure_ascii=False)
    return hashlib.sha256(b"words\x00" + identity.encode("utf-8", "surrogatepass")).hexdigest()


def cached_word_features(backbone, sentences: list[list[str]], cache, *, batch_size: int = 32,
                         progress: bool = True) -> tuple[np.ndarray, int]:
    """Word features through ``cache`` (a ``FeatureCache``); returns (ragged features, words embedded)."""
    check_word_backbone(backbone)
    owners = [(s, i) for s, words in enumerate(sentences) for i in range(len(words))]
    keys = [f"{key}:{i}" for words in sentences for key in [sentence_key(words, backbone)] for i in range(len(words))]

    def compute(positions):
        needed = sorted({owners[p][0] for p in positions})
        computed = extract_word_features(backbone, [sentences[s] for s in needed], batch_size=batch_size,
                                         progress=progress)
        where = {s: k for k, s in enumerate(needed)}
        return np.stack([computed[where[owners[p][0]]][owners[p][1]] for p in positions])

    stacked, embedded = cache.lookup(backbone.fingerprint(), keys, compute)
    bounds = np.cumsum([0, *(len(words) for words in sentences)])
    return ragged(stacked[a:b] for a, b in zip(bounds[:-1], bounds[1:])), embedded

