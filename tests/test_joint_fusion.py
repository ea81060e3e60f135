"""Joint fusion (issue 12, item 4): an encoder trained on the one engine with the row's tabular columns concatenated
to its pooled embedding before the output layer (``FusionModel(encoder="joint")``, ``graftkit fuse --joint``):
it beats text alone and the tabular columns alone where the label needs both, round-trips through save / load,
fits a regression target, reads a category unseen in training as missing (and says so), runs from the CLI, and
refuses what it cannot do in one line. One slow test on the real women's clothing reviews with MiniLM."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pandas as pd
import pytest
from conftest import WORDS, shared_path

import graftkit as gk
from graftkit.cli.main import main
from graftkit.data import load_data
from graftkit.errors import ConfigError, DataError
from graftkit.fusion import FusionModel, load_fusion

pytestmark = pytest.mark.usefixtures("one_thread")

# settings that learn the toy task on the random tiny BERT in seconds (its LoRA needs a high learning rate)
TUNE = {"epochs": 8, "learning_rate": 0.02, "patience": 0}
FAST = {"progress": False, "batch_size": 16}
ROLES = {"text": ["title", "review"], "numeric": ["x"], "categorical": ["dept"]}


def joint_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """``label`` is pos iff t + x > 0: t = ±1 is carried by the review's sentiment words, x ~ U(-2, 2) is a
    numeric column. Text alone is wrong where |x| > 1 disagrees with t, x alone where |x| < 1 (each caps at
    0.75); both together separate the classes linearly. ``score`` = 2t + x + noise (regression)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t, x = rng.choice([-1, 1]), rng.uniform(-2, 2)
        words = rng.sample(WORDS["neutral"], 3) + [rng.choice(WORDS["pos" if t > 0 else "neg"]) for _ in range(2)]
        rng.shuffle(words)
        rows.append({"title": rng.choice(["nice", "ok", ""]), "review": " ".join(words),
                     "x": "" if i % 23 == 0 else f"{x:.3f}", "dept": rng.choice(["Tops", "Dresses", ""]),
                     "label": "pos" if t + x > 0 else "neg", "score": f"{2 * t + x + rng.gauss(0, 0.2):.3f}"})
    return pd.DataFrame(rows)


def joint(tiny_bert_dir, **params) -> FusionModel:
    return FusionModel({"text": str(tiny_bert_dir)}, encoder="joint", tune_params={**TUNE, **params.pop("tune", {})},
                       **FAST, **params)


@pytest.fixture(scope="module")
def split():
    return load_data(joint_frame(), label="label", **ROLES).split(0.25, seed=0)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, split):
    import torch

    torch.set_num_threads(1)
    return joint(tiny_bert_dir).fit(split[0])


def accuracy(model, test) -> float:
    return model.evaluate(test, importance=False)["accuracy"]


def test_joint_beats_text_alone_and_tabular_alone(tiny_bert_dir, fitted, split):
    train, test = split
    text_only = joint(tiny_bert_dir).fit(load_data(train.frame, label="label", text=["title", "review"], numeric=[]))
    tabular_only = FusionModel(progress=False, calibration_folds=2, head_params={"max_iter": 50}).fit(
        load_data(train.frame, label="label", numeric=["x"], categorical=["dept"]))
    scores = {"joint": accuracy(fitted, test),
              "text": text_only.evaluate(load_data(test.frame, label="label", text=["title", "review"], numeric=[]),
                                         importance=False)["accuracy"],
              "tabular": tabular_only.evaluate(load_data(test.frame, label="label", numeric=["x"],
                                                         categorical=["dept"]), importance=False)["accuracy"]}
    assert scores["joint"] >= 0.8, scores
    assert scores["joint"] >= max(scores["text"], scores["tabular"]) + 0.05, scores
    groups = fitted.evaluate(test)["feature_groups"]["groups"]
    assert set(groups) == {"title | review", "tabular"}  # the joined text is one group
    assert groups["title | review"]["drop"] > 0.03 and groups["tabular"]["drop"] > 0.03  # both sources are used


def test_the_engine_trains_one_output_layer_on_pooled_and_side_features(fitted):
    graft = fitted.featurizer_.graft
    side = fitted.featurizer_.side
    width = sum(len(g) for g in side.groups.values())  # x (imputed) + dept one-hot over its training categories
    assert width == 1 + 2 and graft.training_["side_features"] == width
    assert fitted.head_.arrays["weight"].shape == (2, 32 + width)  # tiny BERT's 32 pooled features, then the side
    assert graft.strategy == "lora" and graft.training_["adaptation"]
    assert "side features" in graft.training_["head_input"]
    assert fitted.calibration_["fitted_on"].startswith("the fine-tuning validation split")


def test_save_load_round_trip_predicts_the_same(fitted, split, tmp_path):
    _, test = split
    fitted.save(tmp_path / "joint")
    assert (tmp_path / "joint" / "encoders" / "0" / "manifest.json").is_file()
    manifest = json.loads((tmp_path / "joint" / "fusion.json").read_text())
    assert manifest["encoder"] == "joint" and manifest["featurizer"]["layout"] == "joint"
    loaded = gk.load(tmp_path / "joint", progress=False)  # graftkit.load reads a fusion directory too
    assert isinstance(loaded, FusionModel)
    np.testing.assert_allclose(loaded.outputs(test), fitted.outputs(test), atol=1e-5)
    assert loaded.predict(test) == fitted.predict(test)
    with pytest.raises(gk.ArtifactError, match="--overwrite"):
        fitted.save(tmp_path / "joint")


def test_the_encoder_alone_refuses_to_predict_without_its_side_features(fitted, split, tmp_path):
    fitted.save(tmp_path / "j")
    encoder = gk.load(tmp_path / "j" / "encoders" / "0", progress=False)
    with pytest.raises(ConfigError, match="also reads 3 side features per row .*load the fusion model directory"):
        encoder.predict(load_data(split[1].frame.rename(columns={"review": "title | review"}), label="label",
                                  text="title | review"))


def test_an_unseen_category_at_predict_time_is_missing_and_said(fitted, caplog):
    new = joint_frame(6, seed=5).drop(columns=["label", "score"])
    new.loc[3, "dept"] = "Swimwear"
    with caplog.at_level(logging.WARNING):
        predictions = fitted.predict(new)
    assert len(predictions) == 6 and set(predictions) <= {"pos", "neg"}
    assert any("'dept'" in r.message and "'Swimwear'" in r.message and "first row 4" in r.message
               and "treated as missing" in r.message for r in caplog.records)
    assert any("Swimwear" in note for note in fitted.featurizer_.notes)
    blank = new.copy()
    blank.loc[3, "dept"] = ""
    assert np.array_equal(fitted.outputs(new)[3], fitted.outputs(blank)[3])  # unseen reads exactly as missing


def test_regression_target(tiny_bert_dir, tmp_path):
    from graftkit.tasks import infer_task

    table = load_data(joint_frame(240), label="score", **ROLES)
    train, test = table.split(0.25, seed=0, task=infer_task(table))
    model = joint(tiny_bert_dir).fit(train)
    assert model.task_.kind == "regression"
    assert model.evaluate(test, importance=False)["r2"] > 0.5
    records = model.predict_records(test)
    assert {"prediction", "lower", "upper"} <= set(records[0])
    model.save(tmp_path / "r")
    np.testing.assert_allclose(load_fusion(tmp_path / "r", progress=False).outputs(test), model.outputs(test),
                               atol=1e-4)


def test_multilabel_target(tiny_bert_dir, tmp_path):
    from graftkit.tasks import infer_task

    frame = joint_frame(240)
    frame["tags"] = [f"{label}|{'high' if x and float(x) > 0 else 'low'}" for label, x in zip(frame["label"], frame["x"])]
    table = load_data(frame.drop(columns=["label", "score"]), label="tags", **ROLES)
    train, test = table.split(0.25, seed=0, task=infer_task(table, "multilabel-classification", label_sep="|"))
    model = joint(tiny_bert_dir, task="multilabel-classification", task_options={"label_sep": "|"}).fit(train)
    metrics = model.evaluate(test)
    assert model.task_.kind == "multilabel-classification" and metrics["micro_f1"] > 0.7
    assert metrics["feature_groups"]["groups"]["tabular"]["drop"] > 0.05  # 'high' / 'low' is x's sign
    assert "thresholds" in model.calibration_
    model.save(tmp_path / "ml")
    np.testing.assert_allclose(load_fusion(tmp_path / "ml", progress=False).outputs(test), model.outputs(test),
                               atol=1e-5)


def test_lp_ft_starts_from_a_probe_on_pooled_and_side_features(tiny_bert_dir, split):
    model = joint(tiny_bert_dir, strategy="lp-ft", tune={"epochs": 1, "learning_rate": 0.005}).fit(split[0])
    probe = model.featurizer_.graft.training_["linear_probe"]
    assert probe is not None and model.head_.arrays["weight"].shape[1] == 32 + 3


def test_an_image_beside_the_text_enters_as_frozen_side_features(tiny_bert_dir, tiny_vit_dir, tmp_path):
    from PIL import Image

    frame = joint_frame(60)
    for i in range(len(frame)):
        Image.new("RGB", (8, 8), (i * 4 % 256, 0, 0)).save(tmp_path / f"{i}.png")
    frame["photo"] = [str(tmp_path / f"{i}.png") for i in range(len(frame))]
    table = load_data(frame, label="label", text=["review"], image=["photo"], numeric=["x"])
    model = FusionModel({"text": str(tiny_bert_dir), "image": str(tiny_vit_dir)}, encoder="joint",
                        tune_params={"epochs": 1, "val_size": 0.2}, **FAST).fit(table)
    assert model.featurizer_.side.encoders["photo"].kind == "frozen"
    assert set(model.featurizer_.groups) == {"review", "photo", "x"}
    assert model.head_.arrays["weight"].shape[1] == 32 + 32 + 1  # review pooled, photo embedding, x
    model.save(tmp_path / "m")
    np.testing.assert_allclose(load_fusion(tmp_path / "m", progress=False).outputs(table), model.outputs(table),
                               atol=1e-5)


# -- what it refuses --------------------------------------------------------------------------------------------
def test_refusals_are_one_line_config_errors(tiny_bert_dir, split):
    with pytest.raises(ConfigError, match="--head gbdt .*do\\(es\\) not apply to joint fusion"):
        FusionModel(encoder="joint", head="gbdt")
    with pytest.raises(ConfigError, match="--strategy lora trains the encoder of joint fusion; add --joint"):
        FusionModel(strategy="lora")
    with pytest.raises(ConfigError, match="name different backbones"):
        FusionModel({"title": str(tiny_bert_dir), "review": "all-MiniLM-L6-v2"}, encoder="joint", **FAST).fit(split[0])
    with pytest.raises(ConfigError, match="has only tabular columns"):
        FusionModel(encoder="joint", **FAST).fit(load_data(split[0].frame, label="label", numeric=["x"]))
    with pytest.raises(ConfigError, match="strategy 'linear-probe' trains none"):
        joint(tiny_bert_dir, strategy="linear-probe").fit(split[0])
    with pytest.raises(ConfigError, match="side features go into the engine's output layer"):
        gk.Graft(str(tiny_bert_dir), progress=False).fit(load_data(split[0].frame, label="label", text="review"),
                                                         side=object())
    with pytest.raises(ConfigError, match="fits its head on pairs of embeddings"):
        joint(tiny_bert_dir, strategy="contrastive", tune={"epochs": 1}).fit(split[0])


def test_an_infinite_number_names_its_row(tiny_bert_dir):
    frame = joint_frame(40)
    frame.loc[6, "x"] = "inf"
    with pytest.raises(DataError, match=r"row 7, column 'x' holds inf .*finite numbers"):
        joint(tiny_bert_dir, tune={"epochs": 1}).fit(load_data(frame, label="label", **ROLES))


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_fuse_joint_then_predict(tiny_bert_dir, tmp_path, capsys, caplog):
    joint_frame(200).drop(columns="score").to_csv(tmp_path / "t.csv", index=False)
    new = joint_frame(5, seed=9).drop(columns=["label", "score"])
    new.loc[1, "dept"] = "Swimwear"
    new.to_csv(tmp_path / "new.csv", index=False)
    code = main(["fuse", str(tmp_path / "t.csv"), "--label", "label", "--text", "title", "review", "--numeric", "x",
                 "--categorical", "dept", "--backbone", str(tiny_bert_dir), "--joint", "--tune-epochs", "3",
                 "--learning-rate", "0.02", "--batch-size", "16", "--json", "-o", str(tmp_path / "m")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert set(result["feature_groups"]["groups"]) == {"title | review", "tabular"}
    assert 0.0 <= result["test"]["accuracy"] <= 1.0 and (tmp_path / "m" / "encoders" / "0").is_dir()
    with caplog.at_level(logging.WARNING):
        assert main(["predict", str(tmp_path / "m"), str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 5 and set(predictions["prediction"]) <= {"pos", "neg"}
    assert any("'Swimwear'" in r.message for r in caplog.records)  # the unseen category is said
    for flags, said in ((["--joint", "--encoder", "lora"], "drop --encoder lora or --joint"),
                        (["--strategy", "lora"], "add --joint"), (["--joint", "--head", "gbdt"], "--head gbdt")):
        code = main(["fuse", str(tmp_path / "t.csv"), "--label", "label", "--text", "review", "--numeric", "x",
                     "--backbone", str(tiny_bert_dir), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].startswith("graftkit: error:") and said in err[-1]


# -- real data --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_clothing_reviews_joint_lora_beats_the_majority_class():
    path = shared_path("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).sample(n=300, random_state=0)
    table = load_data(frame, label="Recommended IND", text=["Title", "Review Text"],
                      numeric=["Age", "Positive Feedback Count"],
                      categorical=["Division Name", "Department Name", "Class Name"])
    train, test = table.split(0.25, seed=0)
    model = FusionModel(encoder="joint", strategy="lora", tune_params={"epochs": 1, "learning_rate": 5e-3},
                        batch_size=16, progress=False).fit(train)  # one epoch: 13 steps, so a brisk output layer
    metrics = model.evaluate(test, repeats=2)
    majority = max(np.mean(model.task_.encode(test) == k) for k in range(len(model.task_.labels)))
    assert metrics["accuracy"] > majority, (metrics["accuracy"], majority)
    assert model.featurizer_.graft.training_["side_features"] > 2  # the tabular columns reached the output layer
