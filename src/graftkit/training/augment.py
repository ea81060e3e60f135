"""Training-time data augmentation per modality, with numpy and PIL only (no torchvision / torchaudio).

Each augmenter maps one *decoded* input (what ``Backbone.load_item`` returns: a PIL image, a string, a mono
float32 waveform) to another of the same kind, before the backbone's own processor, so every family of a
modality is augmented alike and the processor's resizing / normalisation / tokenisation stay the model's own.
Augmentation runs on training batches only (``training.data.BackboneCollator`` augments the rows of a
training ``Examples``; validation, evaluation, prediction and feature extraction never pass through it).

Randomness is a pure function of ``(seed, epoch, position)``: every example draws from its own
``numpy.random.Generator`` seeded by the run's seed, the 0-based epoch and the example's position in the
training split. A run resumed from a checkpoint therefore augments exactly as the uninterrupted run did (no
RNG state to save), each data-parallel process draws the same augmentation for an example whichever process
it lands on, and the Trainer's own RNG streams (shuffling, dropout) are left untouched.

Defaults are deliberately milder than from-scratch training recipes: a pretrained backbone is already
invariant to much of what strong augmentation teaches, and with small labelled sets heavy distortion costs
more signal than it adds.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

MODALITIES = ("image", "text", "audio")


def example_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The generator of one example in one epoch (independent streams via numpy's ``SeedSequence``)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(position), 0x67_6B])  # "gk": graftkit


class Augmenter(ABC):
    """A named transform of one decoded input: ``augmenter(item, rng) -> item`` (each subclass defines it)."""

    name = ""

    @abstractmethod
    def __call__(self, item, rng: np.random.Generator): ...

    def describe(self) -> dict:
        return {"name": self.name, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}}


class Compose(Augmenter):
    """Several augmenters in order, each applied with its own probability ``p`` (drawn from the same rng)."""

    name = "compose"

    def __init__(self, steps: list[tuple[Augmenter, float]]):
        self.steps = steps

    def __call__(self, item, rng):
        for step, p in self.steps:
            if rng.random() < p:
                item = step(item, rng)
        return item

    def describe(self) -> dict:
        return {"steps": [{**step.describe(), "p": p} for step, p in self.steps]}


# -- images (PIL) ------------------------------------------------------------------------------------------
class RandomResizedCrop(Augmenter):
    """A random crop of ``scale`` × the area and aspect ratio in ``ratio``, resized back to the input size.

    Inception-style cropping (Szegedy et al. 2015, "Going Deeper with Convolutions"; torchvision's
    ``RandomResizedCrop``) uses scale (0.08, 1) to train ImageNet from scratch; here the default is (0.5, 1):
    transfer sets are small and often fine-grained, and an 8 % crop would often drop the object that carries
    the label. The crop is resized back to the original size so the backbone's processor (resize, centre crop)
    runs as it does at prediction time. Falls back to the centre crop after 10 failed draws, as torchvision does.
    """

    name = "random_resized_crop"

    def __init__(self, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def box(self, width: int, height: int, rng) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                return left, top, left + w, top + h
        aspect = width / height  # centre crop at the nearest allowed aspect ratio (torchvision's fallback)
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        w, h = max(1, min(w, width)), max(1, min(h, height))
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image, rng):
        from PIL import Image

        return image.resize(image.size, Image.Resampling.BICUBIC, box=self.box(*image.size, rng))


class HorizontalFlip(Augmenter):
    """Mirror left-right (not for inputs whose meaning depends on handedness: text in images, digits, arrows)."""

    name = "horizontal_flip"

    def __call__(self, image, rng):
        from PIL import Image

        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


class ColorJitter(Augmenter):
    """Brightness, contrast and saturation factors drawn from ``[1 - x, 1 + x]``, applied in random order (as
    torchvision's ``ColorJitter``); ``hue`` shifts the hue by up to ± that fraction of the circle. Defaults
    0.2 / 0.2 / 0.2 / 0 are half the 0.4 of timm's ImageNet recipe; hue is off because colour is often the
    label in transfer data sets (flowers, birds, lesions)."""

    name = "color_jitter"

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.0):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image, rng):
        from PIL import Image, ImageEnhance

        image = image.convert("RGB")
        enhancers = [(ImageEnhance.Brightness, self.brightness), (ImageEnhance.Contrast, self.contrast),
                     (ImageEnhance.Color, self.saturation)]
        for index in rng.permutation(len(enhancers)):
            enhancer, strength = enhancers[index]
            if strength > 0:
                image = enhancer(image).enhance(float(rng.uniform(max(0.0, 1 - strength), 1 + strength)))
        if self.hue > 0:
            h, s, v = image.convert("HSV").split()
            shift = int(round(rng.uniform(-self.hue, self.hue) * 255))
            h = Image.fromarray(((np.asarray(h, dtype=np.int16) + shift) % 256).astype(np.uint8), "L")
            image = Image.merge("HSV", (h, s, v)).convert("RGB")
        return image


def image_augmenter() -> Compose:
    return Compose([(RandomResizedCrop(), 1.0), (HorizontalFlip(), 0.5), (ColorJitter(), 0.8)])


# -- text (raw strings) -----------------------------------------------------------------------------------
class WordDropout(Augmenter):
    """Deletes each whitespace-separated word with probability ``p`` (word dropout: Iyyer et al. 2015, "Deep
    Unordered Composition Rivals Syntactic Methods"; EDA's random deletion, Wei & Zou 2019, p = 0.1), keeping at
    least one word. It runs on the raw text, before the tokenizer adds its special tokens ([CLS], [SEP], <s>),
    so those are never dropped and every backbone's own tokenisation applies; text without whitespace
    (Chinese, Japanese) passes unchanged."""

    name = "word_dropout"

    def __init__(self, p: float = 0.1):
        self.p = p

    def __call__(self, text, rng):
        words = str(text).split()
        if len(words) < 2:
            return text
        keep = rng.random(len(words)) >= self.p
        if not keep.any():
            keep[rng.integers(len(words))] = True
        return " ".join(w for w, k in zip(words, keep) if k)


def text_augmenter() -> Compose:
    return Compose([(WordDropout(), 1.0)])


# -- audio (mono float32 waveforms) -----------------------------------------------------------------------
def _limit(samples: np.ndarray, peak: float) -> np.ndarray:
    """Keeps an augmented clip within the input's range (at least [-1, 1], the range of decoded PCM)."""
    return np.clip(samples, -peak, peak).astype(np.float32, copy=False)


def _peak(samples: np.ndarray) -> float:
    return max(1.0, float(np.abs(samples).max(initial=0.0)))


class GaussianNoise(Augmenter):
    """White noise at a signal-to-noise ratio drawn uniformly from ``snr_db`` (as audiomentations'
    ``AddGaussianSNR``); (10, 40) dB is audible but keeps speech and tones intelligible."""

    name = "gaussian_noise"

    def __init__(self, snr_db=(10.0, 40.0)):
        self.snr_db = tuple(snr_db)

    def __call__(self, samples, rng):
        power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
        if power == 0.0:
            return samples
        snr = rng.uniform(*self.snr_db)
        noise = rng.standard_normal(samples.shape) * math.sqrt(power / 10 ** (snr / 10))
        return _limit(samples + noise, _peak(samples))


class Gain(Augmenter):
    """Loudness change by a gain in dB drawn from ``gain_db``; a boost is capped where the peak would clip."""

    name = "gain"

    def __init__(self, gain_db=(-6.0, 6.0)):
        self.gain_db = tuple(gain_db)

    def __call__(self, samples, rng):
        gain = rng.uniform(*self.gain_db)
        peak = float(np.abs(samples).max(initial=0.0))
        if peak > 0:
            gain = min(gain, 20 * math.log10(_peak(samples) / peak))
        return (samples * 10 ** (gain / 20)).astype(np.float32)


class TimeShift(Augmenter):
    """Shifts the clip by up to ``fraction`` of its length either way: circularly (``rollover``, the default:
    nothing is lost, suits clips with silence around the event) or with zeros filling the gap."""

    name = "time_shift"

    def __init__(self, fraction: float = 0.1, rollover: bool = True):
        self.fraction, self.rollover = fraction, rollover

    def __call__(self, samples, rng):
        most = int(len(samples) * self.fraction)
        shift = int(rng.integers(-most, most + 1)) if most else 0
        if not shift:
            return samples
        if self.rollover:
            return np.roll(samples, shift)
        out = np.zeros_like(samples)
        if shift > 0:
            out[shift:] = samples[:-shift]
        else:
            out[:shift] = samples[-shift:]
        return out


class TimeMask(Augmenter):
    """SpecAugment's time masking (Park et al. 2019, arXiv:1904.08779) on the waveform: ``masks`` stretches
    of up to ``fraction`` of the clip each are silenced. The size bound is relative, as in Park et al. 2020
    ("SpecAugment on large scale datasets", adaptive masking p_S = 0.05), so short clips are not wiped out."""

    name = "time_mask"

    def __init__(self, masks: int = 2, fraction: float = 0.05):
        self.masks, self.fraction = masks, fraction

    def __call__(self, samples, rng):
        samples = samples.copy()
        most = int(len(samples) * self.fraction)
        for _ in range(self.masks):
            width = int(rng.integers(0, most + 1)) if most else 0
            start = int(rng.integers(0, len(samples) - width + 1))
            samples[start:start + width] = 0.0
        return samples


def _mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _hz(mel):
    return 700.0 * (10 ** (np.asarray(mel) / 2595.0) - 1.0)


class FrequencyMask(Augmenter):
    """SpecAugment's frequency masking (Park et al. 2019) as a band-stop on the waveform: one band of up to
    ``fraction`` of the mel scale (up to the Nyquist frequency) is removed from the clip's spectrum (FFT, zero
    the band's bins, inverse FFT).

    Why on the waveform rather than on a spectrogram: the wav2vec 2.0 family reads raw samples and has no
    spectrogram to mask, and Whisper computes its log-mel from this same waveform, where a removed band becomes
    a band of mel bins at the log floor, which is what masking a log-mel band does. One place serves every audio
    family, needs no knowledge of a processor's padding or layout, and the processor's normalisation sees the
    augmented clip as it would any real one. Park et al. mask up to F = 27 of 80 mel bins from scratch; the
    default of 15 % (about 12 of 80) is milder, for fine-tuning on small sets."""

    name = "frequency_mask"

    def __init__(self, sampling_rate: int = 16000, fraction: float = 0.15):
        self.sampling_rate, self.fraction = int(sampling_rate), fraction

    def __call__(self, samples, rng):
        if len(samples) < 4:
            return samples
        top = float(_mel(self.sampling_rate / 2))
        width = rng.uniform(0, self.fraction) * top
        start = rng.uniform(0, top - width)
        low, high = _hz([start, start + width])
        spectrum = np.fft.rfft(samples.astype(np.float64))
        frequencies = np.fft.rfftfreq(len(samples), d=1.0 / self.sampling_rate)
        spectrum[(frequencies >= low) & (frequencies < high)] = 0.0
        return _limit(np.fft.irfft(spectrum, n=len(samples)), _peak(samples))


def audio_augmenter(sampling_rate: int = 16000) -> Compose:
    return Compose([(Gain(), 0.5), (TimeShift(), 0.5), (GaussianNoise(), 0.5), (FrequencyMask(sampling_rate), 0.5),
                    (TimeMask(), 0.5)])


# -- per backbone ------------------------------------------------------------------------------------------
class ExampleAugmenter:
    """A modality's augmenter with the run's seed: ``augment(decoded, epoch, position)``."""

    def __init__(self, modality: str, transform: Compose, seed: int):
        self.modality, self.transform, self.seed = modality, transform, int(seed)

    def __call__(self, decoded, epoch: int, position: int):
        return self.transform(decoded, example_rng(self.seed, epoch, position))

    def describe(self) -> dict:
        """What the manifest records: the modality and each step with its settings and probability."""
        return {"modality": self.modality, "per_example_seed": "(seed, epoch, position in the training split)",
                **self.transform.describe()}


def augmenter_for(backbone, seed: int) -> ExampleAugmenter | None:
    """The default augmenter of ``backbone``'s modality, or None where there is none (an unknown modality)."""
    modality = getattr(backbone, "modality", "")
    if modality == "image":
        return ExampleAugmenter(modality, image_augmenter(), seed)
    if modality == "text":
        return ExampleAugmenter(modality, text_augmenter(), seed)
    if modality == "audio":
        return ExampleAugmenter(modality, audio_augmenter(int(getattr(backbone, "sampling_rate", 16000))), seed)
    return None
