"""Multi-input tables (issue 12): roles, the featurizer, the fusion model end to end on a tiny BERT, the bad
inputs (each one line naming the row / column and the fix, exit 2 from the CLI), and one slow test on the real
women's clothing reviews with MiniLM."""

from __future__ import annotations

import logging
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from conftest import WORDS, examples, shared_path
from graftkit.cli.main import main
from graftkit.data import load_data
from graftkit.errors import DataError
from graftkit.fusion import FusionModel, load_fusion
from graftkit.fusion.baseline import ClassicalFusion
from graftkit.fusion.encoders import FrozenEncoder
from graftkit.fusion.featurize import Featurizer

FAST = {"progress": False, "calibration_folds": 2, "head_params": {"max_iter": 30}}


def table_frame(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """Label carried by the review words for half of it and by ``age`` for the other half: both sources matter."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(WORDS["neutral"], 3) + [rng.choice(WORDS[label]) for _ in range(2)]
        rng.shuffle(words)
        age = rng.randint(50, 70) if label == "pos" else rng.randint(20, 40)
        rows.append({"title": rng.choice(["nice", "ok", ""]), "review": " ".join(words),
                     "age": "" if i % 7 == 0 else str(age), "dept": rng.choice(["Tops", "Dresses", ""]),
                     "score": str(age / 10 + (1 if label == "pos" else 0)), "label": label})
    return pd.DataFrame(rows)


ROLES = {"text": ["title", "review"], "numeric": ["age"], "categorical": ["dept"]}


def test_roles_are_inferred_with_their_reasons():
    frame = table_frame()
    frame["long"] = [" ".join(["word"] * 12) + str(i) for i in range(len(frame))]
    table = load_data(frame, label="label", roles="infer")
    assert dict(table.roles.media)["long"] == "text"
    assert "age" in table.roles.numeric and "dept" in table.roles.categorical
    assert any("'dept'" in line and "distinct values" in line for line in table.explanation)
    assert table.label_column == "label" and "label" not in table.roles.columns


def test_single_input_tables_are_unchanged():
    table = load_data(table_frame(), text="review", label="label")
    assert table.roles is None and table.modality == "text" and table.input_column == "review"


def test_missing_tabular_values_stay_missing_for_the_trees(tiny_bert_dir):
    table = load_data(table_frame(), label="label", **ROLES)
    encoder = FrozenEncoder(str(tiny_bert_dir), progress=False)
    featurizer = Featurizer(table.roles, {"title": encoder, "review": encoder})
    X = featurizer.fit_transform(table)
    age = X[:, featurizer.groups["age"][0]]
    assert np.isnan(age[0]) and not np.isnan(age[1])  # row 1 (i = 0) has a blank age
    assert featurizer.categorical_mask[featurizer.groups["dept"]].all()
    assert len(X) == len(table)  # no row dropped


def test_a_shared_backbone_embeds_each_distinct_text_once(tiny_bert_dir):
    frame = table_frame()
    frame["title"] = frame["review"]  # the same texts in both columns
    table = load_data(frame, label="label", text=["title", "review"])
    encoder = FrozenEncoder(str(tiny_bert_dir), progress=False)
    Featurizer(table.roles, {"title": encoder, "review": encoder}).fit_transform(table)
    assert encoder.embedded == frame["review"].nunique()


def test_reduction_is_fitted_on_training_rows_only(tiny_bert_dir):
    table = load_data(table_frame(), label="label", **ROLES)
    train, test = table.split(0.25, seed=0)
    encoder = FrozenEncoder(str(tiny_bert_dir), progress=False)
    featurizer = Featurizer(table.roles, {"title": encoder, "review": encoder}, reduce="pca", components=4)
    featurizer.fit_transform(train)
    fitted = featurizer.arrays["reduce.review"].copy()
    X = featurizer.transform(test)
    assert np.array_equal(featurizer.arrays["reduce.review"], fitted) and len(featurizer.groups["review"]) == 4
    assert X.shape == (len(test), 4 + 4 + 1 + 1)


@pytest.mark.parametrize("head", ["gbdt", "linear"])
def test_fit_save_load_predicts_the_same(tiny_bert_dir, tmp_path, head):
    table = load_data(table_frame(), label="label", **ROLES)
    train, test = table.split(0.25, seed=0)
    model = FusionModel({"text": str(tiny_bert_dir)}, head=head, **FAST).fit(train)
    metrics = model.evaluate(test)
    assert metrics["accuracy"] > 0.7
    assert set(metrics["feature_groups"]["groups"]) == {"title", "review", "all text", "tabular"}
    model.save(tmp_path / "m")
    loaded = load_fusion(tmp_path / "m", progress=False)
    assert np.array_equal(loaded.outputs(test), model.outputs(test))
    assert loaded.predict(test) == model.predict(test)


def test_regression_target(tiny_bert_dir, tmp_path):
    from graftkit.tasks import infer_task

    table = load_data(table_frame(120), label="score", **ROLES)
    train, test = table.split(0.25, seed=0, task=infer_task(table))
    model = FusionModel({"text": str(tiny_bert_dir)}, **FAST).fit(train)
    assert model.task_.kind == "regression"
    assert model.evaluate(test)["r2"] > 0.5
    records = model.predict_records(test)
    assert {"prediction", "lower", "upper"} <= set(records[0])
    model.save(tmp_path / "r")
    assert np.array_equal(load_fusion(tmp_path / "r", progress=False).outputs(test), model.outputs(test))


def test_importance_follows_the_signal(tiny_bert_dir):
    frame = table_frame(120)
    frame["review"] = [" ".join(random.Random(i).sample(WORDS["neutral"], 4)) for i in range(len(frame))]  # noise
    table = load_data(frame, label="label", text=["review"], numeric=["age"])
    train, test = table.split(0.25, seed=0)
    groups = FusionModel({"text": str(tiny_bert_dir)}, **FAST).fit(train).evaluate(test)["feature_groups"]["groups"]
    assert groups["tabular"]["drop"] > groups["review"]["drop"] + 0.2


def test_baseline_tfidf_and_tabular(tiny_bert_dir):
    table = load_data(table_frame(120), label="label", **ROLES)
    train, test = table.split(0.25, seed=0)
    from graftkit.tasks import infer_task

    task = infer_task(train)
    base = ClassicalFusion(task, max_iter=30).fit(train)
    assert task.primary(task.encode(test), task.outputs(base.raw_outputs(test), None)) > 0.7


def test_two_stage_lora_round_trip(tiny_bert_dir, tmp_path):
    table = load_data(table_frame(), label="label", **ROLES)
    train, test = table.split(0.25, seed=0)
    model = FusionModel({"text": str(tiny_bert_dir)}, encoder="lora", tune_params={"epochs": 1}, **FAST).fit(train)
    assert model.featurizer_.encoders["review"].kind == "tuned"
    model.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "encoders" / "0" / "manifest.json").is_file()
    loaded = load_fusion(tmp_path / "lora", progress=False)
    np.testing.assert_allclose(loaded.outputs(test), model.outputs(test), atol=1e-5)


# -- bad inputs -------------------------------------------------------------------------------------------------
@settings(max_examples=examples(15))
@given(row=st.integers(0, 79), junk=st.text(min_size=1, max_size=8).filter(
    lambda s: s.strip() and not _is_number(s)))
def test_text_in_a_numeric_column_names_the_row(row, junk):
    frame = table_frame()
    frame.loc[row, "age"] = junk
    with pytest.raises(DataError, match=rf"row {row + 1}, column 'age' .*not a number"):
        load_data(frame, label="label", **ROLES)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_an_unseen_category_at_predict_time_is_missing_and_said(tiny_bert_dir, caplog):
    table = load_data(table_frame(), label="label", **ROLES)
    model = FusionModel({"text": str(tiny_bert_dir)}, **FAST).fit(table)
    new = table_frame(6, seed=3)
    new.loc[2, "dept"] = "Swimwear"
    with caplog.at_level(logging.WARNING):
        predictions = model.predict(new.drop(columns="label"))
    assert len(predictions) == 6
    assert any("'dept'" in r.message and "'Swimwear'" in r.message and "first row 3" in r.message
               and "treated as missing" in r.message for r in caplog.records)


def test_a_column_named_twice_is_refused():
    with pytest.raises(DataError, match="'age' is named in --numeric and --categorical"):
        load_data(table_frame(), label="label", text=["review"], numeric=["age"], categorical=["age"])
    with pytest.raises(DataError, match="'review' is named in --text twice"):
        load_data(table_frame(), label="label", text=["review", "review"], numeric=["age"])
    with pytest.raises(DataError, match="'label' is both the label and an input"):
        load_data(table_frame(), label="label", text=["review"], numeric=["label"])


def test_a_missing_image_file_names_the_row(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    frame = pd.DataFrame({"photo": ["a.png", "a.png", "gone.png"], "age": ["1", "2", "3"], "label": ["x", "y", "x"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"row 3, column 'photo': image file 'gone.png' does not exist"):
        load_data(tmp_path / "t.csv", label="label", image=["photo"], numeric=["age"])


def test_drop_missing_drops_the_unlabelled_rows_of_a_multi_input_table(tmp_path, caplog):
    frame = table_frame(30)
    frame.loc[3, "label"], frame.loc[6, "label"] = "NA", ""
    frame.to_csv(tmp_path / "t.csv", index=False)
    with caplog.at_level(logging.WARNING):
        table = load_data(tmp_path / "t.csv", label="label", drop_missing=True, **ROLES)
    assert len(table) == 28 and 4 not in table.frame.index and 7 not in table.frame.index
    assert table.frame.index[3] == 5  # the file's row numbers are kept
    line = next(line for line in table.explanation if line.startswith("dropped"))
    assert "2 of 30 row(s)" in line and "(row 4, 7)" in line and "--drop-missing" in line
    assert any("t.csv" in r.message and "dropped 2 of 30" in r.message for r in caplog.records)
    # the inputs' own missing values stay: a blank title is the empty text, a blank age or department is missing
    assert (table.frame["title"] == "").any() and (table.frame["age"] == "").any() and (table.frame["dept"] == "").any()
    from graftkit.tasks import infer_task

    assert len(infer_task(table).encode(table)) == 28
    # without it, the task refuses the first missing label in one line: file, row, column and the option
    kept = load_data(tmp_path / "t.csv", label="label", **ROLES)
    with pytest.raises(DataError, match=r"t\.csv: column 'label' is blank in 1 row\(s\) \(row 7\).*--drop-missing"):
        infer_task(kept).encode(kept)
    frame.loc[6, "label"] = "pos"
    frame.to_csv(tmp_path / "u.csv", index=False)
    only_na = load_data(tmp_path / "u.csv", label="label", **ROLES)
    with pytest.raises(DataError, match=r"u\.csv: row 4, column 'label': label 'NA' looks like a missing value"):
        infer_task(only_na).encode(only_na)
    # predict (no label needed) keeps every row
    assert len(load_data(tmp_path / "t.csv", label="label", drop_missing=True, require_label=False, **ROLES)) == 30


def test_drop_missing_reads_no_media_of_a_dropped_row_and_refuses_a_missing_image_elsewhere(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    frame = pd.DataFrame({"photo": ["a.png", "gone.png", "a.png", "a.png"], "age": ["1", "2", "", "4"],
                          "label": ["x", "", "y", "x"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = load_data(tmp_path / "t.csv", label="label", image=["photo"], numeric=["age"], drop_missing=True)
    assert list(table.frame.index) == [1, 3, 4]  # row 2 (no label) dropped before its photo was looked for
    with pytest.raises(DataError, match=r"row 2, column 'photo': image file 'gone.png' does not exist"):
        load_data(tmp_path / "t.csv", label="label", image=["photo"], numeric=["age"])
    frame.loc[2, "photo"] = ""  # a labelled row without its image: refused as for one input, never dropped
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"column 'photo' is empty in 1 row\(s\) \(row 3\)"):
        load_data(tmp_path / "t.csv", label="label", image=["photo"], numeric=["age"], drop_missing=True)


def test_auto_reads_its_validation_and_test_files_with_drop_missing(tmp_path):
    from graftkit.playbook.fusion import _load_like

    frame = table_frame(20)
    frame.loc[2, "label"] = "null"
    frame.to_csv(tmp_path / "test.csv", index=False)
    table = load_data(table_frame(30), label="label", **ROLES)
    assert len(_load_like(tmp_path / "test.csv", table, {"drop_missing": True})) == 19
    assert len(_load_like(tmp_path / "test.csv", table, {})) == 20


def test_cli_fuse_drop_missing_fits_and_says_how_many(tiny_bert_dir, tmp_path, capsys):
    frame = table_frame(40)
    frame.loc[[5, 9], "label"] = ["N/A", ""]
    frame.to_csv(tmp_path / "t.csv", index=False)
    flags = ["--label", "label", "--text", "review", "--numeric", "age", "--backbone", str(tiny_bert_dir),
             "--threads", "1"]
    code = main(["fuse", str(tmp_path / "t.csv"), *flags, "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "t.csv" in err[0] and "row 10" in err[0] and "'label'" in err[0]
    assert not (tmp_path / "m").exists()
    code = main(["fuse", str(tmp_path / "t.csv"), *flags, "--drop-missing", "-o", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert code == 0 and "dropped 2 of 40 row(s)" in out and "(row 6, 10)" in out
    import json

    assert json.loads((tmp_path / "m" / "fusion.json").read_text())["data"]["rows"] == 38 - round(38 * 0.2)


def test_no_input_column_left_is_refused():
    frame = pd.DataFrame({"Unnamed: 0": ["0", "1", "2"], "empty": ["", "", ""], "label": ["a", "b", "a"]})
    with pytest.raises(DataError, match="no input column is left once the roles are assigned"):
        load_data(frame, label="label", roles="infer")


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    frame = table_frame()
    frame.loc[4, "age"] = "forty"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    code = main(["fuse", str(tmp_path / "bad.csv"), "--label", "label", "--text", "review", "--numeric", "age"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("graftkit: error:") and "row 5, column 'age'" in err[-1]
    code = main(["fuse", str(tmp_path / "bad.csv"), "--label", "label", "--text", "review", "--numeric", "review"])
    assert code == 2 and "named in --text and --numeric" in capsys.readouterr().err


def test_cli_fuse_then_predict(tiny_bert_dir, tmp_path, capsys):
    table_frame(60).to_csv(tmp_path / "t.csv", index=False)
    table_frame(5, seed=9).drop(columns="label").to_csv(tmp_path / "new.csv", index=False)
    code = main(["fuse", str(tmp_path / "t.csv"), "--label", "label", "--text", "title", "review", "--numeric", "age",
                 "--categorical", "dept", "--backbone", str(tiny_bert_dir), "--cv", "2", "--baseline",
                 "-o", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert code == 0 and "feature-group importance" in out and "tabular" in out and "cv (2 folds)" in out
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 5 and set(predictions["prediction"]) <= {"pos", "neg"}
    code = main(["fuse", str(tmp_path / "t.csv"), "--label", "label", "--text", "review", "--backbone",
                 str(tiny_bert_dir), "-o", str(tmp_path / "m")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_real_clothing_reviews_fusion_beats_chance():
    path = shared_path("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).sample(n=240, random_state=0)
    table = load_data(frame, label="Recommended IND", text=["Title", "Review Text"],
                      numeric=["Age", "Positive Feedback Count"],
                      categorical=["Division Name", "Department Name", "Class Name"])
    train, test = table.split(0.25, seed=0)
    model = FusionModel(progress=False, reduce="pca", components=16, calibration_folds=0).fit(train)
    metrics = model.evaluate(test, repeats=2)
    from sklearn.metrics import roc_auc_score

    positive = model.task_.labels.index("1")
    y, outputs = model.last_predictions_["y_true"], model.last_predictions_["outputs"]
    assert roc_auc_score(y == positive, outputs[:, positive]) > 0.65
    assert metrics["feature_groups"]["groups"]["Review Text"]["drop"] >= 0.0
