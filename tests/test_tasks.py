"""The tasks layer: inference from the target, multi-label classification and regression end to end (probe and
every trainable strategy on a tiny BERT), their calibration (thresholds, conformal intervals), artifacts, and
their bad inputs."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graftkit as gk
from conftest import WORDS, examples
from graftkit.errors import ArtifactError, ConfigError, DataError
from graftkit.strategies import get_strategy
from graftkit.tasks import Classification, MultiLabel, Regression, infer_task, task_from_dict


def tagged_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Sentences tagged with the set of sentiments they mention ("pos", "neg", both or none)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kinds = [["pos"], ["neg"], ["pos", "neg"], []][i % 4]
        words = [rng.choice(WORDS["neutral"]) for _ in range(4)]
        for kind in kinds:
            words += [rng.choice(WORDS[kind]) for _ in range(2)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "tags": "|".join(kinds)})
    return pd.DataFrame(rows)


def scored_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Sentences whose score is (positive words - negative words) + noise: a learnable regression target."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos, neg = rng.randint(0, 3), rng.randint(0, 3)
        words = ([rng.choice(WORDS["pos"]) for _ in range(pos)] + [rng.choice(WORDS["neg"]) for _ in range(neg)]
                 + [rng.choice(WORDS["neutral"]) for _ in range(3)])
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": f"{pos - neg + rng.gauss(0, 0.3):.3f}"})
    return pd.DataFrame(rows)


# -- inference ----------------------------------------------------------------------------------------------------
def test_inference_reads_the_target_and_says_why():
    multi = infer_task(gk.load_data(tagged_frame(), label="tags"))
    assert isinstance(multi, MultiLabel) and multi.labels == ("neg", "pos") and "'|'-separated" in multi.reason
    regression = infer_task(gk.load_data(scored_frame(), label="score"))
    assert isinstance(regression, Regression) and "non-integer numbers" in regression.reason
    stars = pd.DataFrame({"text": [f"t {i}" for i in range(40)], "stars": [str(1 + i % 5) for i in range(40)]})
    assert isinstance(infer_task(gk.load_data(stars)), Classification)  # integer ratings are classes ...
    assert isinstance(infer_task(gk.load_data(stars), "regression"), Regression)  # ... unless asked
    columns = pd.DataFrame({"text": ["a b", "c d", "e f"], "x": ["1", "0", "1"], "y": ["0", "1", "true"]})
    table = gk.load_data(columns, text="text", label=["x", "y"])
    task = infer_task(table)
    assert isinstance(task, MultiLabel) and task.label_sep is None
    assert task.encode(table).tolist() == [[1, 0], [0, 1], [1, 1]]


def test_task_round_trips_through_its_dict():
    for task in (Classification(classes=("a", "b")), MultiLabel(names=("x", "y"), label_sep=";", allow_empty=False),
                 Regression(target="price", interval=0.8, loss_function="huber")):
        assert task_from_dict(json.loads(json.dumps(task.to_dict()))) == task
    with pytest.raises(ArtifactError, match="'task'"):
        task_from_dict(["classification"])
    with pytest.raises(ArtifactError, match="damaged"):
        task_from_dict({"kind": "regression"})


def test_classification_refuses_missing_looking_labels_and_merges_1_and_1_0():
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["yes", "NA", "no", "yes"]})
    with pytest.raises(DataError, match=r"row 2, column 'label': label 'NA' looks like a missing value"):
        infer_task(gk.load_data(frame))
    numbers = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["1", "1.0", "0", "0.0"]})
    assert infer_task(gk.load_data(numbers)).labels == ("0", "1")
    lists = pd.DataFrame({"text": ["a", "b"], "label": [["x"], ["y"]]})
    task = infer_task(gk.load_data(lists))  # JSON lists are multi-label, never the string "['x']"
    assert isinstance(task, MultiLabel) and task.labels == ("x", "y")
    with pytest.raises(DataError, match="is a list"):
        infer_task(gk.load_data(lists), "classification")


# -- bad targets: one line naming row and column ------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [("ten", "'ten' is not a number"), ("nan", "must be a finite number"),
                                            ("inf", "must be a finite number"), ("", "the target is blank")])
def test_bad_regression_targets_name_the_row(value, message):
    frame = scored_frame(20)
    frame.loc[6, "score"] = value
    with pytest.raises(DataError, match=rf"row 7, column 'score': .*{message}") as error:
        infer_task(gk.load_data(frame, label="score"), "regression")
    assert "\n" not in str(error.value)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.integers(0, 29), bad=st.one_of(
    st.text(min_size=1, max_size=12).filter(lambda t: not _finite(t) and t.strip() != ""),
    st.sampled_from(["nan", "NaN", "-inf", "inf", "1e999", "--1", "1,5"])))
def test_generated_non_numbers_in_a_regression_target_are_refused_at_their_row(row, bad):
    frame = scored_frame(30)
    frame.loc[row, "score"] = bad
    with pytest.raises(DataError) as error:
        infer_task(gk.load_data(frame, label="score"), "regression")
    assert f"row {row + 1}, column 'score'" in str(error.value) and "\n" not in str(error.value)


def _finite(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


@settings(max_examples=examples(30), deadline=None)
@given(sets=st.lists(st.sets(st.sampled_from(["a", "b", "c d", "é"]), max_size=4), min_size=4, max_size=12),
       sep=st.sampled_from(["|", ";", " / "]))
def test_generated_label_lists_encode_back_to_their_sets(sets, sep):
    labels = sorted({x for s in sets for x in s})
    if len(labels) < 2:
        return
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(len(sets))],
                          "tags": [f" {sep} ".join(sorted(s)) for s in sets]})
    table = gk.load_data(frame, text="text", label="tags")
    task = infer_task(table, "multilabel-classification", label_sep=sep.strip() or sep)
    Y = task.encode(table)
    assert [set(np.asarray(task.labels)[row.astype(bool)]) for row in Y] == [set(s) for s in sets]


def test_multilabel_refuses_unknown_labels_and_declared_impossible_empty_sets():
    table = gk.load_data(tagged_frame(12), label="tags")
    task = infer_task(table)
    unknown = gk.load_data(pd.DataFrame({"text": ["good", "bad"], "tags": ["pos", "pos|meh"]}), label="tags")
    with pytest.raises(DataError, match=r"row 2, column 'tags': label 'meh' was not seen in training"):
        task.encode(unknown)
    with pytest.raises(DataError, match=r"row 4, column 'tags': the row has no label, and empty label sets were "):
        infer_task(table, "multilabel-classification", allow_empty=False)


def test_an_option_of_another_task_kind_is_refused_not_ignored():
    tags = gk.load_data(tagged_frame(12), label="tags")
    with pytest.raises(ConfigError, match=r"interval \(--interval\) do not apply to a multilabel-classification "
                                          r"target; they are for regression"):
        infer_task(tags, interval=0.9)
    stars = gk.load_data(pd.DataFrame({"text": ["a", "b", "c"], "stars": ["1", "2", "3"]}))
    with pytest.raises(ConfigError, match=r"label_sep \(--label-sep\) do not apply to a regression target"):
        infer_task(stars, "regression", label_sep=";")
    with pytest.raises(ConfigError, match="unknown option"):
        infer_task(stars, "classification", intervall=0.9)


def test_task_settings_are_checked():
    with pytest.raises(ConfigError, match=r"interval level must be a fraction between 0 and 1.*--interval"):
        Regression(interval=1.5)
    with pytest.raises(ConfigError, match="--task"):
        infer_task(gk.load_data(scored_frame(10), label="score"), "ranking")
    with pytest.raises(DataError, match="speech recognition reads audio clips"):
        infer_task(gk.load_data(scored_frame(10), label="score"), "speech-recognition")
    with pytest.raises(DataError, match="'ten' is not a number"):
        frame = scored_frame(10)
        frame["score"] = "ten"
        infer_task(gk.load_data(frame, label="score"), "regression")


# -- multi-label end to end ----------------------------------------------------------------------------------------
def test_multilabel_probe_tunes_thresholds_and_round_trips(tiny_bert_dir, tmp_path):
    table = gk.load_data(tagged_frame(160), label="tags")
    train, test = infer_task(table).split(table, test_size=0.25, seed=0)
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    assert model.task_.kind == "multilabel-classification"
    calibration = model.calibration_
    assert len(calibration["thresholds"]) == 2 and len(calibration["temperatures"]) == 2
    assert "cross-fitted" in calibration["fitted_on"] and all(0 < t < 1 for t in calibration["thresholds"])
    metrics = model.evaluate(test)
    assert metrics["micro_f1"] >= 0.8 and {"macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"} <= set(metrics)
    assert {"label", "precision", "recall", "f1", "average_precision", "threshold"} <= set(metrics["per_label"][0])
    assert "micro_f1" in metrics["fixed_threshold_0.5"] and len(metrics["calibration"]["per_label"]) == 2
    predicted = model.predict(test)
    assert all(isinstance(labels, list) and set(labels) <= {"neg", "pos"} for labels in predicted)
    probabilities = model.predict_proba(test)
    assert probabilities.shape == (len(test), 2)
    records = model.predict_records(test)
    assert set(records[0]) == {"prediction", "p_neg", "p_pos"}
    model.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["task"]["kind"] == "multilabel-classification" and manifest["calibration"]["thresholds"]
    reloaded = gk.load(tmp_path / "model", progress=False)
    np.testing.assert_array_equal(reloaded.predict_proba(test), probabilities)
    assert reloaded.predict(test) == predicted


def test_thresholds_are_tuned_not_fixed():
    from graftkit.scoring.multilabel import tune_thresholds

    rng = np.random.default_rng(0)
    Y = np.zeros((400, 2), dtype=int)
    Y[:40, 0] = 1  # a rare label whose probabilities never reach 0.5
    Y[:, 1] = rng.integers(0, 2, 400)
    P = np.stack([np.where(Y[:, 0] == 1, 0.3, 0.1) + rng.normal(0, 0.02, 400), rng.random(400)], axis=1)
    thresholds, _ = tune_thresholds(Y, P)
    assert 0.15 < thresholds[0] < 0.25  # between the two groups: F1 1.0 where 0.5 would predict nothing


# -- regression end to end -----------------------------------------------------------------------------------------
def test_regression_probe_gives_intervals_whose_coverage_is_reported(tiny_bert_dir, tmp_path):
    table = gk.load_data(scored_frame(240), label="score")
    task = infer_task(table)
    train, test = task.split(table, test_size=0.25, seed=0)
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False, task_options={"interval": 0.8}).fit(train)
    assert model.head_.kind == "ridge" and model.calibration_["residuals"]
    metrics = model.evaluate(test)
    assert metrics["r2"] > 0.5 and metrics["rmse"] > 0 and metrics["spearman"] > 0.7
    interval = metrics["interval"]
    assert interval["level"] == 0.8 and 0.6 <= interval["coverage"] <= 1.0 and interval["half_width"] > 0
    wider = model.evaluate(test, interval=0.95)["interval"]
    assert wider["half_width"] > interval["half_width"] and wider["coverage"] >= interval["coverage"]
    records = model.predict_records(test)
    assert all(r["lower"] < r["prediction"] < r["upper"] for r in records)
    assert isinstance(model.predict(test)[0], float)
    with pytest.raises(ConfigError, match="no probabilities"):
        model.predict_proba(test)
    model.save(tmp_path / "model")
    reloaded = gk.load(tmp_path / "model", progress=False)
    assert reloaded.predict_records(test) == records


def test_conformal_quantile_is_the_finite_sample_rank():
    from graftkit.scoring.regression import conformal_quantile

    residuals = np.arange(1, 10)  # n = 9: level 0.9 takes the ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(residuals, 0.9) == 9 and conformal_quantile(residuals, 0.5) == 5
    assert conformal_quantile(residuals, 0.95) == np.inf  # too few held-out rows for that level


# -- every strategy on both kinds ----------------------------------------------------------------------------------
STRATEGIES = ["finetune", "full", "gradual", "lp-ft", "lora", "ia3", "adapters", "bitfit"]


@pytest.mark.parametrize("kind", ["multilabel", "regression"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_trainable_strategy_fits_both_kinds(tiny_bert_dir, tmp_path, strategy, kind):
    frame, label = (tagged_frame(64), "tags") if kind == "multilabel" else (scored_frame(64), "score")
    table = gk.load_data(frame, label=label)
    task = infer_task(table)
    train, test = task.split(table, test_size=0.25, seed=0)
    model = gk.Graft(backbone=str(tiny_bert_dir), strategy=strategy, progress=False, epochs=2, patience=0,
                     learning_rate=1e-2).fit(train)
    assert model.task_.kind == task.kind and model.training_["epochs_run"] == 2
    assert model.head_.arrays["weight"].shape[0] == task.output_size
    validation = model.training_["history"][-1]
    assert f"val_{task.primary_metric}" in validation
    metrics = model.evaluate(test)
    assert metrics["n"] == len(test) and task.primary_metric in metrics
    outputs = model.outputs(test)
    model.save(tmp_path / "model")
    reloaded = gk.load(tmp_path / "model", progress=False)
    np.testing.assert_allclose(reloaded.outputs(test), outputs, rtol=1e-5, atol=1e-5)


def test_adapters_of_different_tasks_share_one_base_and_merge(tiny_bert_dir, tmp_path, capsys):
    from graftkit.cli.main import main

    tags = gk.load_data(tagged_frame(48), label="tags")
    scores = gk.load_data(scored_frame(48), label="score")
    options = {"backbone": str(tiny_bert_dir), "strategy": "lora", "progress": False, "epochs": 1, "patience": 0}
    tagger = gk.Graft(**options).fit(tags)
    scorer = gk.Graft(**options).fit(scores)
    tagger.save(tmp_path / "tags")
    scorer.save(tmp_path / "scores")
    shared = gk.load_adapters({"tags": tmp_path / "tags", "scores": tmp_path / "scores"}, progress=False)
    texts = ["good film", "bad awful plot"]
    np.testing.assert_allclose(shared.model("scores").outputs(texts), scorer.outputs(texts), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(shared.model("tags").outputs(texts), tagger.outputs(texts), rtol=1e-4, atol=1e-5)
    assert main(["merge", str(tmp_path / "scores"), "-o", str(tmp_path / "merged")]) == 0
    merged = gk.load(tmp_path / "merged", progress=False)
    assert merged.task_.kind == "regression"
    np.testing.assert_allclose(merged.outputs(texts), scorer.outputs(texts), rtol=1e-3, atol=1e-4)


def test_engine_output_layer_learns_the_standardised_target_and_exports_target_units(tiny_bert_dir):
    import torch

    from graftkit.backbones import load_backbone
    from graftkit.training.engine import build_model

    backbone = load_backbone(str(tiny_bert_dir))
    task = Regression(target="score")
    y = np.array([10.0, 12.0, 14.0, 30.0], dtype=np.float32)
    mean, scale = task.target_scaling(y)
    assert mean[0] == pytest.approx(16.5) and scale[0] == pytest.approx(np.std(y))
    batch = dict(backbone.preprocess(["good movie", "bad plot", "the film", "superb"]))
    model = build_model(backbone, get_strategy("finetune"), batch, task, seed=0,
                        target_scaling=(mean, scale))
    model.eval()
    with torch.no_grad():
        out = model(batch, labels=torch.as_tensor(y))
        weight, bias = model.export_head()
        pooled = backbone.embed(batch).numpy()
    # the loss is MSE of the layer's z against (y - mean) / scale; the outputs and the exported head are in units
    z = (out.logits.numpy()[:, 0] - mean[0]) / scale[0]
    assert out.loss.item() == pytest.approx(np.mean((z - (y - mean[0]) / scale[0]) ** 2), rel=1e-4)
    np.testing.assert_allclose(pooled @ weight.T + bias, out.logits.numpy(), rtol=1e-4, atol=1e-4)


def test_auto_and_cv_choose_by_the_tasks_primary_metric(tiny_bert_dir):
    from graftkit.evaluation.cv import cross_validate

    table = gk.load_data(scored_frame(120), label="score")
    result = gk.auto(table, backbones=[str(tiny_bert_dir)], budget="5m", ladder=["finetune"], epochs=1)
    assert result.settings["metric"] == "r2"
    baseline = next(row for row in result.rows if row["kind"] == "baseline")
    assert baseline["strategy"] == "tfidf + ridge" and "r2" in baseline["validation"]
    assert result.chosen["validation"]["score"] == max(r["validation"]["score"] for r in result.rows
                                                       if r["status"] == "ran")
    cv = cross_validate(gk.Graft(backbone=str(tiny_bert_dir), progress=False), table, k=3)
    assert cv["task"] == "regression" and set(cv["summary"]) == {"r2", "rmse", "mae", "spearman"}


def test_evaluation_record_has_task_sections(tiny_bert_dir):
    from graftkit.evaluation.suite import evaluate_model

    table = gk.load_data(tagged_frame(120), label="tags")
    train, test = infer_task(table).split(table, test_size=0.25, seed=0)
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    record = evaluate_model(model, test, train=train, learning_curve=True, seeds=2)
    assert record["baseline"]["name"].endswith("one-vs-rest logistic regression")
    assert record["baseline"]["transfer_gain"]["metric"] == "micro_f1"
    curve = record["learning_curve"]
    assert curve["x"] == "rows" and curve["points"][-1]["all"] and "micro_f1" in curve["points"][0]


def test_rank_says_which_scores_apply(tiny_bert_dir):
    table = gk.load_data(scored_frame(60), label="score")
    ranking = gk.rank(table, backbones=[str(tiny_bert_dir)], progress=False)
    row = ranking.rows[0]
    assert row["scores"]["logme"] is not None and np.isfinite(row["scores"]["logme"])
    assert row["scores"]["knn"] is None and "LogME only" in row["skipped"]["knn"]


# -- the CLI ---------------------------------------------------------------------------------------------------------
def _cli(capsys, *argv):
    from graftkit.cli.main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _csv_split(folder, make_frame, rows: int) -> tuple:
    """A training and a test CSV drawn with different seeds, and the model directory to write."""
    train, test = folder / "train.csv", folder / "test.csv"
    make_frame(rows, seed=0).to_csv(train, index=False)
    make_frame(40, seed=1).to_csv(test, index=False)
    return train, test, folder / "model"


def test_cli_multilabel_fit_predict_evaluate_and_bad_inputs(tiny_bert_dir, tmp_path, capsys):
    train, test, model = _csv_split(tmp_path, tagged_frame, 120)
    code, out, err = _cli(capsys, "fit", train, "--label", "tags", "--backbone", tiny_bert_dir, "--test", test,
                          "-o", model)
    assert code == 0, err
    assert "micro_f1" in out and "with a fixed 0.5 threshold" in out
    assert json.loads((model / "evaluation.json").read_text())["task"]["kind"] == "multilabel-classification"
    predictions = tmp_path / "predictions.csv"
    assert _cli(capsys, "predict", model, test, "-o", predictions)[0] == 0
    frame = pd.read_csv(predictions, keep_default_na=False)
    assert list(frame.columns) == ["row", "prediction", "p_neg", "p_pos"]
    assert set("|".join(frame["prediction"]).split("|")) <= {"neg", "pos", ""}
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"neg": 0.99, "pos": 0.99}))
    assert _cli(capsys, "predict", model, test, "--thresholds", strict, "-o", tmp_path / "strict.csv")[0] == 0
    assert (pd.read_csv(tmp_path / "strict.csv", keep_default_na=False)["prediction"] != "").sum() <= \
        (frame["prediction"] != "").sum()
    # bad inputs: exit 2, one line naming the file / row / column, nothing written
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"PER": 0.5, "LOC": 0.5}))
    code, out, err = _cli(capsys, "predict", model, test, "--thresholds", other, "-o", tmp_path / "no.csv")
    assert code == 2 and "written for another model" in err and "missing neg, pos" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "no.csv").exists()
    unknown = tmp_path / "unknown.csv"
    pd.DataFrame({"text": ["good film", "bad film"], "tags": ["pos", "pos|meh"]}).to_csv(unknown, index=False)
    code, _, err = _cli(capsys, "evaluate", model, unknown, "--label", "tags")
    assert code == 2 and "row 2, column 'tags': label 'meh' was not seen in training" in err


def test_cli_multilabel_from_several_0_1_columns(tiny_bert_dir, tmp_path, capsys):
    frame = tagged_frame(80)
    frame["pos"] = frame["tags"].str.contains("pos").astype(int)
    frame["neg"] = frame["tags"].str.contains("neg").astype(int)
    data = tmp_path / "columns.csv"
    frame.drop(columns="tags").to_csv(data, index=False)
    code, out, err = _cli(capsys, "fit", data, "--text", "text", "--labels", "pos", "neg", "--backbone",
                          tiny_bert_dir, "-o", tmp_path / "model", "--json")
    assert code == 0, err
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["task"] == {"kind": "multilabel-classification", "labels": ["pos", "neg"], "label_sep": None,
                                "allow_empty": True}
    assert _cli(capsys, "evaluate", tmp_path / "model", data, "--json")[0] == 0


def test_cli_regression_intervals(tiny_bert_dir, tmp_path, capsys):
    train, test, model = _csv_split(tmp_path, scored_frame, 160)
    code, out, err = _cli(capsys, "fit", train, "--label", "score", "--backbone", tiny_bert_dir, "--test", test,
                          "--interval", "0.8", "-o", model)
    assert code == 0, err
    assert "R²" in out and "80% prediction interval" in out
    assert "split-conformal intervals" in (model / "README.md").read_text()
    assert _cli(capsys, "predict", model, test, "-o", tmp_path / "p.csv")[0] == 0
    assert _cli(capsys, "predict", model, test, "--interval", "0.5", "-o", tmp_path / "p50.csv")[0] == 0
    wide, narrow = pd.read_csv(tmp_path / "p.csv"), pd.read_csv(tmp_path / "p50.csv")
    assert list(wide.columns) == ["row", "prediction", "lower", "upper"]
    assert ((narrow["upper"] - narrow["lower"]) <= (wide["upper"] - wide["lower"]) + 1e-9).all()
    code, out, err = _cli(capsys, "cv", train, "--label", "score", "--backbone", tiny_bert_dir, "--folds", "3")
    assert code == 0 and "task: regression" in out and "r2" in out
    code, _, err = _cli(capsys, "predict", model, test, "--interval", "2")
    assert code == 2 and "interval level must be a fraction between 0 and 1" in err


# -- real models on real data (../shared) ----------------------------------------------------------------------------
def _bench_common():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import common  # bench/common.py: the readers of the shared data sets the benchmarks use

    return common


@pytest.mark.slow
def test_minilm_regression_on_real_clothing_reviews():
    from conftest import shared_path

    shared_path("data", "womens_clothing_reviews")
    frame = _bench_common().clothing_reviews().sample(n=700, random_state=0)
    table = gk.load_data(frame, text="text", label="rating")
    task = infer_task(table, "regression")
    train, test = task.split(table, test_size=0.25, seed=0)
    model = gk.Graft(backbone="all-MiniLM-L6-v2", progress=False, task="regression").fit(train)
    metrics = model.evaluate(test)
    assert metrics["r2"] > 0.15 and metrics["spearman"] > 0.4  # ratings follow the review's sentiment
    assert 0.8 <= metrics["interval"]["coverage"] <= 0.98 and metrics["interval"]["level"] == 0.9
    assert all(1.0 - 3 < value < 5.0 + 3 for value in model.predict(test))


@pytest.mark.slow
def test_minilm_multilabel_on_real_conll_entity_types():
    from conftest import shared_path

    shared_path("data", "conll2003")
    common = _bench_common()
    train = gk.load_data(common.conll_entity_sets("train").sample(n=800, random_state=0), label="types")
    test = gk.load_data(common.conll_entity_sets("test").sample(n=300, random_state=0), label="types")
    model = gk.Graft(backbone="all-MiniLM-L6-v2", progress=False).fit(train)
    assert model.task_.kind == "multilabel-classification" and model.task_.labels == ("LOC", "MISC", "ORG", "PER")
    metrics = model.evaluate(test)
    assert metrics["micro_f1"] > 0.6 and metrics["subset_accuracy"] > 0.3
    assert metrics["micro_f1"] >= metrics["fixed_threshold_0.5"]["micro_f1"] - 0.05


@pytest.mark.parametrize("kind", ["multilabel", "regression"])
def test_a_crashed_run_of_either_kind_resumes_to_the_uninterrupted_model(tiny_bert_dir, tmp_path, kind, one_thread):
    from conftest import assert_resume_reproduces

    frame, label = (tagged_frame(48), "tags") if kind == "multilabel" else (scored_frame(48), "score")
    assert_resume_reproduces(tiny_bert_dir, gk.load_data(frame, label=label), tmp_path)


def test_the_fast_primary_metric_equals_the_summarys():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(50, 3)).astype(np.float32)
    outputs = np.clip(y * 0.6 + rng.random((50, 3)) * 0.5, 0, 1)
    task = MultiLabel(names=("a", "b", "c"))
    calibration = {"thresholds": [0.4, 0.5, 0.6]}
    assert task.primary(y, outputs, calibration) == task.summary(y, outputs, calibration)["micro_f1"]
    values = rng.normal(size=40)
    regression = Regression(target="t")
    predicted = values + rng.normal(scale=0.5, size=40)
    assert regression.primary(values, predicted) == pytest.approx(regression.summary(values, predicted)["r2"])
