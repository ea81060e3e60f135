"""Bad inputs: every one ends in exit code 2 and one line ``graftkit: error: ...`` that names the file /
row / column / flag at fault, with no traceback, no partial artifact and none of the user's files changed.

The table below drives the in-process runs (``graftkit.cli.main.main(argv)``); a handful of ids also run in
a real subprocess. Undecodable media go through ``graftkit fit`` with a tiny ViT / wav2vec2 (the decoding
happens in the backbone's ``load_item``), and through ``graftkit.data.media`` directly for the cases a
table cannot reach (in-memory clips).
"""

from __future__ import annotations

import hashlib
import json
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import sentiment_frame
from graftkit.cli.main import main
from graftkit.errors import DataError

ERROR_PREFIX = "graftkit: error: "


# -- building the user's files ---------------------------------------------------------------------------
def write(name: str, content: str | bytes, encoding: str = "utf-8") -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding=encoding)
    return build


def reviews(name: str = "reviews.csv", n: int = 60) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        sentiment_frame(n).to_csv(folder / name, index=False)
    return build


def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def image_folder(name: str = "photos", bad: tuple[str, bytes] | None = None) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        for label in ("cat", "dog"):
            (folder / name / label).mkdir(parents=True)
            for i in range(3):
                (folder / name / label / f"{i}.png").write_bytes(tiny_png())
        if bad is not None:
            (folder / name / "dog" / bad[0]).write_bytes(bad[1])
    return build


def audio_folder(name: str = "clips", bad: tuple[str, bytes] | None = None) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        for label, freq in (("high", 880.0), ("low", 220.0)):
            (folder / name / label).mkdir(parents=True)
            for i in range(3):
                tone = np.sin(2 * np.pi * freq * np.arange(1600) / 16000) * (0.2 + 0.1 * i)
                (folder / name / label / f"{i}.wav").write_bytes(wav_bytes(tone))
        if bad is not None:
            (folder / name / "low" / bad[0]).write_bytes(bad[1])
    return build


def tamper(name: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        path = folder / "model" / name
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    return build


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A hand edit of the saved model's manifest.json (``change`` mutates the parsed object)."""
    def build(folder: Path) -> None:
        path = folder / "model" / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))
    return build


def combine(*builders: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        for builder in builders:
            builder(folder)
    return build


def nothing(folder: Path) -> None:
    return None


GOOD_LINES = "text,label\n" + "".join(f"{'good great' if i % 2 else 'bad awful'} film {i},{'pos' if i % 2 else 'neg'}\n"
                                      for i in range(12))


@dataclass(frozen=True)
class Case:
    id: str
    files: Callable[[Path], None]   # writes the user's files into {w}
    argv: tuple[str, ...]            # {w} user folder, {bert} tiny BERT, {vit} tiny ViT, {w2v} tiny wav2vec2
    error: str                       # regex the one-line message must match
    needs_model: bool = False        # copy a fitted model to {w}/model first
    env: dict = field(default_factory=dict)


FIT = ("fit", "{w}/reviews.csv", "--backbone", "{bert}", "-o", "{w}/out")
# a numeric target with many distinct values (a regression) and a |-separated label set (multi-label)
SCORE_LINES = "text,label\n" + "".join(f"{'good great' if i % 2 else 'bad awful'} film {i},{i % 7 + 0.75}\n"
                                       for i in range(14))
TAG_LINES = "text,label\n" + "".join(f"film {i},{['pos', 'neg', 'pos|neg', ''][i % 4]}\n" for i in range(12))
OFFLINE = {"HF_HUB_OFFLINE": "1"}

CASES = [
    # ---- data files --------------------------------------------------------------------------------
    Case("missing-data-file", nothing, ("fit", "{w}/nope.csv", "--backbone", "{bert}", "-o", "{w}/out"),
         r"data file or folder '[^']*nope\.csv' does not exist; check the path"),
    Case("missing-text-column", reviews(), (*FIT, "--text", "body"),
         r"reviews\.csv: no column 'body' \(given as text= / --text\); columns are: text, label"),
    Case("misspelt-text-column", reviews(), (*FIT, "--text", "txet"),
         r"reviews\.csv: no column 'txet' \(given as text= / --text\).*did you mean 'text'\?"),
    Case("misspelt-label", reviews(), (*FIT, "--label", "lable"),
         r"reviews\.csv: no column 'lable' \(given as label= / --label\).*did you mean 'label'\?"),
    Case("empty-file", write("reviews.csv", b""), FIT, r"reviews\.csv is empty \(0 bytes\)"),
    Case("header-only", write("reviews.csv", "text,label\n"), FIT,
         r"reviews\.csv has a header but no data rows; add rows"),
    Case("single-class", write("reviews.csv", "text,label\n" + "good film,pos\n" * 8), FIT,
         r"reviews\.csv: column 'label' has a single class \('pos'\) in all 8 rows; .*at least two classes"),
    Case("blank-labels", write("reviews.csv", GOOD_LINES.replace(",neg\n", ",\n", 2)), FIT,
         r"reviews\.csv: column 'label' is blank in 2 row\(s\) \(row 1, 3\); fill in the labels"),
    Case("label-only-in-test", combine(reviews(), write("test.csv", "text,label\ngood film,pos\nmeh film,meh\n")),
         (*FIT, "--test", "{w}/test.csv"),
         r"test\.csv: row 2, column 'label': label 'meh' was not seen in training"),
    Case("test-file-without-label-column", combine(reviews(), write("test.csv", "text\ngood film\n")),
         (*FIT, "--test", "{w}/test.csv"), r"test\.csv: no column 'label' \(given as label= / --label\)"),
    Case("empty-text-cells", write("reviews.csv", GOOD_LINES.replace("bad awful film 2,", " ,")), FIT,
         r"reviews\.csv: column 'text' is empty in 1 row\(s\) \(row 3\); fill in the text or drop those rows"),
    Case("latin1-bytes-in-utf8-csv",
         write("reviews.csv", GOOD_LINES.replace("film 5", "café 5"), encoding="latin-1"), FIT,
         r"reviews\.csv is not valid utf-8 text .*pass its encoding \(CLI: --encoding latin-1\)"),
    Case("unknown-encoding", reviews(), (*FIT, "--encoding", "utf-9"),
         r"unknown text encoding 'utf-9' \(encoding= / --encoding\)"),
    Case("ragged-tsv", write("reviews.tsv", 'text\tlabel\n"good" film\tpos\nbad film\tneg\textra\n'),
         ("fit", "{w}/reviews.tsv", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.tsv is not a well-formed TSV file: .*line 3"),
    Case("malformed-jsonl", write("reviews.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", \n'),
         ("fit", "{w}/reviews.jsonl", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.jsonl: line 2 is not valid JSON .*one JSON object per line"),
    Case("jsonl-line-not-object",
         write("reviews.jsonl", '{"text": "good", "label": "pos"}\n\n["bad", "neg"]\n'),
         ("fit", "{w}/reviews.jsonl", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.jsonl: line 3 is a JSON list, not an object"),
    Case("jsonl-only-blank-lines", write("reviews.jsonl", "\n  \n"),
         ("fit", "{w}/reviews.jsonl", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.jsonl holds no JSON objects"),
    Case("jsonl-missing-text-key",
         write("reviews.jsonl",
               '{"text": "good", "label": "pos"}\n{"label": "neg"}\n{"text": "bad", "label": "neg"}\n'),
         ("fit", "{w}/reviews.jsonl", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.jsonl: column 'text' is empty in 1 row\(s\) \(row 2\)"),
    Case("unknown-suffix-xlsx", write("reviews.xlsx", b"PK\x03\x04 not really a workbook"),
         ("fit", "{w}/reviews.xlsx", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.xlsx: cannot tell the format from the suffix '\.xlsx'; .*--format"),
    Case("corrupt-parquet", write("reviews.parquet", b"definitely not parquet"),
         ("fit", "{w}/reviews.parquet", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.parquet is not a readable Parquet file"),
    Case("unknown-format-flag", reviews(), (*FIT, "--format", "xlsx"),
         r"argument --format: invalid choice: 'xlsx'"),
    Case("two-input-columns", reviews(), (*FIT, "--text", "text", "--image", "text"),
         r"column 'text' is named in --text and --image; give each column one role"),
    Case("input-is-label", reviews(), (*FIT, "--text", "label", "--label", "label"),
         r"reviews\.csv: column 'label' is given as both the input and the label"),
    Case("too-few-for-split", write("reviews.csv", GOOD_LINES + "superb film,wow\n"), FIT,
         r"reviews\.csv: 1 class\(es\) have fewer than 2 examples, too few for a stratified split: 'wow'; "
         r".*--test FILE"),
    Case("test-size-too-small-for-classes", reviews(), (*FIT, "--test-size", "0.01"),
         r"reviews\.csv: cannot split 60 rows with 2 classes stratified at test_size=0\.01: .*--test-size"),
    # ---- task targets (regression, multi-label) -----------------------------------------------------------
    Case("regression-target-with-text", write("reviews.csv", SCORE_LINES.replace(",0.75\n", ",ten\n", 1)),
         (*FIT, "--task", "regression"), r"reviews\.csv: row 1, column 'label': 'ten' is not a number"),
    Case("regression-target-nan", write("reviews.csv", SCORE_LINES.replace(",0.75\n", ",nan\n", 1)),
         (*FIT, "--task", "regression"), r"row 1, column 'label': the target is 'nan'; .*finite number"),
    Case("regression-target-inf", write("reviews.csv", SCORE_LINES.replace(",0.75\n", ",-inf\n", 1)),
         (*FIT, "--task", "regression"), r"row 1, column 'label': the target is '-inf'; .*finite number"),
    Case("regression-on-a-string-column", reviews(), (*FIT, "--task", "regression"),
         r"reviews\.csv: row 1, column 'label': '(neg|pos)' is not a number; a regression target must be numeric"),
    Case("interval-above-1", write("reviews.csv", SCORE_LINES), (*FIT, "--interval", "1.5"),
         r"interval level must be a fraction between 0 and 1 .*--interval"),
    Case("interval-0", write("reviews.csv", SCORE_LINES), (*FIT, "--interval", "0"),
         r"interval level must be a fraction between 0 and 1 .*--interval"),
    Case("multilabel-empty-set-declared-impossible", write("reviews.csv", TAG_LINES),
         (*FIT, "--no-empty-labels"),
         r"reviews\.csv: row 4, column 'label': the row has no label, and empty label sets were declared impossible"),
    Case("multilabel-one-label", write("reviews.csv", TAG_LINES.replace("neg", "pos")),
         (*FIT, "--task", "multilabel-classification"), r"a multi-label target needs at least two labels"),
    Case("unknown-task", reviews(), (*FIT, "--task", "ranking"), r"argument --task: invalid choice: 'ranking'"),
    Case("token-classification-of-a-class-column", reviews(), (*FIT, "--task", "token-classification"),
         r"row 1, column 'label': 1 tags for \d+ words; give one tag per word"),
    Case("label-and-labels", reviews(), (*FIT, "--label", "label", "--labels", "a", "b"),
         r"give --label COLUMN .* or --labels A B C .*not both"),
    # ---- text that is not text, headers that repeat -------------------------------------------------------
    Case("encoding-not-a-text-codec", reviews(), (*FIT, "--encoding", "base64"),
         r"'base64' is not a text encoding \(encoding= / --encoding\)"),
    Case("utf16-without-bom", write("reviews.csv", GOOD_LINES, encoding="utf-16-le"), (*FIT, "--encoding", "utf-16"),
         r"reviews\.csv cannot be read as utf-16 text .*--encoding utf-16-le"),
    Case("jsonl-lone-surrogate",
         write("reviews.jsonl", "".join(f'{{"text": "{"good" if i % 2 else "bad"} film {i}{chr(92) + "ud800" if i == 3 else ""}", '
                                        f'"label": "{"pos" if i % 2 else "neg"}"}}\n' for i in range(10))),
         ("fit", "{w}/reviews.jsonl", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.jsonl: line 4, field 'text' holds a lone surrogate"),
    Case("duplicate-column-names",
         write("reviews.csv", "text,label,text\n" + "".join(f"film {i},{'pos' if i % 2 else 'neg'},x\n" for i in range(9))),
         FIT, r"reviews\.csv: column name\(s\) 'text' appear more than once in the header"),
    Case("jsonl-duplicate-keys", write("reviews.jsonl", '{"text": "good", "text": "bad", "label": "pos"}\n'),
         ("fit", "{w}/reviews.jsonl", "--backbone", "{bert}", "-o", "{w}/out"),
         r"reviews\.jsonl: line 1 gives the key\(s\) 'text' more than once"),
    Case("na-labels-name-drop-missing", write("reviews.csv", GOOD_LINES.replace(",neg\n", ",NA\n", 2)), FIT,
         r"reviews\.csv: row 1, column 'label': label 'NA' looks like a missing value \(2 row\(s\)\); "
         r"drop_missing=True / --drop-missing drops those rows"),
    Case("max-image-pixels-negative", reviews(), (*FIT, "--max-image-pixels", "-1"),
         r"argument --max-image-pixels: expected an integer >= 0, got '-1'"),
    Case("image-over-max-image-pixels", image_folder(),
         ("fit", "{w}/photos", "--backbone", "{vit}", "--C", "1", "--test-size", "0", "--max-image-pixels", "8",
          "-o", "{w}/out"),
         r"photos: row \d+, column 'path': file '[^']*photos/cat/0\.png' is too large to decode safely \(4 x 4 = 16 "
         r"pixels\): the limit is 8 pixels .*--max-image-pixels N"),
    Case("cv-negative-seed", reviews(), ("cv", "{w}/reviews.csv", "--backbone", "{bert}", "--seed", "-5"),
         r"argument --seed: expected an integer from 0 to 2\*\*32 - 1, got '-5'"),
    Case("checkpoint-dir-around-output", reviews(), (*FIT, "--strategy", "finetune", "--checkpoint-dir", "{w}"),
         r"--checkpoint-dir '[^']*' and -o '[^']*out' contain one another"),
    Case("checkpoint-dir-inside-output", reviews(),
         (*FIT, "--strategy", "finetune", "--checkpoint-dir", "{w}/out/checkpoints"),
         r"--checkpoint-dir '[^']*out/checkpoints' and -o '[^']*out' contain one another"),
    # ---- media references -------------------------------------------------------------------------------
    Case("image-path-does-not-exist",
         combine(write("pics/a.png", tiny_png()),
                 write("images.csv", "image,label\npics/a.png,cat\npics/gone.png,dog\n")),
         ("fit", "{w}/images.csv", "--image", "image", "--backbone", "{bert}", "-o", "{w}/out"),
         r"images\.csv: row 2, column 'image': image file 'pics/gone\.png' does not exist .*relative paths are read "
         r"from .*fix the paths"),
    Case("audio-path-does-not-exist",
         combine(write("clips/a.wav", wav_bytes(np.zeros(160))),
                 write("clips.csv", "clip,label\nclips/missing.wav,yes\nclips/a.wav,no\n")),
         ("fit", "{w}/clips.csv", "--backbone", "{bert}", "-o", "{w}/out"),
         r"clips\.csv: row 1, column 'clip': audio file 'clips/missing\.wav' does not exist"),
    Case("image-column-empty-cell",
         combine(write("pics/a.png", tiny_png()), write("images.csv", "image,label\npics/a.png,cat\n,dog\n")),
         ("fit", "{w}/images.csv", "--image", "image", "--backbone", "{bert}", "-o", "{w}/out"),
         r"images\.csv: column 'image' is empty in 1 row\(s\) \(row 2\); give a file path in every row"),
    Case("folder-without-class-folders", write("photos/a.png", tiny_png()),
         ("fit", "{w}/photos", "--backbone", "{bert}", "-o", "{w}/out"),
         r"photos is a folder with no class sub-folders; lay it out as"),
    Case("folder-without-media", combine(write("photos/cat/a.txt", "x"), write("photos/dog/b.txt", "y")),
         ("fit", "{w}/photos", "--backbone", "{bert}", "-o", "{w}/out"),
         r"photos: holds no image files"),
    Case("modality-mismatch", image_folder(),
         ("fit", "{w}/photos", "--backbone", "{bert}", "--test-size", "0", "-o", "{w}/out"),
         r"photos: the input column 'path' holds image, but backbone '[^']*' reads text; pick a text column or "
         r"a backbone that reads image \(--backbone\)"),
    Case("image-folder-garbage-jpg", image_folder(bad=("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")),
         ("fit", "{w}/photos", "--backbone", "{vit}", "--C", "1", "--test-size", "0", "-o", "{w}/out"),
         r"photos: row \d+, column 'path': file '[^']*photos/dog/broken\.jpg' cannot be decoded as an image "
         r"\(\w+\); replace or remove it"),
    Case("image-path-column-garbage-jpg",
         combine(image_folder(), write("photos/cat/scan.jpg", b"GIF89a garbage"),
                 write("index.csv", "file,animal\nphotos/cat/0.png,cat\nphotos/cat/scan.jpg,cat\n"
                                    "photos/dog/0.png,dog\nphotos/dog/1.png,dog\n")),
         ("fit", "{w}/index.csv", "--label", "animal", "--backbone", "{vit}", "--C", "1", "--test-size", "0",
          "-o", "{w}/out"),
         r"index\.csv: row 2, column 'file': file '[^']*photos/cat/scan\.jpg' cannot be decoded as an image"),
    Case("audio-folder-corrupt-wav", audio_folder(bad=("bad.wav", b"RIFF\x24\x00\x00\x00WAVEfmt junk junk")),
         ("fit", "{w}/clips", "--backbone", "{w2v}", "--C", "1", "--test-size", "0", "-o", "{w}/out"),
         r"clips: row \d+, column 'path': file '[^']*clips/low/bad\.wav' is not a readable audio file .*"
         r"replace or remove it"),
    Case("audio-folder-empty-wav", audio_folder(bad=("silent.wav", wav_bytes(np.zeros(0)))),
         ("fit", "{w}/clips", "--backbone", "{w2v}", "--C", "1", "--test-size", "0", "-o", "{w}/out"),
         r"clips: row \d+, column 'path': file '[^']*clips/low/silent\.wav' holds no audio \(0 samples\)"),
    # ---- backbones ----------------------------------------------------------------------------------------
    Case("unknown-short-name-offline", reviews(), (*FIT[:2], "--backbone", "all-MiniLM-L7-v2", "-o", "{w}/out"),
         r"backbone 'all-MiniLM-L7-v2' is not in the local Hugging Face cache and the Hub is offline "
         r"\(HF_HUB_OFFLINE=1\); .*packaged model \(all-MiniLM-L6-v2", env=OFFLINE),
    Case("hub-id-offline-not-cached", reviews(), (*FIT[:2], "--backbone", "acme/bert-tiny-nowhere", "-o", "{w}/out"),
         r"backbone 'acme/bert-tiny-nowhere' is not in the local Hugging Face cache and the Hub is offline",
         env=OFFLINE),
    Case("backbone-dir-does-not-exist", reviews(), (*FIT[:2], "--backbone", "{w}/models/none", "-o", "{w}/out"),
         r"backbone directory '[^']*models/none' does not exist; check the path"),
    Case("backbone-dir-without-config", combine(reviews(), write("mymodel/model.safetensors", b"\0" * 16)),
         (*FIT[:2], "--backbone", "{w}/mymodel", "-o", "{w}/out"),
         r"backbone directory '[^']*mymodel' has no config\.json"),
    Case("backbone-is-a-file", reviews(), (*FIT[:2], "--backbone", "{w}/reviews.csv", "-o", "{w}/out"),
         r"backbone '[^']*reviews\.csv' is a file; give the model's directory"),
    # ---- output directory ------------------------------------------------------------------------------
    Case("output-holds-model", reviews(), (*FIT[:4], "-o", "{w}/model"),
         r"output directory '[^']*model' already holds a model; pass --overwrite", needs_model=True),
    Case("output-holds-other-files", combine(reviews(), write("out/notes.txt", "my notes")), FIT,
         r"output directory '[^']*out' is not empty and holds no graftkit model; .*choose a new -o DIR"),
    Case("output-is-a-file", reviews(), (*FIT[:4], "-o", "{w}/reviews.csv"),
         r"output '[^']*reviews\.csv' is a file; give a directory path \(-o DIR\)"),
    Case("output-under-a-file", reviews(), (*FIT[:4], "-o", "{w}/reviews.csv/model"),
         r"output '[^']*reviews\.csv/model' lies under '[^']*reviews\.csv', which is a file"),
    # ---- strategy and run flags ----------------------------------------------------------------------------
    Case("unknown-strategy", reviews(), (*FIT, "--strategy", "linear-prob"),
         r"unknown strategy 'linear-prob'; choose one of: .*linear-probe"),
    Case("invalid-head", reviews(), (*FIT, "--head", "foo"),
         r"linear-probe head must be one of linear, logreg, mlp; got 'foo' \(--head\)"),
    Case("negative-C", reviews(), (*FIT, "--C", "-1"), r"linear-probe C must be > 0; got -1\.0 \(--C\)"),
    Case("cv-folds-1", reviews(), (*FIT, "--cv-folds", "1"),
         r"linear-probe cv_folds must be an integer >= 2; got 1 \(--cv-folds\)"),
    Case("test-size-1.5", reviews(), (*FIT, "--test-size", "1.5"),
         r"--test-size must be a fraction between 0 and 1 \(or 0 for none\); got 1\.5"),
    Case("batch-size-0", reviews(), (*FIT, "--batch-size", "0"),
         r"argument --batch-size: expected an integer >= 1, got '0'"),
    Case("device-not-a-device", reviews(), (*FIT, "--device", "gpu0"),
         r"device 'gpu0' is not a torch device; use cpu, cuda or cuda:N \(--device\)"),
    Case("device-absent", reviews(), (*FIT, "--device", "cuda:99"), r"device 'cuda:99': .*--device"),
    Case("misspelt-flag", reviews(), (*FIT, "--lable", "label"), r"unrecognized arguments: --lable"),
    Case("cv-too-few-per-class", write("reviews.csv", GOOD_LINES),
         ("cv", "{w}/reviews.csv", "--backbone", "{bert}", "--folds", "7"),
         r"reviews\.csv: 2 class\(es\) have fewer than 7 examples, too few for 7-fold cross-validation: "
         r"'neg', 'pos'; .*use fewer folds \(CLI: --folds\)"),
    Case("cv-one-fold", reviews(), ("cv", "{w}/reviews.csv", "--backbone", "{bert}", "--folds", "1"),
         r"the number of folds must be an integer >= 2; got 1 \(k= / --folds\)"),
    # ---- predict / evaluate with a saved model ----------------------------------------------------------
    Case("predict-model-does-not-exist", reviews(), ("predict", "{w}/runs/none", "{w}/reviews.csv"),
         r"model directory '[^']*runs/none' does not exist"),
    Case("predict-dir-is-not-a-model", combine(reviews(), write("notamodel/weights.bin", b"x")),
         ("predict", "{w}/notamodel", "{w}/reviews.csv"),
         r"'[^']*notamodel' holds no manifest\.json; it is not a graftkit model directory"),
    Case("predict-tampered-head", combine(reviews(), tamper("head.safetensors")),
         ("predict", "{w}/model", "{w}/reviews.csv"),
         r"model: head\.safetensors does not match its hash in manifest\.json; .*refit", needs_model=True),
    Case("predict-tampered-labels", combine(reviews(), tamper("labels.json")),
         ("predict", "{w}/model", "{w}/reviews.csv"),
         r"model: labels\.json does not match its hash in manifest\.json", needs_model=True),
    Case("predict-corrupt-manifest", combine(reviews(), write("model/manifest.json", "{not json")),
         ("predict", "{w}/model", "{w}/reviews.csv"), r"manifest\.json is corrupt .*refit", needs_model=True),
    Case("predict-missing-head-file", combine(reviews(), lambda w: (w / "model" / "head.safetensors").unlink()),
         ("predict", "{w}/model", "{w}/reviews.csv"), r"model: head\.safetensors is missing", needs_model=True),
    Case("predict-manifest-missing-key", combine(reviews(), edit_manifest(lambda m: m.pop("task"))),
         ("predict", "{w}/model", "{w}/reviews.csv"), r"manifest\.json: the field 'task' is missing", needs_model=True),
    Case("predict-manifest-string-for-number",
         combine(reviews(), edit_manifest(lambda m: m["hyperparameters"].update(batch_size="32"))),
         ("predict", "{w}/model", "{w}/reviews.csv"), r"'hyperparameters\.batch_size' must be an integer",
         needs_model=True),
    Case("predict-manifest-seed-retyped", combine(reviews(), edit_manifest(lambda m: m.update(seed=[0]))),
         ("predict", "{w}/model", "{w}/reviews.csv"), r"manifest\.json: the field 'seed' must be an integer; got an array", needs_model=True),
    Case("predict-manifest-is-an-array", combine(reviews(), write("model/manifest.json", "[1, 2]")),
         ("predict", "{w}/model", "{w}/reviews.csv"), r"manifest\.json holds a JSON list, not an object",
         needs_model=True),
    Case("predict-manifest-task-damaged",
         combine(reviews(), edit_manifest(lambda m: m.update(task={"kind": "regression"}))),
         ("predict", "{w}/model", "{w}/reviews.csv"),
         r"manifest\.json: the field 'task' does not match its digest \(it was changed after the model was saved\)",
         needs_model=True),
    Case("report-output-exists", combine(reviews(), write("mine.html", "<p>my notes</p>")),
         ("report", "{w}/model", "-o", "{w}/mine.html"), r"report output '[^']*mine\.html' exists; pass --overwrite",
         needs_model=True),
    Case("demo-output-holds-model", nothing, ("demo", "--backbone", "{bert}", "-o", "{w}/model"),
         r"output directory '[^']*model' already holds a model; pass --overwrite", needs_model=True),
    Case("merge-output-holds-model", lambda w: shutil.copytree(w / "model", w / "other"),
         ("merge", "{w}/model", "-o", "{w}/other"), r"output directory '[^']*other' already holds a model; pass "
         r"--overwrite", needs_model=True),
    Case("auto-output-holds-model", reviews(), ("auto", "{w}/reviews.csv", "--backbones", "{bert}", "-o", "{w}/model"),
         r"output directory '[^']*model' already holds a model; pass --overwrite", needs_model=True),
    Case("evaluate-save-over-evaluation-json", combine(reviews(), write("model/evaluation.json", "{}")),
         ("evaluate", "{w}/model", "{w}/reviews.csv", "--save"),
         r"model/evaluation\.json exists \(the results saved by fit or an earlier evaluate\); pass --overwrite",
         needs_model=True),
    Case("report-default-path-holds-a-user-file", write("model/report.html", "<p>my own notes</p>"),
         ("report", "{w}/model"), r"model/report\.html' exists and is not a report graftkit wrote; pass --overwrite",
         needs_model=True),
    Case("evaluate-without-label-column", write("new.csv", "text\ngood film\nbad film\n"),
         ("evaluate", "{w}/model", "{w}/new.csv"),
         r"new\.csv: cannot tell which column is the label; .*--label COLUMN", needs_model=True),
    Case("evaluate-unseen-label", write("new.csv", "text,label\ngood film,pos\nfine film,meh\n"),
         ("evaluate", "{w}/model", "{w}/new.csv"),
         r"new\.csv: row 2, column 'label': label 'meh' was not seen in training", needs_model=True),
    Case("predict-wrong-text-column", reviews(), ("predict", "{w}/model", "{w}/reviews.csv", "--text", "review"),
         r"reviews\.csv: no column 'review' \(given as text= / --text\)", needs_model=True),
    Case("predict-output-exists", combine(reviews(), write("preds.csv", "row,prediction\n1,pos\n")),
         ("predict", "{w}/model", "{w}/reviews.csv", "-o", "{w}/preds.csv"),
         r"output file '[^']*preds\.csv' exists; pass --overwrite", needs_model=True),
    Case("predict-output-is-a-directory", combine(reviews(), write("preds/keep.txt", "x")),
         ("predict", "{w}/model", "{w}/reviews.csv", "-o", "{w}/preds", "--overwrite"),
         r"output '[^']*preds' is a directory; give a CSV file path", needs_model=True),
    Case("predict-batch-size-0", reviews(), ("predict", "{w}/model", "{w}/reviews.csv", "--batch-size", "0"),
         r"argument --batch-size: expected an integer >= 1", needs_model=True),
    Case("predict-empty-file", write("new.csv", b""), ("predict", "{w}/model", "{w}/new.csv"),
         r"new\.csv is empty \(0 bytes\)", needs_model=True),
]

SUBPROCESS_IDS = ["missing-data-file", "misspelt-text-column", "latin1-bytes-in-utf8-csv", "unknown-encoding",
                  "unknown-short-name-offline", "device-not-a-device", "predict-tampered-head",
                  "batch-size-0", "image-folder-garbage-jpg"]


# -- fixtures and the harness ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_model(tiny_bert_dir, tmp_path_factory) -> Path:
    """A model fitted once per module (C fixed, no feature cache), copied into each case that needs one."""
    from graftkit.graft import Graft

    folder = tmp_path_factory.mktemp("fitted")
    data = folder / "train.csv"
    sentiment_frame(40).to_csv(data, index=False)
    model = Graft(backbone=str(tiny_bert_dir), C=1.0, use_cache=False, progress=False).fit(data)
    return model.save(folder / "model")


@pytest.fixture(scope="module")
def tiny_w2v_dir(tmp_path_factory) -> Path:
    """A 2-layer wav2vec2 with hidden size 32 and its feature extractor, saved with save_pretrained."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny-w2v")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def snapshot(root: Path) -> dict[str, str]:
    """Every file (sha256) and folder under ``root``, hidden ones included."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(root.rglob("*"))}


def prepare(case: Case, tmp_path: Path, request) -> tuple[Path, list[str], dict]:
    """The user's folder with the case's files, and the argv with its placeholders filled in."""
    models = {"bert": "tiny_bert_dir", "vit": "tiny_vit_dir", "w2v": "tiny_w2v_dir"}
    joined = " ".join(case.argv)
    paths = {key: request.getfixturevalue(name) if f"{{{key}}}" in joined else None for key, name in models.items()}
    model = request.getfixturevalue("fitted_model") if case.needs_model else None
    user = tmp_path / "user"
    user.mkdir()
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    if case.needs_model:
        shutil.copytree(model, user / "model")
    case.files(user)
    argv = [a.format(w=user, **paths) for a in case.argv]
    env = {**case.env, "HF_HOME": str(hf_home)} if case.env else {}
    return user, argv, env


def check_failure(case: Case, code, stdout: str, stderr: str, before: dict, user: Path) -> None:
    assert code == 2, f"exit code {code}; stderr: {stderr}"
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {stderr!r}"
    assert lines[0].startswith(ERROR_PREFIX)
    assert re.search(case.error, lines[0]), f"{lines[0]!r} does not match {case.error!r}"
    after = snapshot(user)
    assert not [name for name in after if ".tmp-" in name or ".old-" in name], after
    assert after == before, "the user's files (or the output directory) changed"


def _offline(monkeypatch, env: dict) -> None:
    """The environment of a case, also where huggingface_hub read it at import time."""
    from huggingface_hub import constants

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if env.get("HF_HUB_OFFLINE") == "1":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(Path(env["HF_HOME"]) / "hub"))


def test_cases_are_many_and_distinct():
    ids = [case.id for case in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    assert set(SUBPROCESS_IDS) <= set(ids)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_in_process(case, tmp_path, request, monkeypatch, capsys):
    user, argv, env = prepare(case, tmp_path, request)
    _offline(monkeypatch, env)
    before = snapshot(user)
    capsys.readouterr()  # what building the fixtures printed
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    check_failure(case, code, out, err, before, user)


@pytest.mark.parametrize("case_id", SUBPROCESS_IDS)
def test_bad_input_in_subprocess(case_id, tmp_path, request):
    case = next(c for c in CASES if c.id == case_id)
    user, argv, env = prepare(case, tmp_path, request)
    before = snapshot(user)
    result = subprocess.run([sys.executable, "-m", "graftkit.cli.main", "-q", *argv], capture_output=True,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, timeout=300)
    check_failure(case, result.returncode, result.stdout, result.stderr, before, user)


def test_progress_lines_do_not_hide_the_error(tmp_path, tiny_bert_dir):
    """Without -q the explanation lines come first; the error is still the last line, and the only one."""
    user = tmp_path / "user"
    user.mkdir()
    reviews()(user)
    result = subprocess.run([sys.executable, "-m", "graftkit.cli.main", "fit", str(user / "reviews.csv"),
                             "--backbone", str(tiny_bert_dir), "--head", "foo", "-o", str(user / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith(ERROR_PREFIX)] == lines[-1:]
    assert "--head" in lines[-1] and "Traceback" not in result.stderr
    assert not (user / "out").exists()


# -- the media decoders themselves ---------------------------------------------------------------------------
MEDIA_CASES = [
    ("garbage-jpg", "photo.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg", "image",
     r"row 7, column 'image': file '[^']*photo\.jpg' cannot be decoded as an image .*replace or remove it"),
    ("text-file-named-png", "photo.png", b"hello", "image", r"file '[^']*photo\.png' cannot be decoded as an image"),
    ("corrupt-wav", "clip.wav", b"RIFF\x10\x00\x00\x00WAVEfmt garbage", "audio",
     r"row 7, column 'image': file '[^']*clip\.wav' is not a readable audio file .*replace or remove it"),
    ("empty-wav", "clip.wav", None, "audio", r"file '[^']*clip\.wav' holds no audio \(0 samples\)"),
    ("missing-image", None, None, "image", r"file '[^']*gone\.jpg' does not exist; check the path"),
]


@pytest.mark.parametrize("name, content, kind, pattern",
                         [c[1:] for c in MEDIA_CASES], ids=[c[0] for c in MEDIA_CASES])
def test_undecodable_media(name, content, kind, pattern, tmp_path):
    from graftkit.data.media import load_audio, load_image

    if name is None:
        path = tmp_path / "gone.jpg"
    else:
        path = tmp_path / name
        path.write_bytes(wav_bytes(np.zeros(0)) if content is None else content)
    before = snapshot(tmp_path)
    where = "photos.csv: row 7, column 'image'"
    with pytest.raises(DataError) as info:
        if kind == "image":
            load_image(str(path), where)
        else:
            load_audio(str(path), 16000, where)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(where)
    assert re.search(pattern, message), message
    assert snapshot(tmp_path) == before


def test_empty_in_memory_clip_is_rejected():
    from graftkit.data.media import load_audio

    with pytest.raises(DataError, match=r"row 2: in-memory value holds no audio \(0 samples\)"):
        load_audio({"array": np.zeros(0, dtype=np.float32), "sampling_rate": 16000}, 16000, "row 2")


# -- interrupted writes -----------------------------------------------------------------------------------------
def _tree(path: Path) -> dict[str, str]:
    return snapshot(path)


def _failing_card(manifest):
    raise RuntimeError("disk full (simulated)")


def test_interrupted_write_keeps_previous_model(fitted_model, tmp_path, monkeypatch, tiny_bert_dir):
    import graftkit.model_card
    from graftkit.loading import load_model
    from graftkit.graft import Graft

    target = tmp_path / "runs" / "model"
    shutil.copytree(fitted_model, target)
    before = _tree(target)
    texts = ["good great film", "awful bad plot"]
    expected = load_model(target, progress=False).predict_proba(texts)

    train = tmp_path / "other.csv"
    sentiment_frame(30, seed=3).to_csv(train, index=False)
    model = Graft(backbone=str(tiny_bert_dir), C=0.5, progress=False).fit(train)
    monkeypatch.setattr(graftkit.model_card, "render_card", _failing_card)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save(target, overwrite=True)

    assert _tree(target) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no .tmp- / .old- siblings
    np.testing.assert_array_equal(load_model(target, progress=False).predict_proba(texts), expected)


def test_interrupted_write_leaves_no_directory(fitted_model, tmp_path, monkeypatch):
    import graftkit.model_card
    from graftkit.loading import load_model

    model = load_model(fitted_model, progress=False)
    monkeypatch.setattr(graftkit.model_card, "render_card", _failing_card)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save(tmp_path / "runs" / "new")
    assert list((tmp_path / "runs").iterdir()) == []


def test_interrupted_cli_fit_exits_130_and_writes_nothing(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """Ctrl-C during the write: exit code 130, a one-line note, no directory and no staging folder."""
    import graftkit.model_card

    def interrupt(manifest):
        raise KeyboardInterrupt

    user = tmp_path / "user"
    user.mkdir()
    reviews(n=30)(user)
    before = snapshot(user)
    monkeypatch.setattr(graftkit.model_card, "render_card", interrupt)
    code = main(["fit", str(user / "reviews.csv"), "--backbone", str(tiny_bert_dir), "--C", "1",
                 "--test-size", "0", "-o", str(user / "out")])
    err = capsys.readouterr().err
    assert code == 130
    assert err.splitlines() == ["graftkit: interrupted; nothing was written"]
    assert snapshot(user) == before
