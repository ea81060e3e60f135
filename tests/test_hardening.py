"""Hostile inputs a new user meets (issue "Hardening"): images and clips that decode to nonsense, a damaged
feature cache, a reader that closes the pipe early, arbitrary bytes as data files, hand-edited manifests. Each
ends in a correct result or one clean error, never a traceback or a silently wrong model."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import examples, sentiment_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.data.media import load_audio, load_image
from graftkit.errors import DataError, GraftkitError
from graftkit.features.cache import FeatureCache


def test_a_16_bit_png_keeps_its_contrast(tmp_path):
    from PIL import Image

    gradient = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (16, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(gradient).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_image(str(path), "row 1"))
    assert rgb.shape == (16, 64, 3) and rgb.min() == 0 and rgb.max() == 255  # PIL's convert("RGB") gives all 255
    assert np.all(np.diff(rgb[0, :, 0].astype(int)) >= 0)


def test_transparent_palette_images_are_composited_on_white(tmp_path):
    from PIL import Image

    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    path = tmp_path / "clear.png"
    image.save(path)
    assert np.asarray(load_image(str(path), "row 1")).min() == 255


def test_a_decompression_bomb_is_one_clear_error(tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (64, 32)).save(path)
    refused = pytest.raises(DataError, match=r"row 3: file '.*big\.png' is too large to decode safely \(64 x 32 = "
                                             r"2,048 pixels\): the limit is 2,047 pixels .*--max-image-pixels N")
    with gk.max_image_pixels(2047), refused:  # the option's Python form (CLI: --max-image-pixels)
        load_image(str(path), "row 3")
    with gk.max_image_pixels(2048):
        assert load_image(str(path), "row 3").size == (64, 32)
    with gk.max_image_pixels(0):  # no limit
        assert load_image(str(path), "row 3").size == (64, 32)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's own setting is left as it was


def test_pils_default_limit_refuses_a_real_bomb(tmp_path):
    """A 10000 x 10000 PNG of one colour: 0.1 MB on disk, 300 MB decoded; refused before decoding."""
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("1", (10000, 10000)).save(path, optimize=True)
    assert path.stat().st_size < 200_000
    with pytest.raises(DataError, match=r"bomb\.png' is too large to decode safely \(10000 x 10000 = "
                                        r"100,000,000 pixels\): the limit is 89,478,485 pixels"):
        load_image(str(path), "row 1")


def _saved(tmp_path, image, name, **options) -> str:
    path = tmp_path / name
    image.save(path, **options)
    return str(path)


def test_cmyk_images_convert_to_the_right_colours(tmp_path):
    from PIL import Image

    image = Image.new("CMYK", (2, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # pure cyan
    image.putpixel((1, 0), (0, 0, 0, 0))  # no ink: white
    for name in ("cmyk.tiff", "cmyk.jpg"):
        options = {"quality": 100} if name.endswith("jpg") else {}
        rgb = np.asarray(load_image(_saved(tmp_path, image.resize((16, 8), Image.NEAREST), name, **options), "row 1"))
        assert np.abs(rgb[4, 2].astype(int) - (0, 255, 255)).max() <= 8, (name, rgb[4, 2])
        assert np.abs(rgb[4, 13].astype(int) - (255, 255, 255)).max() <= 8, (name, rgb[4, 13])


def test_palette_with_a_transparent_index_is_composited_on_white(tmp_path):
    from PIL import Image

    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)  # index 0 black (transparent), index 1 red
    image.putpixel((0, 0), 1)
    path = _saved(tmp_path, image, "palette.png", transparency=0)
    rgb = np.asarray(load_image(path, "row 1"))
    assert tuple(rgb[0, 0]) == (200, 30, 30) and tuple(rgb[3, 3]) == (255, 255, 255)  # not black
    assert np.asarray(load_image(_saved(tmp_path, image, "palette.gif", transparency=0), "row 1"))[3, 3].min() == 255


def test_grey_with_alpha_and_rgb_with_a_colour_key_are_composited_on_white(tmp_path):
    from PIL import Image

    grey = Image.new("LA", (2, 2), (0, 0))
    assert np.asarray(load_image(_saved(tmp_path, grey, "la.png"), "row 1")).min() == 255
    keyed = Image.new("RGB", (2, 2), (10, 20, 30))
    keyed.putpixel((0, 0), (200, 30, 30))
    rgb = np.asarray(load_image(_saved(tmp_path, keyed, "key.png", transparency=(10, 20, 30)), "row 1"))
    assert tuple(rgb[0, 0]) == (200, 30, 30) and tuple(rgb[1, 1]) == (255, 255, 255)


@pytest.mark.parametrize("orientation, size", [(1, (6, 4)), (3, (6, 4)), (6, (4, 6)), (8, (4, 6))])
def test_exif_orientation_is_applied(tmp_path, orientation, size):
    from PIL import Image

    image = Image.new("RGB", (6, 4), (255, 255, 255))
    image.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb = load_image(_saved(tmp_path, image, f"o{orientation}.png", exif=exif), "row 1")
    assert rgb.size == size
    corners = {(0, 0): 1, (5, 3): 3, (3, 0): 6, (0, 5): 8}  # where the red pixel lands (x, y) after the rotation
    x, y = next(c for c, o in corners.items() if o == orientation)
    assert rgb.getpixel((x, y))[0] > 200 and rgb.getpixel((x, y))[1] < 60, (orientation, rgb.getpixel((x, y)))


def test_one_bit_and_float_images_keep_their_range(tmp_path):
    from PIL import Image

    bits = Image.new("1", (2, 1), 0)
    bits.putpixel((1, 0), 1)
    assert np.asarray(load_image(bits, "row 1"))[0, :, 0].tolist() == [0, 255]
    ramp = Image.fromarray(np.linspace(0, 1, 8, dtype=np.float32).reshape(1, 8), mode="F")
    grey = np.asarray(load_image(ramp, "row 1"))[0, :, 0]
    assert grey[0] == 0 and grey[-1] == 255 and np.all(np.diff(grey.astype(int)) > 0)


def test_a_clip_with_non_finite_samples_is_refused(tmp_path):
    import soundfile

    samples = np.sin(np.linspace(0, 100, 8000)).astype(np.float32)
    samples[100] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, samples, 8000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"row 2: file '.*nan\.wav' holds 1 non-finite sample"):
        load_audio(str(path), 16000, "row 2")


def test_a_truncated_cache_shard_is_embedded_again(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    calls = []

    def compute(positions):
        calls.append(list(positions))
        return np.arange(len(positions) * 3, dtype=np.float32).reshape(-1, 3) + 1

    first, _ = cache.lookup("f" * 64, ["a", "b"], compute)
    shard = next((tmp_path / ("f" * 32)).glob("*.npy"))
    shard.write_bytes(shard.read_bytes()[:-7])  # cut short, as a full disk or a killed write would leave it
    again, embedded = cache.lookup("f" * 64, ["a", "b"], compute)
    assert embedded == 2 and len(calls) == 2 and np.array_equal(first, again)
    assert "damaged" in caplog.text


def test_output_piped_into_a_reader_that_closes_early_exits_quietly(tiny_bert_dir, tmp_path):
    data = tmp_path / "train.csv"
    sentiment_frame(400).to_csv(data, index=False)
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False, C=1.0).fit(tmp_path / "train.csv")
    model.save(tmp_path / "model")
    script = Path(sys.executable).with_name("graftkit")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "graftkit.cli.main"]
    shell = f"{' '.join(command)} predict {tmp_path / 'model'} {data} | head -n 2"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=300)
    assert result.stdout.splitlines()[0].startswith("row,prediction")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode in (0, 141)


# -- generated inputs ---------------------------------------------------------------------------------------------
def _fitted_or_one_line_error(table, backbone) -> None:
    """The end of every generated reader case: a fitted model that predicts every row, or one clean error line."""
    try:
        task = gk.infer_task(table)
        model = gk.Graft(backbone=str(backbone), C=1.0, use_cache=False, progress=False, calibrate=False,
                         task=task.kind).fit(table)
        assert len(model.predict(table)) == len(table)
    except GraftkitError as exc:
        assert "\n" not in str(exc) and str(exc)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]))
def test_arbitrary_bytes_as_a_data_file_load_or_fail_in_one_line(tmp_path_factory, tiny_bert_dir, content, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(content)
    try:
        table = gk.load_data(path)
    except GraftkitError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    _fitted_or_one_line_error(table, tiny_bert_dir)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.text(max_size=12), st.one_of(st.sampled_from(["pos", "neg", "NA", "", "1", "1.0"]),
                                                                st.text(max_size=4))), min_size=2, max_size=10),
       suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]), drop=st.booleans())
def test_generated_tables_in_every_format_fit_or_fail_in_one_line(tmp_path_factory, tiny_bert_dir, rows, suffix,
                                                                  drop):
    """Well-formed files of generated text and label spellings, written as each format writes them."""
    frame = pd.DataFrame(rows, columns=["text", "label"])
    path = tmp_path_factory.mktemp("tables") / f"data{suffix}"
    try:
        if suffix == ".parquet":
            frame.to_parquet(path)
        elif suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(path, index=False, sep="," if suffix == ".csv" else "\t")
    except (UnicodeEncodeError, ValueError):
        return  # text pandas itself cannot write (a lone surrogate)
    try:
        table = gk.load_data(path, drop_missing=drop)
    except GraftkitError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    _fitted_or_one_line_error(table, tiny_bert_dir)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=4),
       labels=st.lists(st.one_of(st.sampled_from(["NA", "null", "None", "-", "nan", "1", "1.0", "", " pos "]),
                                 st.text(max_size=6)), min_size=4, max_size=12), drop=st.booleans())
def test_random_column_names_and_label_spellings(tiny_bert_dir, names, labels, drop):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": labels})
    frame.columns = ["text", names[0]]
    try:
        table = gk.load_data(frame, text="text", label=names[0], drop_missing=drop)
        task = gk.infer_task(table)
        y = task.encode(table)
    except GraftkitError as exc:
        assert "\n" not in str(exc)
        return
    assert len(y) == len(table) <= len(labels)
    missing = {"na", "n/a", "nan", "null", "none", "-", "?"}
    if task.kind == "classification":  # a missing-value spelling never becomes a class of its own
        assert not {c.lower() for c in task.labels} & missing and "1.0" not in task.labels
    _fitted_or_one_line_error(table, tiny_bert_dir)


@pytest.fixture(scope="module")
def saved_model(tiny_bert_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved")
    data = folder / "train.csv"
    sentiment_frame(40).to_csv(data, index=False)
    return gk.Graft(backbone=str(tiny_bert_dir), C=1.0, use_cache=False, progress=False).fit(data).save(folder / "m")


def _paths(value, prefix=()):
    """Every field of a parsed manifest, nested ones included, as key paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))


def _saved_paths(model_dir: Path) -> list[tuple]:
    return list(_paths(json.loads((model_dir / "manifest.json").read_text())))


@pytest.fixture(scope="module")
def finetuned_model(tiny_bert_dir, tmp_path_factory) -> Path:
    """A fine-tuned model (backbone/ files in the manifest's hashes, a 'training' entry), one epoch on 40 rows."""
    folder = tmp_path_factory.mktemp("finetuned")
    return gk.Graft(backbone=str(tiny_bert_dir), strategy="finetune", epochs=1, val_size=0, patience=0,
                    use_cache=False, progress=False).fit(sentiment_frame(40)).save(folder / "m")


RETYPED = {"string": "x", "list": [1], "number": 7, "null": None, "bool": True, "object": {"a": 1}}


def _edit(model: Path, copy: Path, path: tuple, change: str) -> None:
    shutil.copytree(model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    if change == "delete":
        parent.pop(path[-1])
    else:
        parent[path[-1]] = RETYPED[change]
    (copy / "manifest.json").write_text(json.dumps(manifest))


def _check_refused(copy: Path, path: tuple, original) -> None:
    try:
        gk.load(copy, progress=False).predict(["good film"])
    except GraftkitError as exc:
        message = str(exc)
        assert "\n" not in message and "manifest.json" in message
        # names the field, the entry holding it, or the field inside it that went missing
        assert any(f"'{'.'.join(path[:i])}" in message for i in range(1, len(path) + 1)), message
        return
    raise AssertionError(f"an edit of {'.'.join(path)} (was {original!r}) was accepted")


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), change=st.sampled_from(["delete", *RETYPED]))
def test_every_manifest_field_deleted_or_retyped_is_one_error(saved_model, tmp_path_factory, data, change):
    """Any field, at any depth: deleted or given another type, the load fails in one line naming the field (or the
    entry holding it, whose digest no longer matches) — never a traceback, never a silently different model."""
    path = data.draw(st.sampled_from(_saved_paths(saved_model)), label="field")
    manifest = json.loads((saved_model / "manifest.json").read_text())
    original = manifest
    for key in path:
        original = original[key]
    if path == ("backbone", "source", "spec") and change in ("string", "object"):
        change = "null"  # another location is a legal edit (its weights are verified); "x" would be a Hub id
    if original == RETYPED.get(change, object()):
        return  # not a change
    copy = tmp_path_factory.mktemp("edited") / "m"
    _edit(saved_model, copy, path, change)
    _check_refused(copy, path, original)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), change=st.sampled_from(["delete", "string", "null"]))
def test_every_field_of_a_finetuned_manifest_deleted_or_retyped_is_one_error(finetuned_model, tmp_path_factory,
                                                                             data, change):
    path = data.draw(st.sampled_from([p for p in _saved_paths(finetuned_model)
                                      if p != ("backbone", "source", "spec")]), label="field")
    original = json.loads((finetuned_model / "manifest.json").read_text())
    for key in path:
        original = original[key]
    if original == RETYPED.get(change, object()):
        return
    copy = tmp_path_factory.mktemp("edited-ft") / "m"
    _edit(finetuned_model, copy, path, change)
    _check_refused(copy, path, original)


def _model_files(model: Path) -> list[str]:
    return sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file() and p.name != "README.md")


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), keep=st.floats(0, 0.99))
def test_every_model_file_truncated_is_one_error(saved_model, finetuned_model, tmp_path_factory, data, keep):
    """Every file the model reads (manifest, head, labels, fine-tuned backbone files), cut at any length."""
    model = data.draw(st.sampled_from([saved_model, finetuned_model]), label="model")
    name = data.draw(st.sampled_from(_model_files(model)), label="file")
    copy = tmp_path_factory.mktemp("truncated") / "m"
    shutil.copytree(model, copy)
    content = (copy / name).read_bytes()
    (copy / name).write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(GraftkitError) as error:
        gk.load(copy, progress=False)
    message = str(error.value)
    assert "\n" not in message and (name in message or "manifest.json" in message), message


def test_every_file_the_model_reads_is_hashed(finetuned_model):
    manifest = json.loads((finetuned_model / "manifest.json").read_text())
    assert set(manifest["files"]) == set(_model_files(finetuned_model)) - {"manifest.json"}
    assert manifest["schema_version"] == 2 and set(manifest["digest"]) == set(manifest) - {"digest"}


def test_reordered_labels_in_the_manifest_are_refused(saved_model, tmp_path):
    """Issue example 4: reordering the label list by hand silently halved the accuracy; now it is refused."""
    copy = tmp_path / "m"
    shutil.copytree(saved_model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["task"]["labels"] = manifest["task"]["labels"][::-1]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"manifest\.json: the field 'task' does not match its digest"):
        gk.load(copy, progress=False)


def test_reordered_labels_json_with_its_hash_updated_is_refused(saved_model, tmp_path):
    """labels.json rewritten in another order and its hash in 'files' updated to match: 'files' no longer matches its
    digest; with the digests updated too (a deliberate forgery) labels.json still disagrees with 'task'."""
    from graftkit.manifest import sign

    copy = tmp_path / "m"
    shutil.copytree(saved_model, copy)
    labels = json.loads((copy / "labels.json").read_text())[::-1]
    (copy / "labels.json").write_text(json.dumps(labels))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["labels.json"] = hashlib.sha256((copy / "labels.json").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"the field 'files' does not match its digest"):
        gk.load(copy, progress=False)
    manifest["digest"] = sign(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"labels\.json and manifest\.json's 'task' give different labels"):
        gk.load(copy, progress=False)


def _as_schema_1(model: Path, copy: Path) -> dict:
    """The model as graftkit wrote it before the schema had a version and a digest."""
    shutil.copytree(model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.pop("schema_version")
    manifest.pop("digest")
    manifest = {"format_version": 1, **manifest}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_a_schema_1_manifest_is_migrated_and_its_labels_checked(saved_model, tmp_path, caplog):
    old = tmp_path / "old"
    manifest = _as_schema_1(saved_model, old)
    texts = ["good great film", "bad awful plot"]
    expected = gk.load(saved_model, progress=False).predict_proba(texts)
    np.testing.assert_array_equal(gk.load(old, progress=False).predict_proba(texts), expected)
    assert "older graftkit (manifest schema 1" in caplog.text
    manifest["task"]["labels"] = manifest["task"]["labels"][::-1]  # unsigned, but labels.json disagrees
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"labels\.json and manifest\.json's 'task' give different labels"):
        gk.load(old, progress=False)
    manifest["format_version"] = 3
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"the field 'format_version' is 3, newer than this graftkit reads"):
        gk.load(old, progress=False)


def test_a_newer_schema_is_refused(saved_model, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(saved_model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 3
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"the field 'schema_version' is 3, newer than this graftkit reads \(2\); upgrade"):
        gk.load(copy, progress=False)


def test_the_base_location_may_be_edited(saved_model, tiny_bert_dir, tmp_path):
    """The one unsigned value: the base moved, the user points the manifest at its new folder (weights verified)."""
    moved = tmp_path / "moved-base"
    shutil.copytree(tiny_bert_dir, moved)
    copy = tmp_path / "m"
    shutil.copytree(saved_model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["backbone"]["source"]["spec"] = str(moved)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert gk.load(copy, progress=False).predict(["good great film"])[0] in ("neg", "pos")


def test_a_second_process_writing_the_same_output_is_refused(tiny_bert_dir, tmp_path, capsys):
    from graftkit.cli.main import main

    data = tmp_path / "train.csv"
    sentiment_frame(40).to_csv(data, index=False)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".out.lock").write_text(str(holder.pid))  # a live process holds the output
        code = main(["fit", str(data), "--backbone", str(tiny_bert_dir), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and f"another graftkit process (pid {holder.pid}) is writing" in err
        assert not (tmp_path / "out").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over, and released after the run
    assert main(["-q", "fit", str(data), "--backbone", str(tiny_bert_dir), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "manifest.json").is_file() and not (tmp_path / ".out.lock").exists()


# -- missing labels: refused, or dropped with --drop-missing ----------------------------------------------------
def _with_missing_labels() -> pd.DataFrame:
    frame = sentiment_frame(40)
    frame.loc[[2, 5, 11], "label"] = ["NA", "", "null"]  # data rows 3, 6 and 12
    return frame


def test_drop_missing_drops_the_rows_and_says_which(caplog):
    table = gk.load_data(_with_missing_labels(), drop_missing=True)
    assert len(table) == 37 and list(table.frame.index[:3]) == [1, 2, 4]  # row numbers stay the file's
    line = "dropped 3 of 40 row(s) whose label is missing (blank, NA, null, ...) (row 3, 6, 12)"
    assert any(line in text for text in table.explanation) and line in caplog.text
    assert gk.infer_task(table).labels == ("neg", "pos")
    with pytest.raises(DataError, match=r"row 3, column 'label': label 'NA' looks like a missing value \(2 row\(s\)\); "
                                        r"drop_missing=True / --drop-missing drops those rows"):
        gk.infer_task(gk.load_data(_with_missing_labels().replace({"": "pos"})))


def test_drop_missing_keeps_every_row_for_predict():
    table = gk.load_data(_with_missing_labels(), drop_missing=True, require_label=False)
    assert len(table) == 40


def test_drop_missing_leaving_nothing_is_refused():
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["NA", "-"]})
    with pytest.raises(DataError, match="every row's label is missing"):
        gk.load_data(frame, drop_missing=True)


def test_cli_drop_missing_fits_and_reports_the_count(tiny_bert_dir, tmp_path, capsys, caplog):
    from graftkit.cli.main import main

    data = tmp_path / "train.csv"
    _with_missing_labels().to_csv(data, index=False)
    argv = ["fit", str(data), "--backbone", str(tiny_bert_dir), "--C", "1", "--test-size", "0", "-o",
            str(tmp_path / "m")]
    assert main(argv) == 2
    assert "--drop-missing drops those rows" in capsys.readouterr().err
    assert main([*argv, "--drop-missing"]) == 0
    assert "dropped 3 of 40 row(s) whose label is missing (blank, NA, null, ...) (row 3, 6, 12)" in caplog.text
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["task"]["labels"] == ["neg", "pos"] and manifest["data"]["rows"] == 37


@settings(max_examples=examples(40), deadline=None)
@given(spellings=st.lists(st.sampled_from(["NA", "n/a", "NaN", "null", "None", "-", "?", "", " na "]), min_size=1,
                          max_size=6), task=st.sampled_from(["classification", "regression"]))
def test_generated_missing_spellings_are_dropped_for_every_task(spellings, task):
    values = ["pos", "neg"] * 6 if task == "classification" else [str(i / 3) for i in range(12)]
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(12 + len(spellings))], "label": values + spellings})
    table = gk.load_data(frame, drop_missing=True)
    assert len(table) == 12
    assert len(gk.infer_task(table, task).encode(table)) == 12


# -- interrupts: what Ctrl-C leaves is what the message says --------------------------------------------------
def _interrupt_lines(err: str) -> list[str]:
    """The interrupt note (after a progress bar the interrupt left without its newline)."""
    return ["graftkit: interrupted" + line.split("graftkit: interrupted", 1)[1] for line in err.splitlines()
            if "graftkit: interrupted" in line]


def _interrupt_training(monkeypatch, callback) -> None:
    import graftkit.training.fit as training_fit

    original = training_fit.train_model

    def with_interrupt(*args, callbacks=(), **kwargs):
        return original(*args, callbacks=[*callbacks, callback], **kwargs)

    monkeypatch.setattr(training_fit, "train_model", with_interrupt)


def test_ctrl_c_during_fine_tuning_keeps_the_checkpoints_and_says_how_to_resume(tiny_bert_dir, tmp_path, monkeypatch,
                                                                                capsys):
    """Issue example 5: the message is true. The sealed epoch is kept, the line gives the command's --resume, and
    resuming finishes the run (the checkpoints go once the model is saved)."""
    from conftest import stop_after_epoch

    from graftkit.cli.main import main

    data = tmp_path / "train.csv"
    sentiment_frame(40).to_csv(data, index=False)
    out, checkpoints = tmp_path / "out", tmp_path / "out.checkpoints"
    argv = ["fit", str(data), "--backbone", str(tiny_bert_dir), "--strategy", "finetune", "--epochs", "2",
            "--val-size", "0", "--patience", "0", "--test-size", "0", "-o", str(out)]
    with monkeypatch.context() as patch:
        _interrupt_training(patch, stop_after_epoch(1))
        assert main(argv) == 130
    last = _interrupt_lines(capsys.readouterr().err)
    expected = (f"graftkit: interrupted; the model was not written; 1 complete epoch checkpoint(s) are kept in "
                f"{checkpoints}: run the same command with --resume {checkpoints} to continue, or delete that folder")
    assert last == [expected]
    assert not out.exists() and (checkpoints / "graftkit-run.json").is_file()
    assert main([*argv, "--resume", str(checkpoints)]) == 0
    assert (out / "manifest.json").is_file() and not checkpoints.exists()


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    from transformers import TrainerCallback

    from graftkit.cli.main import main

    class CtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            raise KeyboardInterrupt

    data = tmp_path / "train.csv"
    sentiment_frame(40).to_csv(data, index=False)
    _interrupt_training(monkeypatch, CtrlC())
    code = main(["fit", str(data), "--backbone", str(tiny_bert_dir), "--strategy", "finetune", "--epochs", "2",
                 "--val-size", "0", "--patience", "0", "--test-size", "0", "-o", str(tmp_path / "out")])
    lines = _interrupt_lines(capsys.readouterr().err)
    assert code == 130 and lines == ["graftkit: interrupted; nothing was written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]  # no out, no out.checkpoints, no lock


# -- temporary files: under the run's own directory, gone when it ends ----------------------------------------
def test_a_run_keeps_its_temporary_files_and_compile_caches_in_its_own_directory(monkeypatch, capsys):
    import os
    import tempfile

    import graftkit.cli.models
    from graftkit.cli.main import main

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    seen = {}

    def command(args):
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        scratch = Path(tempfile.gettempdir())
        with tempfile.NamedTemporaryFile(delete=False) as handle:  # a library's scratch file, left behind by it
            handle.write(b"x")
        seen.update(scratch=scratch, file=Path(handle.name), inductor=Path(cache_dir()),
                    triton=Path(os.environ["TRITON_CACHE_DIR"]), tmpdir=Path(os.environ["TMPDIR"]))
        Path(cache_dir()).mkdir(parents=True, exist_ok=True)
        raise KeyboardInterrupt  # the run ends badly: its directory still goes

    monkeypatch.setattr(graftkit.cli.models, "run_models", command)
    before = tempfile.gettempdir()
    assert main(["models"]) == 130
    scratch = seen["scratch"]
    assert scratch.name.startswith("graftkit-run-") and str(scratch.parent) == before
    assert all(seen[k].is_relative_to(scratch) for k in ("file", "inductor", "triton", "tmpdir"))
    assert not scratch.exists() and tempfile.gettempdir() == before
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ and "TRITON_CACHE_DIR" not in os.environ


def test_a_compile_cache_the_user_placed_is_left_where_it_is(monkeypatch, tmp_path):
    import os

    from graftkit.cli.run_scope import run_scope

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    with run_scope() as scratch:
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
        assert os.environ["TRITON_CACHE_DIR"].startswith(str(scratch))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


# -- the issue's examples, each as its own test (the rest are named in docs/hostile_inputs.md) ----------------------
@pytest.mark.parametrize("spelling", ["NA", "null", "None", "nan", "-"])
def test_issue_a_missing_value_spelling_in_a_csv_is_not_a_class(spelling, tmp_path):
    path = tmp_path / "train.csv"
    frame = sentiment_frame(20)
    frame.loc[4, "label"] = spelling
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"train\.csv: row 5, column 'label': label '{spelling}' looks like a missing "
                                        r"value .*--drop-missing"):
        gk.infer_task(gk.load_data(path))
    assert gk.infer_task(gk.load_data(path, drop_missing=True)).labels == ("neg", "pos")


def test_issue_labels_1_and_1_0_in_one_csv_column_are_one_class(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": [f"t {i}" for i in range(8)], "label": ["1", "1.0", "0", "0.0"] * 2}).to_csv(path, index=False)
    task = gk.infer_task(gk.load_data(path))
    assert task.labels == ("0", "1") and task.encode(gk.load_data(path)).tolist() == [1, 1, 0, 0] * 2


def test_issue_list_labels_in_a_jsonl_file_are_multi_label_not_strings(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"text": f"t {i}", "label": [["card_arrival"], ["top_up"], ["card_arrival", "top_up"]][i % 3]}
            for i in range(9)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = gk.infer_task(gk.load_data(path))
    assert task.kind == "multilabel-classification" and task.labels == ("card_arrival", "top_up")
    assert "['card_arrival']" not in task.labels
    with pytest.raises(DataError, match=r"the label is a list \(\['card_arrival'\]\); .*--task multilabel"):
        gk.infer_task(gk.load_data(path), "classification")


def test_issue_a_clip_with_nan_samples_fails_the_cli_in_one_line(tmp_path, capsys):
    """Through `graftkit fit` on an audio folder: the clip is named, exit 2, no traceback."""
    import soundfile
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from graftkit.cli.main import main

    backbone = tmp_path / "w2v"
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(backbone)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(backbone)
    for label, freq in (("high", 880.0), ("low", 220.0)):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(3):
            tone = (np.sin(2 * np.pi * freq * np.arange(1600) / 16000) * 0.3).astype(np.float32)
            if label == "low" and i == 1:
                tone[10:20] = np.nan
            soundfile.write(tmp_path / "clips" / label / f"{i}.wav", tone, 16000, subtype="FLOAT")
    code = main(["-q", "fit", str(tmp_path / "clips"), "--backbone", str(backbone), "--C", "1", "--test-size", "0",
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and not (tmp_path / "out").exists()
    assert re.search(r"row \d+, column 'path': file '[^']*low/1\.wav' holds 10 non-finite sample", err.splitlines()[-1])


@pytest.mark.parametrize("command", ["predict", "evaluate", "report"])
def test_a_second_process_writing_a_prediction_file_report_or_evaluation_is_refused(saved_model, tmp_path, command,
                                                                                    capsys):
    from graftkit.cli.main import main

    model = tmp_path / "m"
    shutil.copytree(saved_model, model)
    data = tmp_path / "new.csv"
    sentiment_frame(10).to_csv(data, index=False)
    argv, locked = {"predict": (["predict", str(model), str(data), "-o", str(tmp_path / "p.csv")], tmp_path / "p.csv"),
                    "evaluate": (["evaluate", str(model), str(data), "--save", "--no-baseline"], model),
                    "report": (["report", str(model), "-o", str(tmp_path / "r.html")], tmp_path / "r.html")}[command]
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = locked.parent / f".{locked.name}.lock"
    try:
        lock.write_text(str(holder.pid))
        assert main(argv) == 2
        assert f"another graftkit process (pid {holder.pid}) is writing" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
        lock.unlink()
    assert main(argv) == 0 and not lock.exists()


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                                  "LAB", "HSV", "I", "I;16", "I;16B", "I;16L", "F"])
def test_every_pil_mode_converts_to_rgb(mode):
    from PIL import Image

    rgb = load_image(Image.new(mode, (3, 2)), "row 1")
    assert rgb.mode == "RGB" and rgb.size == (3, 2)


def test_a_lab_image_keeps_its_colours_in_a_tiff(tmp_path):
    """LAB's A is a colour axis, not alpha: a red CIELab TIFF stays red (it was once composited as if transparent)."""
    from PIL import Image

    lab = Image.new("LAB", (2, 1))
    lab.putpixel((0, 0), (136, 208, 195))  # L 53, a +80, b +67 (signed): red
    lab.putpixel((1, 0), (0, 128, 128))  # L 0: dark
    path = _saved(tmp_path, lab, "lab.tif")
    rgb = np.asarray(load_image(path, "row 1")).astype(int)
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 60 and rgb[0, 1].max() < 200


@pytest.mark.parametrize("labels", [["pos", "pos"], ["neg", 1], "neg"])
def test_a_damaged_label_list_in_an_unsigned_manifest_is_refused(saved_model, tmp_path, labels):
    """Schema 1 manifests carry no digest: the task entry itself is checked (task_from_dict)."""
    old = tmp_path / "old"
    manifest = _as_schema_1(saved_model, old)
    manifest["task"]["labels"] = labels
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.ArtifactError, match=r"manifest\.json: the field 'task\.labels' must be a list of distinct "
                                               r"strings"):
        gk.load(old, progress=False)


@pytest.mark.parametrize("raised, expected, code", [
    (OSError(28, "No space left on device", "/data/out/head.safetensors"),
     "graftkit: error: No space left on device: '/data/out/head.safetensors'; free some space or write elsewhere", 2),
    (OSError(30, "Read-only file system"), "graftkit: error: Read-only file system; the file system is read-only", 2),
    (MemoryError(), "graftkit: error: out of memory; lower --batch-size", 2),
    (OSError(5, "Input/output error"), "graftkit: internal error (the traceback above)", 1),
    (RuntimeError("a bug"), "graftkit: internal error (the traceback above)", 1),
])
def test_the_cli_turns_user_caused_os_errors_into_one_line(monkeypatch, capsys, raised, expected, code):
    import graftkit.cli.models
    from graftkit.cli.main import main

    def command(args):
        raise raised

    monkeypatch.setattr(graftkit.cli.models, "run_models", command)
    assert main(["models"]) == code
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(expected), err
    if code == 2:
        assert "Traceback" not in err and len(err.splitlines()) == 1
    else:
        assert "Traceback" in err


def test_a_device_out_of_memory_is_one_line(monkeypatch, capsys):
    import torch

    import graftkit.cli.models
    from graftkit.cli.main import main

    def command(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(graftkit.cli.models, "run_models", command)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == ("graftkit: error: the device ran out of memory (CUDA out of memory. Tried to "
                                       "allocate 2.00 GiB); lower --batch-size, or use --device cpu\n")
