"""Trustworthy evaluation: calibration (ECE, temperature scaling in the artifact), threshold metrics, classical
baselines and transfer gain, leakage (exact + edited copies + embeddings), learning curves with their
extrapolation, and the saved evaluation record. Tiny BERT and synthetic data; real data under ``slow``."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

import graftkit as gk
from graftkit.errors import ConfigError, DataError
from graftkit.evaluation import baselines, learning_curve, leakage, suite
from graftkit.scoring import calibration, thresholds
from graftkit.tasks import Classification

from conftest import DISTINCT_SENTENCES, sentiment_frame, shared_path


@pytest.fixture
def split():
    return gk.load_data(sentiment_frame(120)).split(test_size=0.3, seed=0)


# -- calibration ----------------------------------------------------------------------------------------------
def test_ece_and_reliability_bins_by_hand():
    # two rows at confidence 0.9 (one right), two at 0.6 (both right): |0.5 - 0.9| and |1 - 0.6| each weigh 1/2
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    diagram = calibration.reliability_diagram(probabilities, y)
    assert diagram["n_bins"] == 15 and len(diagram["bins"]) == 15
    assert diagram["ece"] == pytest.approx(0.4) and diagram["mce"] == pytest.approx(0.4)
    assert sum(b["count"] for b in diagram["bins"]) == 4
    filled = [b for b in diagram["bins"] if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(2, 1.0), (2, 0.5)]
    assert filled[0]["lower"] < 0.6 <= filled[0]["upper"] and filled[1]["lower"] < 0.9 <= filled[1]["upper"]
    assert calibration.expected_calibration_error(np.eye(3), np.arange(3)) == 0.0
    assert calibration.brier_score(np.eye(3), np.arange(3)) == 0.0
    assert calibration.negative_log_likelihood(np.array([[0.5, 0.5]]), np.array([1])) == pytest.approx(np.log(2))


@pytest.mark.parametrize("true_temperature", [2.5, 0.5])
def test_temperature_scaling_recovers_the_temperature_that_generated_the_labels(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(20000, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(logits / true_temperature, axis=1)])
    fit = calibration.fit_temperature(logits, y)
    assert fit.status == "fitted"
    assert fit.temperature == pytest.approx(true_temperature, rel=0.06)
    assert fit.nll_after < fit.nll_before and fit.ece_after < fit.ece_before
    # scaling never changes the predicted class
    scaled = calibration.scaled_probabilities(logits, fit.temperature)
    assert np.array_equal(scaled.argmax(axis=1), logits.argmax(axis=1))


def test_temperature_is_not_fitted_on_separated_data():
    logits = np.array([[3.0, -3.0], [-2.0, 2.0], [4.0, 0.0], [0.0, 1.0]])
    fit = calibration.fit_temperature(logits, logits.argmax(axis=1))
    assert fit.temperature == 1.0 and fit.status.startswith("skipped")
    with pytest.raises(DataError, match="temperature must be > 0"):
        calibration.scaled_probabilities(logits, 0.0)


def test_graft_stores_temperature_and_saved_model_gives_identical_calibrated_probabilities(tiny_bert_dir, tmp_path,
                                                                                           split):
    train, test = split
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    fitted = model.calibration_
    assert fitted["status"] == "fitted" and "cross-fitted" in fitted["fitted_on"]
    temperature = model.temperature_
    assert temperature != 1.0 and temperature == fitted["temperature"]

    features = model.features(test)
    z = model.head_.logits(features)  # the binary logistic head: one logit becomes [0, z]
    assert z.shape == (len(test), 2) and np.all(z[:, 0] == 0)
    calibrated = model.predict_proba(test)
    np.testing.assert_allclose(calibrated[:, 1], 1 / (1 + np.exp(-z[:, 1] / temperature)), rtol=1e-6)
    raw = model.predict_proba(test, calibrated=False)
    np.testing.assert_allclose(raw, model.head_.predict_proba(features), atol=1e-6)  # float64 softmax of the logits
    assert not np.allclose(raw, calibrated) and np.array_equal(raw.argmax(1), calibrated.argmax(1))

    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["calibration"]["temperature"] == temperature
    reloaded = gk.load(tmp_path / "m", cache_dir=tmp_path / "other-cache")
    assert reloaded.temperature_ == temperature
    np.testing.assert_array_equal(reloaded.predict_proba(test), calibrated)

    metrics = model.evaluate(test)
    report = metrics["calibration"]
    assert report["temperature"] == temperature and report["status"] == "fitted"
    assert {"ece_before", "ece_after", "nll_before", "nll_after", "brier_before", "brier_after"} <= set(report)
    assert report["nll_before"] == pytest.approx(calibration.negative_log_likelihood(raw, model.task_.encode(test)))
    assert len(report["reliability_before"]) == 15


def test_calibrate_false_and_validation_data(tiny_bert_dir, split):
    train, test = split
    plain = gk.Graft(backbone=str(tiny_bert_dir), progress=False, calibrate=False).fit(train)
    assert plain.calibration_ is None and plain.temperature_ == 1.0
    np.testing.assert_allclose(plain.predict_proba(test), plain.head_.predict_proba(plain.features(test)), atol=1e-6)
    assert plain.evaluate(test)["calibration"]["status"] == "off"

    part, validation = train.split(test_size=0.3, seed=1)
    given = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(part, validation=validation)
    assert given.calibration_["fitted_on"] == f"the given validation data ({len(validation)} rows)"
    assert given.calibration_["n"] == len(validation)


def test_calibration_skipped_when_a_class_has_one_row(tiny_bert_dir):
    frame = pd.DataFrame({"text": ["good great", "awful bad", "bad poor", "terrible worst"],
                          "label": ["pos", "neg", "neg", "neg"]})
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False, C=1.0).fit(frame)
    assert model.temperature_ == 1.0 and "needs 2 per class" in model.calibration_["status"]


# -- threshold metrics ------------------------------------------------------------------------------------------
def test_precision_at_recall_and_recall_at_precision_by_hand():
    y = np.array([1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    at_recall = thresholds.precision_at_recall(y, scores, 0.9)
    assert at_recall == {"target_recall": 0.9, "precision": 0.75, "recall": 1.0, "threshold": 0.6}
    at_precision = thresholds.recall_at_precision(y, scores, 1.0)
    assert at_precision["recall"] == pytest.approx(1 / 3) and at_precision["threshold"] == 0.9
    assert thresholds.recall_at_precision(np.array([0, 1]), np.array([0.9, 0.1]), 1.0)["recall"] == 0.0
    with pytest.raises(ConfigError, match="target_recall must be a fraction"):
        thresholds.precision_at_recall(y, scores, 1.5)


def test_threshold_metrics_match_scikit_learn_binary_and_one_vs_rest():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=400)
    logits = rng.normal(size=(400, 4)) + 1.5 * np.eye(4)[y]
    probabilities = softmax(logits, axis=1)
    result = thresholds.threshold_metrics(y, probabilities, ["a", "b", "c", "d"])
    assert result["macro"]["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr"))
    assert result["per_class"][2]["average_precision"] == pytest.approx(
        average_precision_score(y == 2, probabilities[:, 2]))
    assert result["averaging"].startswith("micro-average")
    assert result["roc_auc"] == pytest.approx(roc_auc_score(np.eye(4)[y].ravel(), probabilities.ravel()))
    pr = result["curves"]["pr"]
    assert 2 <= len(pr["recall"]) <= thresholds.MAX_POINTS and pr["recall"][0] == 0.0 and pr["recall"][-1] == 1.0

    binary = thresholds.threshold_metrics((y == 1).astype(int), np.stack([1 - probabilities[:, 1], probabilities[:, 1]], 1),
                                          ["no", "yes"])
    assert binary["averaging"] == "binary: positive class 'yes'"
    assert binary["roc_auc"] == pytest.approx(roc_auc_score(y == 1, probabilities[:, 1]))
    # a class absent from the test rows has no defined area; the macro mean skips it
    absent = thresholds.threshold_metrics(np.array([0, 1, 0, 1]), softmax(rng.normal(size=(4, 3)), axis=1), ["a", "b", "c"])
    assert absent["per_class"][2]["roc_auc"] is None and absent["macro"]["roc_auc"] is not None


def test_evaluate_merges_threshold_metrics_per_class(tiny_bert_dir, split):
    train, test = split
    metrics = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train).evaluate(test, target_recall=0.8)
    assert metrics["thresholds"]["target_recall"] == 0.8
    row = metrics["per_class"][0]
    assert {"label", "f1", "average_precision", "roc_auc", "precision_at_recall", "recall_at_precision"} <= set(row)


# -- baselines and transfer gain ----------------------------------------------------------------------------------
def test_text_baseline_learns_and_reports_metrics(split):
    train, test = split
    result = baselines.run_baseline(train, test, Classification(classes=("neg", "pos")))
    assert result["accuracy"] >= 0.9 and result["name"].startswith("TF-IDF")
    assert len(result["outputs"]) == len(test) and result["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)


def _image_table(folder, n_per_class=12, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for label, channel in (("red", 0), ("blue", 2)):
        for i in range(n_per_class):
            pixels = rng.integers(0, 80, size=(40, 48, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(170, 255, size=(40, 48))
            path = folder / f"{label}_{seed}_{i}.png"
            Image.fromarray(pixels).save(path)
            rows.append({"image": str(path), "label": label})
    return gk.load_data(pd.DataFrame(rows), image="image", label="label")


def test_pixel_baseline_on_images(tmp_path):
    train, test = _image_table(tmp_path, seed=0), _image_table(tmp_path, seed=1)
    features = baselines.pixel_features(train.items()[:2])
    assert features.shape == (2, 32 * 32 * 3) and 0.0 <= features.min() and features.max() <= 1.0
    assert baselines.pixel_features(train.items()[:1], grey=True, size=16).shape == (1, 256)
    result = baselines.run_baseline(train, test, Classification(classes=("blue", "red")))
    assert result["accuracy"] == 1.0 and result["modality"] == "image"


def test_log_mel_baseline_on_tones(tmp_path):
    import soundfile

    rng = np.random.default_rng(0)
    rows = []
    for label, frequency in (("low", 300.0), ("high", 2500.0)):
        for i in range(10):
            t = np.arange(int(8000 * rng.uniform(0.3, 0.6))) / 8000
            samples = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.normal(size=t.size)
            path = tmp_path / f"{label}{i}.wav"
            soundfile.write(path, samples.astype(np.float32), 8000)
            rows.append({"audio": str(path), "label": label})
    table = gk.load_data(pd.DataFrame(rows), audio="audio", label="label")
    train, test = table.split(test_size=0.4, seed=0)
    assert baselines.run_baseline(train, test, Classification(classes=("high", "low")))["accuracy"] == 1.0

    bank = baselines.mel_filterbank(40, 512, 16000)
    assert bank.shape == (40, 257) and bank.max() <= 1.0 and np.all(bank.sum(axis=1) > 0)
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    stats = baselines.log_mel_statistics(tone)
    centres = (np.arange(257) * 16000 / 512) @ bank.T / bank.sum(axis=1)
    assert stats.shape == (80,) and abs(centres[stats[:40].argmax()] - 1000) < 120


def test_transfer_gain_warnings():
    task, onehot = Classification(classes=("a", "b")), np.eye(2)

    def transfer_gain(truth, a, b, **options):  # predicted ids as the task's outputs (one-hot probabilities)
        return baselines.transfer_gain(task, truth, onehot[a], onehot[b], **options)

    y = np.array([0, 1] * 50)
    good = y.copy()
    worse = y.copy()
    worse[:30] = 1 - worse[:30]
    gain = transfer_gain(y, good, worse)
    assert gain["gain"] == pytest.approx(0.3) and not gain["negative_transfer"] and gain["warning"] is None
    assert gain["ci95"][0] > 0
    negative = transfer_gain(y, worse, good, model_name="BERT")
    assert negative["negative_transfer"] and negative["warning"].startswith("negative transfer: BERT")
    tie = transfer_gain(y, good, good)
    assert tie["negative_transfer"] and tie["warning"].startswith("no transfer gain")
    close = y.copy()
    close[:2] = 1 - close[:2]
    within = transfer_gain(y, good, close)
    assert not within["negative_transfer"] and "within noise" in within["warning"]
    with pytest.raises(DataError, match="same non-empty test rows"):
        transfer_gain(y, good[:-1], good)


# -- leakage ------------------------------------------------------------------------------------------------------


def _text_table(texts, labels=None):
    labels = labels or ["a" if i % 2 else "b" for i in range(len(texts))]
    return gk.load_data(pd.DataFrame({"text": texts, "label": labels}), text="text", label="label")


def test_exact_and_edited_copies_are_found_without_features():
    train = _text_table(DISTINCT_SENTENCES[:14])
    planted = {
        "exact": DISTINCT_SENTENCES[0],
        "case and punctuation": "MY CAT SLEEPS, on the warm windowsill!",
        "whitespace": "  the train   to lisbon leaves at noon ",
        "typo": "how do I reset my ruoter password",
        "extra word": "our team finally won the regional chess final",
    }
    test = _text_table(DISTINCT_SENTENCES[14:] + list(planted.values()))
    report = leakage.near_duplicates(train, test)
    assert report["leaked"] == len(planted) and report["exact"] == 3 and report["text"] == 2
    assert report["test_positions"] == list(range(6, 11))
    assert report["test_rows"] == [7, 8, 9, 10, 11]  # data-row numbers of the test file
    first = report["examples"][0]
    assert first["kind"] == "exact" and first["test_input"] == DISTINCT_SENTENCES[0] and first["train_row"] == 1
    typo = next(e for e in report["examples"] if e["test_input"] == planted["typo"])
    assert typo["kind"] == "text" and typo["train_input"] == DISTINCT_SENTENCES[6] and 0.9 <= typo["similarity"] < 1
    assert "duplicate a training row" in report["warning"]

    kept = leakage.drop_leaked(test, report)
    assert kept.items() == DISTINCT_SENTENCES[14:]
    hash_only = leakage.near_duplicates(train, test, text_threshold=None)
    assert hash_only["leaked"] == 3 and hash_only["text"] == 0
    assert leakage.near_duplicates(train, _text_table(DISTINCT_SENTENCES[14:]))["leaked"] == 0


def test_normalisation_and_media_hashes(tmp_path):
    assert leakage.normalize_text("  Hello,   WORLD!!  ") == "hello world"
    assert leakage.normalize_text("Ｃａｆé — ok?") == "café ok"
    first, second = _image_table(tmp_path, seed=0), _image_table(tmp_path, seed=1)
    copy = first.frame.iloc[[3]].copy()
    copy["image"] = [str(tmp_path / "copy.png")]
    (tmp_path / "copy.png").write_bytes((tmp_path / "red_0_3.png").read_bytes())
    test = gk.load_data(pd.concat([second.frame, copy], ignore_index=True), image="image", label="label")
    report = leakage.near_duplicates(first, test)
    assert report["exact"] == 1 and report["examples"][0]["train_input"].endswith("red_0_3.png")


def test_leakage_with_backbone_features_and_bad_input(tiny_bert_dir):
    train = gk.load_data(sentiment_frame(40, seed=0))
    test = gk.load_data(pd.concat([sentiment_frame(10, seed=5), sentiment_frame(40, seed=0).iloc[:3]],
                                  ignore_index=True))
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    report = leakage.find_leakage(model, train, test, threshold=0.9999, text_threshold=None)
    assert report["exact"] == 3 and set(report["test_positions"]) >= {10, 11, 12}
    assert report["method"] == "normalised-content hash + feature cosine >= 0.9999"
    with pytest.raises(ConfigError, match="cosine similarity in"):
        leakage.near_duplicates(train, test, threshold=2.0)
    with pytest.raises(DataError, match="both splits"):
        leakage.near_duplicates(train, test, train_features=np.zeros((40, 3)))
    with pytest.raises(DataError, match="covers 3 test rows"):
        leakage.drop_leaked(test, {"n_test": 3, "test_positions": []})


def _typo(sentence: str, rng: random.Random) -> str:
    words = sentence.split()
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return sentence + "s"
    i = rng.choice(candidates)
    j = rng.randrange(len(words[i]) - 1)
    w = words[i]
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


@pytest.mark.slow
def test_planted_duplicates_in_banking77_are_found_with_few_false_positives():
    """Issue 5's leakage figure: copies of training sentences planted in the test split (exact, changed case,
    one typo, one extra word) among distinct real sentences; all-MiniLM-L6-v2 features + the text detector.
    "Distinct" = no training sentence shares half of its words (word-set Jaccard < 0.5), a criterion
    independent of both detectors; Banking77's own train / test paraphrases are reported, not counted."""
    folder = shared_path("data", "banking77")
    train_frame = pd.read_csv(folder / "train.csv").sample(2000, random_state=0).reset_index(drop=True)
    test_frame = pd.read_csv(folder / "test.csv").sample(1000, random_state=0).reset_index(drop=True)
    rng = random.Random(0)
    kinds = {"exact": lambda s: s, "case": lambda s: s.upper() if rng.random() < 0.5 else s.lower(),
             "typo": lambda s: _typo(s, rng),
             "extra word": lambda s: " ".join(
                 (lambda w: w[:(k := rng.randrange(len(w) + 1))] + [rng.choice(["please", "just", "really", "now"])]
                  + w[k:])(s.split()))}
    planted = []
    for n, position in enumerate(rng.sample(range(len(train_frame)), 200)):
        kind = list(kinds)[n % 4]
        planted.append({"text": kinds[kind](train_frame.text[position]), "category": train_frame.category[position]})
    test_all = pd.concat([test_frame, pd.DataFrame(planted)], ignore_index=True)
    train = gk.load_data(train_frame, text="text", label="category")
    test = gk.load_data(test_all, text="text", label="category")
    model = gk.Graft(progress=False)
    report = leakage.near_duplicates(train, test, model.features(train), model.features(test))

    flagged = set(report["test_positions"])
    planted_positions = set(range(len(test_frame), len(test_all)))
    train_words = [set(leakage.normalize_text(t).split()) for t in train_frame.text]

    def distinct(text):
        words = set(leakage.normalize_text(text).split())
        return all(len(words & w) < 0.5 * len(words | w) for w in train_words)

    distinct_rows = [p for p in range(len(test_frame)) if distinct(test_frame.text[p])]
    recall = len(flagged & planted_positions) / len(planted_positions)
    false_positive_rate = len(flagged & set(distinct_rows)) / len(distinct_rows)
    assert len(distinct_rows) > 400
    assert recall >= 0.95, f"found {recall:.3f} of the planted duplicates"
    assert false_positive_rate < 0.01, f"{false_positive_rate:.4f} of distinct test sentences flagged"


# -- learning curve -----------------------------------------------------------------------------------------------
def test_sample_per_class_and_power_law_extrapolation():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    picked = learning_curve.sample_per_class(y, 4, seed=0)
    assert np.bincount(y[picked]).tolist() == [4, 3, 4]
    assert not np.array_equal(picked, learning_curve.sample_per_class(y, 4, seed=1))

    sizes = [4, 8, 16, 32, 64]
    points = [{"per_class": n, "accuracy": {"mean": 0.9 - 0.5 * n ** -0.5, "std": 0.0}} for n in sizes]
    fit = learning_curve.extrapolate(points, targets=(0.7, 0.85, 0.899, 0.95))
    assert fit["status"] == "fitted" and fit["a"] == pytest.approx(0.9, abs=1e-3)
    assert fit["c"] == pytest.approx(0.5, abs=0.01)
    by_target = {t["accuracy"]: t for t in fit["targets"]}
    assert by_target[0.7]["status"] == "within the measured range" and by_target[0.7]["per_class"] == 7  # 6.25
    assert by_target[0.85]["status"] == "extrapolated" and by_target[0.85]["per_class"] == pytest.approx(100, abs=2)
    assert by_target[0.899]["status"].startswith("beyond range") and by_target[0.899]["per_class"] is None
    assert by_target[0.95]["status"].startswith("unreachable")
    assert learning_curve.extrapolate(points[:2])["status"].startswith("cannot extrapolate: 2 distinct sizes")
    falling = [{"per_class": n, "accuracy": {"mean": 1.0 - 0.01 * i, "std": 0.0}} for i, n in enumerate(sizes)]
    assert "does not rise" in learning_curve.extrapolate(falling)["status"]


def test_learning_curve_of_a_fitted_model(tiny_bert_dir):
    train = gk.load_data(sentiment_frame(80, seed=0))
    test = gk.load_data(sentiment_frame(40, seed=1))
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    curve = learning_curve.measure_learning_curve(model, train, test, shots=(2, 4, 8, 16, 64), seeds=3)
    sizes = [p["per_class"] for p in curve["points"]]
    assert sizes == [2, 4, 8, 16, 40.0]  # 64 is above the largest class: the "all" point covers it
    assert curve["points"][-1]["all"] and curve["points"][-1]["n_train"] == 80
    assert [len(p["accuracy"]["values"]) for p in curve["points"]] == [3, 3, 3, 3, 1]
    assert curve["points"][0]["n_train"] == 4 and curve["n_test"] == 40
    assert curve["points"][-1]["accuracy"]["mean"] == pytest.approx(model.evaluate(test)["accuracy"])
    assert f"C={model.head_.info['C']:g}" in curve["head"]
    assert "status" in curve["extrapolation"]
    with pytest.raises(ConfigError, match="seeds must be an integer"):
        learning_curve.measure_learning_curve(model, train, test, seeds=0)


# -- the saved record ---------------------------------------------------------------------------------------------
def test_evaluation_record_is_saved_atomically_and_knows_when_it_is_stale(tiny_bert_dir, tmp_path, split):
    train, test = split
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    model.save(tmp_path / "m")
    record = suite.evaluate_model(model, test, train=train, learning_curve=True, shots=(4, 8, 16), seeds=2)
    assert record["baseline"]["transfer_gain"]["n"] == len(test)
    assert record["learning_curve"]["points"][0]["per_class"] == 4
    assert record["cv"] == {"skipped": "not requested (CLI: fit --cv K)"}
    path = suite.save_evaluation(tmp_path / "m", record)
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".")) == []
    saved = suite.read_evaluation(tmp_path / "m")
    assert saved["stale"] is False and saved["metrics"] == json.loads(json.dumps(record["metrics"]))
    data = json.loads(path.read_text())
    data["model"]["head_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    assert suite.read_evaluation(tmp_path / "m")["stale"] is True

    no_train = suite.evaluate_model(model, test)
    assert "no training data given" in no_train["leakage"]["skipped"]
    assert "no training data given" in no_train["baseline"]["skipped"]

    dropped = suite.evaluate_model(model, pd.concat([test.frame, train.frame.iloc[:5]]).reset_index(drop=True),
                                   train=train, drop_leaked=True, baseline=False)
    assert dropped["leakage"]["exact"] == 5 and dropped["leakage"]["dropped"]
    assert dropped["metrics"]["n"] == dropped["test"]["rows_after_dropping_leaked"] <= len(test)

    path.write_text("{not json")
    with pytest.raises(gk.ArtifactError, match="corrupt"):
        suite.read_evaluation(tmp_path / "m")


# -- transfer gain against scratch, forgetting (need the fine-tuning engine) ----------------------------------------
FINETUNE = {"strategy": "finetune", "epochs": 2, "learning_rate": 0.05, "patience": 0, "batch_size": 8,
            "progress": False}


def test_reinitialise_draws_new_weights_in_the_models_own_scheme(tiny_bert_dir):
    import torch
    from transformers import BertModel

    from graftkit.evaluation.transfer import reinitialise

    model = BertModel.from_pretrained(tiny_bert_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reinitialise(model, seed=1)
    after = model.state_dict()
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[query], after[query])
    assert after[query].std().item() == pytest.approx(model.config.initializer_range, rel=0.25)
    assert torch.equal(after["embeddings.LayerNorm.weight"], torch.ones_like(after["embeddings.LayerNorm.weight"]))
    again = BertModel.from_pretrained(tiny_bert_dir)
    reinitialise(again, seed=1)
    assert torch.equal(again.state_dict()[query], after[query])  # seeded

    plain = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    weight = plain[0].weight.clone()
    plain[1].running_mean.fill_(5.0)
    reinitialise(plain, seed=2)
    assert not torch.equal(weight, plain[0].weight) and torch.all(plain[1].running_mean == 0)


def test_scratch_baseline_leaves_the_fitted_model_alone(tiny_bert_dir, split):
    from graftkit.backbones.onnx_text import recorded_failure
    from graftkit.evaluation.transfer import scratch_baseline

    train, test = split
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    expected = model.predict_proba(test)
    result = scratch_baseline(model, train, test)
    # the random weights ran on PyTorch: the pretrained backbone's ONNX graph is not marked broken by them
    assert model.runtime_.name == "onnx" and recorded_failure(model.runtime_.folder) is None
    assert gk.Graft(backbone=str(tiny_bert_dir), progress=False).extraction_runtime() == "onnx"
    assert result["name"].endswith("from random initialisation + linear-probe")
    assert len(result["outputs"]) == len(test) and 0.0 <= result["accuracy"] <= 1.0
    np.testing.assert_array_equal(model.predict_proba(test), expected)
    record = suite.evaluate_model(model, test, train=train, scratch=True, baseline=False)
    gain = record["scratch"]["transfer_gain"]
    assert gain["baseline"] == pytest.approx(result["accuracy"]) and gain["model"] == record["metrics"]["accuracy"]


def test_linear_cka_invariances():
    from graftkit.evaluation.forgetting import linear_cka

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16))
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(X, 3.0 * X @ rotation + 1.0) == pytest.approx(1.0)
    assert linear_cka(X, rng.normal(size=(200, 16))) < 0.2
    with pytest.raises(DataError, match="same >= 2 rows"):
        linear_cka(X, X[:10])


def test_forgetting_of_a_fine_tuned_model(tiny_bert_dir, split):
    import torch

    from graftkit.evaluation.forgetting import measure_forgetting

    train, test = split
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = gk.Graft(str(tiny_bert_dir), **FINETUNE).fit(train)
        assert model.calibration_["fitted_on"].startswith("the fine-tuning validation split")
        reference = gk.load_data(sentiment_frame(60, seed=7))
        result = measure_forgetting(model, test, reference=reference, max_drop=-1.0)
    finally:
        torch.set_num_threads(threads)
    assert 0.0 < result["cka"] <= 1.0 and result["probe_rows"] == len(test)
    drift = result["weight_drift"]
    assert [g["group"] for g in drift] == ["embeddings", "encoder.layer.0", "encoder.layer.1", "pooler"][:len(drift)]
    moved = [g["relative_change"] > 0 for g in drift[:3]]
    assert moved == [False, True, True]  # finetune trains the top two groups on the feature path only
    ref = result["reference"]
    assert ref["n_train"] + ref["n_test"] == 60 and ref["drop"] == pytest.approx(ref["accuracy_before"] - ref["accuracy_after"])
    assert result["warning"].startswith("forgetting: a linear probe on the reference task")

    probe_only = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    assert "nothing to forget" in measure_forgetting(probe_only, test)["skipped"]
