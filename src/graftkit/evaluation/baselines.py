"""The cheap classical baseline of each modality, and the transfer gain of a pretrained model over it.

A pretrained backbone earns its cost only if it beats what a classical pipeline does on the same split
(Kornblith et al. 2019 and Raghu et al. 2019 show transfer is not always a win; Wang et al. 2019, "Characterizing
and Avoiding Negative Transfer", name the case where it hurts). The baselines:

- text: word (1-2)-gram + character (2-5)-gram TF-IDF (sublinear tf) and logistic regression, the strong
  linear text baseline of Wang & Manning 2012 ("Baselines and Bigrams");
- image: the raw pixels, resized to 32 x 32 RGB, standardised, and logistic regression (the pixel baseline of
  Coates, Ng & Lee 2011);
- audio: log-mel filterbank statistics (40 HTK mel bands of a 25 ms / 10 ms short-time power spectrum at
  16 kHz, mean and standard deviation over time) and logistic regression, the classic clip-level baseline
  of acoustic scene and sound classification (e.g. the DCASE baselines; Davis & Mermelstein 1980 for the
  mel filterbank).

The estimator on those features is the task's (``tasks/classical.py``): logistic regression for classes, one-vs-rest
logistic regression for multi-label, ridge for regression; its penalty is chosen by cross-validation on the
training rows (at most ``max_cv_rows`` for the logistic searches), so the baseline is tuned as fairly as the probe.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from sklearn.preprocessing import StandardScaler

from graftkit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DESCRIPTIONS = {
    "text": "TF-IDF (word 1-2-grams + char 2-5-grams) + logistic regression",
    "image": "raw pixels (32x32 RGB, standardised) + logistic regression",
    "audio": "log-mel statistics (40 bands, mean + std over time) + logistic regression",
}

# -- features ---------------------------------------------------------------------------------------------


def _tqdm(iterable, total: int, what: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=what, unit="item", disable=not progress, leave=False)


def pixel_features(items, *, size: int = 32, grey: bool = False, where=lambda i: f"item {i + 1}",
                   progress: bool = False) -> np.ndarray:
    """Each image resized to ``size`` x ``size`` (bilinear, after PIL's antialiasing reduce), as flat
    floats in [0, 1]: RGB (``3 * size**2`` values) or grey (``size**2``)."""
    from PIL import Image

    from graftkit.data.media import load_image

    rows = []
    for i, item in enumerate(_tqdm(items, len(items), "pixels", progress)):
        image = load_image(item, where(i))
        image = image.convert("L") if grey else image
        rows.append(np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=2.0), dtype=np.float32).ravel())
    return np.stack(rows) / 255.0


def mel_filterbank(n_mels: int, n_fft: int, sampling_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters equally spaced on the HTK mel scale
    (``mel = 2595 log10(1 + f / 700)``), each peaking at 1."""
    fmax = fmax or sampling_rate / 2

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sampling_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel_statistics(samples: np.ndarray, *, sampling_rate: int = 16000, n_mels: int = 40,
                       window_s: float = 0.025, hop_s: float = 0.010) -> np.ndarray:
    """Mean and standard deviation over time of the log-mel spectrogram of one clip: ``2 * n_mels`` values."""
    window = int(round(window_s * sampling_rate))
    hop = int(round(hop_s * sampling_rate))
    n_fft = 1 << (window - 1).bit_length()
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < window:
        samples = np.pad(samples, (0, window - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, window)[::hop] * np.hanning(window)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    log_mel = np.log(power @ mel_filterbank(n_mels, n_fft, sampling_rate).T + 1e-10)
    return np.concatenate([log_mel.mean(axis=0), log_mel.std(axis=0)]).astype(np.float32)


def audio_features(items, *, sampling_rate: int = 16000, n_mels: int = 40, where=lambda i: f"item {i + 1}",
                   progress: bool = False) -> np.ndarray:
    from graftkit.data.media import load_audio

    return np.stack([log_mel_statistics(load_audio(item, sampling_rate, where(i)), sampling_rate=sampling_rate,
                                        n_mels=n_mels)
                     for i, item in enumerate(_tqdm(items, len(items), "log-mel", progress))])


def text_vectorizer():
    """Word (1-2)-gram and character (2-5)-gram TF-IDF with sublinear tf (Wang & Manning 2012)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                      TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1))


# -- the baseline model -----------------------------------------------------------------------------------


class ClassicalBaseline:
    """The modality's classical pipeline: ``fit(items, y)`` then ``raw(items)`` (the task's raw outputs).

    ``items`` are what ``Table.items()`` returns (texts, or media paths / bytes). The estimator is the task's
    (``Task.fit_classical``: logistic regression, one-vs-rest logistic regression or ridge), its penalty chosen
    by CV on the training rows; ``task`` defaults to single-label classification over the ids in ``y``.
    """

    def __init__(self, modality: str, *, task=None, C: float | None = None, cv_folds: int = 3, max_cv_rows: int = 3000,
                 max_iter: int = 2000, seed: int = 0, progress: bool = False):
        if modality not in DESCRIPTIONS:
            raise ConfigError(f"no classical baseline for modality {modality!r}; known: {', '.join(DESCRIPTIONS)}")
        if C is not None and not C > 0:
            raise ConfigError(f"baseline C must be > 0; got {C!r}")
        self.modality, self.task, self.C, self.cv_folds = modality, task, C, cv_folds
        self.max_cv_rows, self.max_iter, self.seed, self.progress = max_cv_rows, max_iter, seed, progress

    @property
    def description(self) -> str:
        featurizer = self.task.classical_featurizer() if self.task is not None else None
        if featurizer is not None:
            return featurizer.description
        return DESCRIPTIONS[self.modality].replace("logistic regression", self.estimator_name)

    @property
    def estimator_name(self) -> str:
        """The task's estimator, once fitted (``Task.fit_classical``)."""
        return getattr(self, "info_", {}).get("estimator", "logistic regression")

    def _features(self, items, where, fitting: bool):
        if self.featurizer_ is not None:  # the task's own (per-word features for token classification)
            return self.featurizer_.fit_transform(items) if fitting else self.featurizer_.transform(items)
        if self.modality == "text":
            texts = ["" if t is None else str(t) for t in items]
            return self.vectorizer_.fit_transform(texts) if fitting else self.vectorizer_.transform(texts)
        raw = (pixel_features(items, where=where, progress=self.progress) if self.modality == "image"
               else audio_features(items, where=where, progress=self.progress))
        return self.scaler_.fit_transform(raw) if fitting else self.scaler_.transform(raw)

    def fit(self, items, y, where=lambda i: f"item {i + 1}") -> ClassicalBaseline:
        if self.task is None:
            from graftkit.tasks import Classification

            self.task = Classification(classes=tuple(str(i) for i in range(int(np.max(y)) + 1)))
        started = time.perf_counter()
        self.featurizer_ = self.task.classical_featurizer()
        self.vectorizer_ = text_vectorizer() if self.modality == "text" else None
        self.scaler_ = None if self.modality == "text" else StandardScaler()
        X = self._features(items, where, fitting=True)
        options = {"cv_folds": self.cv_folds, "max_cv_rows": self.max_cv_rows, "max_iter": self.max_iter}
        self.model_ = self.task.fit_classical(X, y, seed=self.seed, **({"C": self.C} if self.C else {}), **options)
        self.info_ = self.model_.info
        self.C_ = self.info_.get("C", self.info_.get("alpha"))
        self.seconds_ = round(time.perf_counter() - started, 3)
        logger.info("baseline %s: %s, fitted on %d rows in %.1fs", self.description, penalty_text(self.info_), len(y),
                    self.seconds_)
        return self

    def raw(self, items, where=lambda i: f"item {i + 1}") -> np.ndarray:
        return self.model_.raw(self._features(items, where, fitting=False))

    def outputs(self, items, where=lambda i: f"item {i + 1}") -> np.ndarray:
        """The task's outputs (probabilities, or values) of ``items``."""
        return self.task.outputs(self.raw(items, where), None)

    def predict_proba(self, items, where=lambda i: f"item {i + 1}") -> np.ndarray:
        """Probabilities over the label ids seen in ``fit`` (classes absent from training get 0)."""
        return self.task.probabilities(self.outputs(items, where))


def penalty_text(info: dict) -> str:
    if "alpha" in info:
        return f"alpha={info['alpha']:g}"
    C = info.get("C")
    if isinstance(C, list):
        return "C per label=" + ", ".join("-" if c is None else f"{c:g}" for c in C)
    return f"C={C:g}"


def run_baseline(train, test, task, *, seed: int = 0, progress: bool = False, **options) -> dict:
    """Fit the classical baseline of ``train``'s modality for ``task`` and score it on ``test`` (both ``Table``s).
    Returns the task's summary metrics and the baseline's outputs on the test rows (``"outputs"``)."""
    if train.modality != test.modality:
        raise DataError(f"baseline: train holds {train.modality} but test holds {test.modality}; give both splits "
                        "of the same data")
    y_train, y_test = task.encode(train), task.encode(test)
    baseline = ClassicalBaseline(train.modality, task=task, seed=seed, progress=progress, **options)
    baseline.fit(train.items(), y_train, where=lambda i: train.where(i, train.input_column))
    outputs = baseline.outputs(test.items(), where=lambda i: test.where(i, test.input_column))
    summary = task.summary(y_test, outputs)
    return {"name": baseline.description, "modality": train.modality, "penalty": penalty_text(baseline.info_),
            "C": baseline.C_ if not isinstance(baseline.C_, list) else None, "n_train": len(train),
            "n_test": len(test), "seconds": baseline.seconds_, **{k: v for k, v in summary.items() if k != "n"},
            "outputs": outputs}


def transfer_gain(task, y_true, model_outputs, baseline_outputs, *, model_calibration: dict | None = None,
                  model_name: str = "pretrained model", baseline_name: str = "classical baseline",
                  n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Gain in the task's primary metric of the model over the baseline on the same rows, with a paired bootstrap
    95% interval (Efron & Tibshirani 1993), and a negative-transfer warning when the pretrained start is not
    better (Wang et al. 2019) or a caution when the interval includes zero. Where the metric is a mean of
    per-row scores (accuracy) the bootstrap averages them; otherwise (F1, R²) it recomputes the metric per draw."""
    y_true = np.asarray(y_true)
    a, b = np.asarray(model_outputs), np.asarray(baseline_outputs)
    if not len(y_true) == len(a) == len(b) or len(y_true) == 0:
        raise DataError(f"transfer gain: {len(y_true)} targets, {len(a)} model and {len(b)} baseline predictions; "
                        "score both on the same non-empty test rows")
    metric = task.primary_metric
    rng = np.random.default_rng(seed)
    draws_index = rng.integers(0, len(y_true), size=(n_bootstrap, len(y_true)))
    draws = (task.resampled_primary(y_true, a, draws_index, model_calibration)
             - task.resampled_primary(y_true, b, draws_index))
    model_score, baseline_score = task.primary(y_true, a, model_calibration), task.primary(y_true, b)
    low, high = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
    gain = model_score - baseline_score
    if not task.greater_is_better:
        gain, low, high = -gain, -high, -low
    result = {"metric": metric, "model": model_score, "baseline": baseline_score, "gain": gain,
              "ci95": [low, high], "n": int(len(y_true)), "model_name": model_name, "baseline_name": baseline_name,
              "negative_transfer": bool(gain <= 0), "warning": None}
    if gain < 0:
        result["warning"] = (f"negative transfer: {model_name} ({metric} {model_score:.4f}) is worse than "
                             f"{baseline_name} ({baseline_score:.4f}) on the same {len(y_true)} test rows; use the "
                             "baseline, or try another backbone or strategy")
    elif gain == 0:
        result["warning"] = (f"no transfer gain: {model_name} is not better than {baseline_name} (both "
                             f"{model_score:.4f} {metric} on the same {len(y_true)} test rows); the cheaper baseline "
                             "does as well here")
    elif low <= 0:
        result["warning"] = (f"the gain of {model_name} over {baseline_name} (+{gain:.4f}) is within noise "
                             f"(95% interval {low:+.4f} to {high:+.4f}); more test data would settle it")
    return result
