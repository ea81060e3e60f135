"""The data layer: readers for every format, role inference and its explanation, media path resolution,
stratified splits and folds, the data fingerprint, and label order. Nothing here embeds anything."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import sentiment_frame
from graftkit.data import Table, load_data
from graftkit.errors import ConfigError, DataError
from graftkit.tasks import infer_task


def png_bytes(color=(10, 20, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_wav(path: Path, n: int = 400, rate: int = 8000) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.linspace(-0.5, 0.5, n, dtype=np.float32), rate)


# -- readers ---------------------------------------------------------------------------------------------
def test_csv_reader_roles_rows_and_explanation(tmp_path, caplog):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"good, really good",pos\nbad film,neg\n"say ""hi""",pos\n')
    with caplog.at_level(logging.INFO, logger="graftkit.data.readers"):
        table = load_data(path)
    assert (table.modality, table.input_column, table.label_column) == ("text", "text", "label")
    assert table.items() == ["good, really good", "bad film", 'say "hi"']
    assert table.labels() == ["pos", "neg", "pos"]
    assert list(table.frame.index) == [1, 2, 3]  # 1-based data rows, for error messages
    assert table.where(1, "text") == f"{path}: row 2, column 'text'"
    assert table.explanation == ["label column: 'label' (by its name; override with --label)",
                                 "text column: 'text' (by its name; override with --text)"]
    assert [r.getMessage() for r in caplog.records] == table.explanation


def test_tsv_keeps_quote_characters_sst2_style(tmp_path):
    """SST-2 is tab-separated with bare quote characters inside sentences; they are text, not quoting."""
    path = tmp_path / "sst2.tsv"
    lines = ["sentence\tlabel", '"it \'s a charming and often affecting journey . \t1',
             'the film is " hilarious " , not really\t0', "unflinchingly bleak and desperate \t0"]
    path.write_text("\n".join(lines) + "\n")
    table = load_data(path)
    assert table.input_column == "sentence"
    assert table.items() == ['"it \'s a charming and often affecting journey . ',
                             'the film is " hilarious " , not really', "unflinchingly bleak and desperate "]
    assert table.labels() == ["1", "0", "0"]


def test_jsonl_reader_skips_blank_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"utterance": "card arrived?", "intent": "card_arrival", "id": 1},
            {"utterance": "top up failed", "intent": "top_up_failed", "id": 2}]
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    table = load_data(path)
    assert (table.input_column, table.label_column) == ("utterance", "intent")
    assert table.items() == ["card arrived?", "top up failed"]
    assert table.labels() == ["card_arrival", "top_up_failed"]


def test_byte_order_mark_is_not_part_of_the_first_column_or_object(tmp_path):
    (tmp_path / "excel.csv").write_bytes("text,label\nbon film,pos\nmauvais,neg\n".encode("utf-8-sig"))
    (tmp_path / "data.jsonl").write_bytes('{"text": "bon", "label": "pos"}\n'.encode("utf-8-sig"))
    assert load_data(tmp_path / "excel.csv", text="text").items() == ["bon film", "mauvais"]
    assert load_data(tmp_path / "data.jsonl", text="text").labels() == ["pos"]


def test_parquet_reader_turns_integer_labels_into_strings(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame({"review": ["fine", "awful", "great"], "stars": [4, 1, 5]}).to_parquet(path)
    table = load_data(path)
    assert (table.input_column, table.label_column) == ("review", "stars")
    assert table.labels() == ["4", "1", "5"]


def test_explicit_format_overrides_the_suffix(tmp_path):
    path = tmp_path / "export.txt"
    path.write_text("a\tb\nhello there\tx\nbye now\ty\n")
    table = load_data(path, format="tsv", text="a", label="b")
    assert table.items() == ["hello there", "bye now"] and table.explanation == []


def test_encoding_option_reads_latin1(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncafé au lait,yes\nthé,no\n".encode("latin-1"))
    with pytest.raises(DataError, match="--encoding"):
        load_data(path)
    assert load_data(path, encoding="latin-1").items() == ["café au lait", "thé"]


def test_dataframe_reader(tmp_path):
    frame = pd.DataFrame({"body": ["short", "a much longer string of text"], "category": ["a", "b"], "n": [1, 2]})
    table = load_data(frame)
    assert (table.source, table.input_column, table.label_column) == ("DataFrame", "body", "category")
    assert table.base_dir is None
    assert frame.columns.tolist() == ["body", "category", "n"]  # the caller's frame is not changed


def test_text_column_inferred_as_longest_string_column():
    frame = pd.DataFrame({"code": ["x1", "y2"], "blurb": ["a long sentence here", "another long sentence"],
                          "label": ["a", "b"]})
    table = load_data(frame)
    assert table.input_column == "blurb"
    assert table.explanation[-1] == ("text column: 'blurb' (the string column with the longest values; "
                                     "override with --text)")


def test_explicit_roles_need_no_explanation(sentiment_csv):
    table = load_data(sentiment_csv, text="text", label="label")
    assert table.explanation == []


def test_known_columns_from_a_model_are_used_when_present():
    frame = pd.DataFrame({"headline": ["x y", "z"], "body": ["a much longer body text", "b"], "tag": ["p", "q"]})
    table = load_data(frame, known_columns={"text": "headline", "label": "tag"})
    assert (table.input_column, table.label_column) == ("headline", "tag")


def test_unlabelled_data_for_prediction():
    table = load_data(pd.DataFrame({"text": ["a b", "c d"]}), require_label=False)
    assert not table.has_labels
    with pytest.raises(DataError, match="has no label column"):
        table.labels()


def test_blank_labels_are_ignored_when_labels_are_not_needed():
    frame = pd.DataFrame({"text": ["a b", "c d"], "label": ["pos", ""]})
    with pytest.raises(DataError, match=r"column 'label' is blank in 1 row\(s\) \(row 2\)"):
        infer_task(load_data(frame))  # the classification task refuses blank labels; multi-label reads an empty set
    table = load_data(frame, require_label=False)
    assert not table.has_labels and "ignored" in table.explanation[-1]
    assert table.items() == ["a b", "c d"]


def test_datasets_dataset_reader_uses_class_names():
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"sentence": ["good one", "bad one", "meh"], "label": [1, 0, 1]})
    data = data.cast_column("label", datasets.ClassLabel(names=["negative", "positive"]))
    table = load_data(data)
    assert (table.source, table.input_column) == ("Dataset", "sentence")
    assert table.labels() == ["positive", "negative", "positive"]


def test_datasets_image_feature_is_read_as_encoded_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Path(paths[-1]).write_bytes(png_bytes(color))
    data = datasets.Dataset.from_dict({"img": paths, "label": ["red", "blue"]}).cast_column("img", datasets.Image())
    table = load_data(data)
    assert (table.modality, table.input_column) == ("image", "img")
    assert "holds encoded image" in table.explanation[-1]
    from graftkit.data.media import load_image

    assert load_image(table.items()[0], "row 1").getpixel((0, 0)) == (255, 0, 0)


# -- image and audio folders -------------------------------------------------------------------------------
def test_image_folder_layout(tmp_path, caplog):
    root = tmp_path / "pets"
    for label, names in {"cat": ["a.jpg", "b.png"], "dog": ["c.png", "nested/d.PNG"]}.items():
        for name in names:
            (root / label / name).parent.mkdir(parents=True, exist_ok=True)
            (root / label / name).write_bytes(png_bytes())
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    with caplog.at_level(logging.INFO, logger="graftkit.data.readers"):
        table = load_data(root)
    assert (table.modality, table.input_column, table.label_column) == ("image", "path", "label")
    assert table.labels() == ["cat", "cat", "dog", "dog"]
    assert table.frame["path"].tolist() == ["cat/a.jpg", "cat/b.png", "dog/c.png", "dog/nested/d.PNG"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in table.items())
    assert table.explanation == ["image folder: 4 files in 2 class folders; label = folder name"]
    assert any("skipped 1 file(s) that are not image files" in r.getMessage() for r in caplog.records)


def test_audio_folder_layout(tmp_path):
    root = tmp_path / "commands"
    for label in ("yes", "no"):
        for i in range(2):
            write_wav(root / label / f"{i}.wav")
    table = load_data(root)
    assert table.modality == "audio"
    assert sorted(Counter(table.labels()).items()) == [("no", 2), ("yes", 2)]
    from graftkit.data.media import load_audio

    samples = load_audio(table.items()[0], 16000, table.where(0))
    assert samples.dtype == np.float32 and samples.shape == (800,)  # 400 samples at 8 kHz -> 16 kHz


def test_media_paths_resolve_from_the_data_files_folder(tmp_path, monkeypatch):
    data_dir = tmp_path / "project" / "data"
    (data_dir / "imgs").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (data_dir / "imgs" / name).write_bytes(png_bytes())
    absolute = tmp_path / "elsewhere.png"
    absolute.write_bytes(png_bytes())
    (data_dir / "index.csv").write_text(f"file,label\nimgs/a.png,x\nimgs/b.png,y\n{absolute},x\n")
    monkeypatch.chdir(tmp_path)  # the working directory is not the data folder
    table = load_data("project/data/index.csv")
    assert (table.modality, table.input_column) == ("image", "file")
    assert table.explanation[-1] == "image column: 'file' (its values are image file paths; override with --image)"
    assert table.items() == [str(data_dir.resolve() / "imgs" / "a.png"), str(data_dir.resolve() / "imgs" / "b.png"),
                             str(absolute)]


def test_audio_path_column_is_inferred(tmp_path):
    write_wav(tmp_path / "clips" / "one.wav")
    (tmp_path / "clips.jsonl").write_text('{"clip": "clips/one.wav", "label": "a"}\n')
    table = load_data(tmp_path / "clips.jsonl")
    assert (table.modality, table.input_column) == ("audio", "clip")


# -- splits and folds --------------------------------------------------------------------------------------------
def imbalanced_table(n_a=60, n_b=30, n_c=10) -> Table:
    labels = ["a"] * n_a + ["b"] * n_b + ["c"] * n_c
    frame = pd.DataFrame({"text": [f"example number {i}" for i in range(len(labels))], "label": labels})
    return load_data(frame)


def test_stratified_split_keeps_class_proportions():
    table = imbalanced_table()
    train, test = table.split(test_size=0.2, seed=0)
    assert (len(train), len(test)) == (80, 20)
    assert Counter(test.labels()) == {"a": 12, "b": 6, "c": 2}
    assert Counter(train.labels()) == {"a": 48, "b": 24, "c": 8}
    rows_train, rows_test = set(train.frame.index), set(test.frame.index)
    assert not rows_train & rows_test and rows_train | rows_test == set(table.frame.index)


def test_split_is_seeded():
    table = imbalanced_table()
    first = [list(part.frame.index) for part in table.split(test_size=0.25, seed=7)]
    again = [list(part.frame.index) for part in table.split(test_size=0.25, seed=7)]
    other = [list(part.frame.index) for part in table.split(test_size=0.25, seed=8)]
    assert first == again
    assert first[1] != other[1]


def test_three_way_split():
    train, val, test = imbalanced_table().split(test_size=0.2, val_size=0.1, seed=0)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert Counter(val.labels()) == {"a": 6, "b": 3, "c": 1}
    assert len(set(train.frame.index) | set(val.frame.index) | set(test.frame.index)) == 100


def test_split_rows_keep_their_source_row_numbers():
    table = imbalanced_table()
    _, test = table.split(test_size=0.2, seed=0)
    row = int(test.frame.index[0])
    assert test.where(0, "text") == f"DataFrame: row {row}, column 'text'"
    assert test.items()[0] == f"example number {row - 1}"


@pytest.mark.parametrize("kwargs, message", [
    ({"test_size": 0.0}, r"test_size must be a fraction between 0 and 1 \(e\.g\. 0\.2\); got 0\.0"),
    ({"test_size": 1.0}, r"test_size must be a fraction between 0 and 1"),
    ({"test_size": 0.5, "val_size": 0.5}, r"test_size \+ val_size must be below 1"),
])
def test_split_rejects_bad_fractions(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        imbalanced_table().split(**kwargs)


def test_kfold_folds_are_disjoint_covering_and_stratified():
    table = imbalanced_table()
    folds = table.folds(k=5, seed=0)
    assert len(folds) == 5
    tests = [set(test.frame.index) for _, test in folds]
    for i, (train, test) in enumerate(folds):
        assert not set(train.frame.index) & tests[i]
        assert set(train.frame.index) | tests[i] == set(table.frame.index)
        assert Counter(test.labels()) == {"a": 12, "b": 6, "c": 2}
        for j in range(i):
            assert not tests[i] & tests[j]
    assert set().union(*tests) == set(table.frame.index)


def test_kfold_is_seeded():
    table = imbalanced_table()
    def test_rows(seed):
        return [sorted(test.frame.index) for _, test in table.folds(k=4, seed=seed)]
    assert test_rows(3) == test_rows(3)
    assert test_rows(3) != test_rows(4)


def test_kfold_needs_k_examples_per_class():
    with pytest.raises(DataError, match=r"1 class\(es\) have fewer than 11 examples.*'c'.*--folds"):
        imbalanced_table().folds(k=11)


# -- fingerprint -------------------------------------------------------------------------------------------------
FINGERPRINT_SCRIPT = "import sys; from graftkit.data import load_data; print(load_data(sys.argv[1]).fingerprint())"


def test_fingerprint_is_stable_across_processes(sentiment_csv):
    here = load_data(sentiment_csv).fingerprint()
    there = subprocess.run([sys.executable, "-c", FINGERPRINT_SCRIPT, str(sentiment_csv)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert here == there and len(here) == 64


def test_fingerprint_changes_with_one_character(tmp_path):
    frame = sentiment_frame(20)
    frame.to_csv(tmp_path / "a.csv", index=False)
    edited = frame.copy()
    edited.loc[7, "text"] = edited.loc[7, "text"][:-1] + ("x" if edited.loc[7, "text"][-1] != "x" else "y")
    edited.to_csv(tmp_path / "b.csv", index=False)
    relabelled = frame.copy()
    relabelled.loc[3, "label"] = "neg" if relabelled.loc[3, "label"] == "pos" else "pos"
    relabelled.to_csv(tmp_path / "c.csv", index=False)
    prints = {name: load_data(tmp_path / name).fingerprint() for name in ("a.csv", "b.csv", "c.csv")}
    assert len(set(prints.values())) == 3
    assert load_data(frame).fingerprint() == prints["a.csv"]  # content, not the file it came from


def test_fingerprint_of_media_follows_file_content_not_location(tmp_path):
    for root in (tmp_path / "one", tmp_path / "two"):
        for label, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            (root / label).mkdir(parents=True)
            (root / label / "x.png").write_bytes(png_bytes(color))
    assert load_data(tmp_path / "one").fingerprint() == load_data(tmp_path / "two").fingerprint()
    (tmp_path / "two" / "red" / "x.png").write_bytes(png_bytes((254, 0, 0)))
    assert load_data(tmp_path / "one").fingerprint() != load_data(tmp_path / "two").fingerprint()


# -- labels and tasks --------------------------------------------------------------------------------------------
def _task(labels):
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(len(labels))], "label": labels})
    return infer_task(load_data(frame))


def test_label_order_is_numeric_aware():
    assert _task(["10", "2", "1", "2", "10"]).labels == ("1", "2", "10")
    assert _task(["-1", "0.5", "3"]).labels == ("-1", "0.5", "3")
    assert _task(["b", "a", "c"]).labels == ("a", "b", "c")
    assert _task(["10", "2", "x"]).labels == ("10", "2", "x")  # mixed: plain string order


def test_labels_are_stripped_strings(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nx y, pos \nz w,neg\n")
    assert load_data(path).labels() == ["pos", "neg"]


def test_task_encode_names_unseen_labels():
    task = _task(["a", "b"])
    assert task.encode_labels(["b", "a"]).tolist() == [1, 0]
    with pytest.raises(DataError, match=r"row 2: label 'c' was not seen in training"):
        task.encode_labels(["a", "c"])
