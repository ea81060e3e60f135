"""Issue 13: zero-shot from class descriptions, the label-initialised probe, SetFit-style contrastive
fine-tuning, and the K-shot protocol (library and CLI), on the tiny BERT; one slow test on real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

import graftkit as gk
from graftkit.backbones import load_backbone
from graftkit.backbones.base import Backbone
from graftkit.cli.main import main
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.evaluation.fewshot import draw_shots, fewshot
from graftkit.features.extract import extract_features
from graftkit.strategies.descriptions import description_texts, meaningful_names, meaningless_name, read_descriptions
from graftkit.training.contrastive import in_batch_pair_loss, sample_pairs

from conftest import examples, sentiment_frame, shared_path

DESCRIBED = {"pos": "good great excellent", "neg": "bad awful terrible"}


@pytest.fixture
def table():
    return gk.load_data(sentiment_frame(40))


def test_embed_queries_is_the_row_embedding(tiny_bert_dir):
    backbone = load_backbone(str(tiny_bert_dir))
    texts = ["good movie", "the plot was awful really", "a"]
    np.testing.assert_allclose(backbone.embed_queries(texts), extract_features(backbone, texts, progress=False),
                               rtol=1e-5, atol=1e-6)


def test_default_embed_queries_refuses():
    class Pixels(Backbone):
        family = "pixels"

        def load_item(self, item, where):
            return item

        def preprocess(self, decoded):
            return {}

        def embed(self, batch):
            return None

        def layer_groups(self):
            return []

    import torch

    backbone = Pixels(torch.nn.Linear(1, 1), gk.backbones.base.BackboneSource("px", "local", "/x"), 1)
    with pytest.raises(BackboneError, match="cannot embed text queries into its feature space"):
        backbone.embed_queries(["a cat"])


def test_zero_shot_scores_cosine_to_descriptions(tiny_bert_dir, table, tmp_path):
    rows = table.items()
    # a description equal to a row's text: that row's cosine is 1, its logit exactly the scale
    model = gk.Graft(backbone=str(tiny_bert_dir), strategy="zero-shot", progress=False, logit_scale=7.0,
                     label_descriptions={"neg": rows[1], "pos": rows[0]}).fit(table)
    logits = model.raw_outputs(table.head(2))
    assert logits[0, 1] == pytest.approx(7.0, abs=1e-4) and logits[1, 0] == pytest.approx(7.0, abs=1e-4)
    assert (np.abs(model.raw_outputs(table)) <= 7.0 + 1e-4).all()
    # labelled rows: a temperature is fitted on their logits (nothing else is learnt from them)
    from graftkit.scoring.calibration import fit_temperature

    expected = fit_temperature(model.raw_outputs(table), model.task_.encode(table))
    assert model.calibration_["temperature"] == pytest.approx(expected.temperature)
    assert "cross-fitted" in model.calibration_["fitted_on"]
    assert model.head_.info["descriptions"] == [rows[1], rows[0]]
    model.save(tmp_path / "zs")
    reloaded = gk.load(tmp_path / "zs")
    np.testing.assert_allclose(reloaded.predict_proba(table), model.predict_proba(table), rtol=1e-5)


def test_zero_shot_without_rows(tiny_bert_dir, table, tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("class,description\npos,good great excellent\nneg,\"bad, awful\"\n")
    model = gk.Graft(backbone=str(tiny_bert_dir), strategy="zero-shot", progress=False,
                     label_descriptions=str(path), template="this is {}").fit()
    assert model.task_.labels == ("pos", "neg")
    assert model.head_.info["descriptions"] == ["this is good great excellent", "this is bad, awful"]
    assert model.calibration_["status"].startswith("skipped")
    assert model.parameter_counts()["trainable"] == 0
    model.save(tmp_path / "m")
    reloaded = gk.load(tmp_path / "m")
    assert reloaded.predict(table) == model.predict(table)
    assert 0.0 <= reloaded.evaluate(table)["accuracy"] <= 1.0


def test_fit_without_rows_needs_a_zero_shot_strategy(tiny_bert_dir):
    with pytest.raises(ConfigError, match="learns from labelled rows"):
        gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit()
    with pytest.raises(ConfigError, match="--label-descriptions"):
        gk.Graft(backbone=str(tiny_bert_dir), strategy="zero-shot", progress=False).fit()


def test_description_files(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"a b": "first", "c": "second"}))
    assert read_descriptions(str(path)) == {"a b": "first", "c": "second"}
    assert description_texts(["c", "a b"], str(path), "about {}.") == ["about second.", "about first."]
    with pytest.raises(DataError, match="no description for class 'd'"):
        description_texts(["a b", "c", "d"], str(path))
    with pytest.raises(DataError, match="describes class 'c', which the data do not have"):
        description_texts(["a b"], str(path))
    with pytest.raises(ConfigError, match="class '1' is an id"):
        description_texts(["0", "1"] if False else ["yes", "1"])
    assert description_texts(["card_arrival", "sci-tech"]) == ["card arrival", "sci tech"]
    with pytest.raises(ConfigError, match="exactly one"):
        gk.Graft(strategy="zero-shot", template="no slot").fit()


@given(st.integers(-10**6, 10**6), st.sampled_from(["LABEL_", "label ", "class", "c", "cat_", "y"]))
def test_ids_are_never_meaningful_names(number, prefix):
    assert meaningless_name(str(number)) and meaningless_name(f"{number / 7:.3f}")
    assert meaningless_name(f"{prefix}{abs(number)}")
    assert not meaningful_names(["spam", f"{prefix}{abs(number)}"])


@given(st.dictionaries(st.text(min_size=1).filter(lambda s: s.strip()), st.text(min_size=1).filter(str.strip),
                       min_size=1, max_size=6))
def test_read_descriptions_of_any_mapping(mapping):
    stripped = {k.strip(): v.strip() for k, v in mapping.items()}
    if len(stripped) < len(mapping):
        return
    assert read_descriptions(mapping) == stripped


def test_label_init_probe_is_pulled_to_the_descriptions(tiny_bert_dir, table):
    common = {"backbone": str(tiny_bert_dir), "progress": False, "label_descriptions": DESCRIBED}
    zero = gk.Graft(strategy="zero-shot", **common).fit(table)
    tight = gk.Graft(strategy="linear-probe", label_init=True, C=1e-8, **common).fit(table)
    # a vanishing C leaves the prior: the zero-shot classifier's logits up to a per-class constant
    difference = tight.raw_outputs(table) - zero.raw_outputs(table) * 1.0
    X = tight.features(table)
    scale = 20.0 / float(np.linalg.norm(X, axis=1).mean())
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    expected = X @ (zero.head_.arrays["queries"] * scale).T
    np.testing.assert_allclose(tight.raw_outputs(table) - expected,
                               np.broadcast_to((tight.raw_outputs(table) - expected)[0], expected.shape), atol=1e-3)
    assert difference.shape == (len(table), 2) and unit.shape == X.shape
    loose = gk.Graft(strategy="linear-probe", label_init=True, **common).fit(table)
    assert loose.head_.info["prior"].startswith("class-description") and loose.head_.info["C"] > 0
    assert loose.evaluate(table)["accuracy"] >= 0.8  # the rows' words carry the label
    with pytest.raises(ConfigError, match="--label-init true"):
        gk.Graft(strategy="linear-probe", label_descriptions=DESCRIBED).fit(table)


@given(st.lists(st.integers(0, 3), min_size=2, max_size=60), st.integers(1, 4), st.integers(0, 99))
def test_pairs_are_linear_and_correct(labels, iterations, seed):
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        with pytest.raises(DataError):
            sample_pairs(y, iterations, seed)
        return
    pairs = sample_pairs(y, iterations, seed)
    assert len(pairs) <= 2 * iterations * len(y)
    assert len(pairs) >= iterations * len(y)  # every row gets its negative each round
    i, j, target = pairs.T
    assert ((y[i] == y[j]) == (target == 1)).all()
    assert (i[target == 1] != j[target == 1]).all()
    np.testing.assert_array_equal(pairs, sample_pairs(y, iterations, seed))


def test_contrastive_fit_save_load(tiny_bert_dir, table, tmp_path):
    before = load_backbone(str(tiny_bert_dir)).model.state_dict()
    model = gk.Graft(backbone=str(tiny_bert_dir), strategy="contrastive", progress=False, num_iterations=2,
                     batch_size=16, learning_rate=1e-3).fit(table)
    after = model.backbone_.model.state_dict()
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)
    assert model.training_["pairs"]["train"] <= 2 * 2 * len(table)
    assert model.head_.info["kind"] == "logreg" and model.finetuned_
    model.save(tmp_path / "c")
    reloaded = gk.load(tmp_path / "c")
    np.testing.assert_allclose(reloaded.predict_proba(table), model.predict_proba(table), rtol=1e-4, atol=1e-5)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=12), st.integers(0, 99))
def test_in_batch_loss_is_the_balanced_pair_loss(batch, seed):
    import torch

    rows, labels = (torch.tensor(v) for v in zip(*batch))
    embeddings = torch.from_numpy(np.random.default_rng(seed).normal(size=(len(batch), 4))).float()
    embeddings.requires_grad_(True)
    loss = in_batch_pair_loss(embeddings, labels, rows)
    z = (embeddings / embeddings.norm(dim=1, keepdim=True)).detach().numpy()
    kinds = {True: [], False: []}
    for i in range(len(batch)):
        for j in range(i + 1, len(batch)):
            if rows[i] != rows[j]:  # a row twice in a batch is no pair
                same = bool(labels[i] == labels[j])
                kinds[same].append((z[i] @ z[j] - same) ** 2)
    terms = [np.mean(v) for v in kinds.values() if v]
    assert float(loss.detach()) == pytest.approx(np.mean(terms) if terms else 0.0, abs=1e-5)
    loss.backward()  # a batch without a pair still backpropagates (zero)
    assert embeddings.grad is not None


def test_in_batch_contrastive_separates_the_classes(tiny_bert_dir, table, tmp_path):
    import torch

    def pair_loss(backbone):
        with torch.no_grad():
            embeddings = torch.from_numpy(extract_features(backbone, table.items(), progress=False))
        return float(in_batch_pair_loss(embeddings, torch.tensor(y), torch.arange(len(y))))

    y = gk.Graft().infer_task(table).encode(table)
    before = pair_loss(load_backbone(str(tiny_bert_dir)))
    model = gk.Graft(backbone=str(tiny_bert_dir), strategy="contrastive", pairs="in-batch", progress=False,
                     num_iterations=3, batch_size=8, learning_rate=1e-3, label_init=True,
                     label_descriptions=DESCRIBED).fit(table)
    assert model.head_.info["prior"].startswith("class-description")  # described by the tuned encoder
    assert model.training_["head"].endswith("pulled towards the class descriptions")
    pairs = model.training_["pairs"]
    assert pairs["mode"] == "in-batch" and pairs["encodings"] == 3 * len(table)  # linear in rows and rounds
    assert pairs["pairs_per_batch"] == 28 and pairs["positive_share"] == pytest.approx(19 / 39, abs=1e-4)
    assert pair_loss(model.backbone_) < before  # all pairs of the data set, not only the batches trained on
    model.save(tmp_path / "ib")
    np.testing.assert_allclose(gk.load(tmp_path / "ib").predict_proba(table), model.predict_proba(table),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match=r"pairs must be one of sampled, in-batch; got 'all' \(--pairs\)"):
        gk.Graft(strategy="contrastive", pairs="all").fit(table)
    with pytest.raises(DataError, match="no description for class 'pos'"):  # before the encoder trains
        gk.Graft(backbone=str(tiny_bert_dir), strategy="contrastive", pairs="in-batch", label_init=True,
                 label_descriptions={"neg": "bad"}, progress=False).fit(table)
    with pytest.raises(ConfigError, match="--label-descriptions on contrastive is read only with --label-init"):
        gk.Graft(strategy="contrastive", label_descriptions=DESCRIBED).fit(table)
    with pytest.raises(ConfigError, match="at least two rows per batch"):
        gk.Graft(backbone=str(tiny_bert_dir), strategy="contrastive", pairs="in-batch", batch_size=1,
                 progress=False).fit(table)


def test_draws_are_seeded_and_per_class(table):
    task = gk.Graft().infer_task(table)
    draws = draw_shots(table, task, 3, 4, seed=5)
    assert draws[0].tolist() == draw_shots(table, task, 3, 4, seed=5)[0].tolist()
    y = task.encode(table)
    for positions in draws:
        assert np.bincount(y[positions]).tolist() == [3, 3] and len(set(positions)) == 6
    assert len({tuple(d) for d in draws}) > 1
    with pytest.raises(DataError, match=r"--shots 21 is more than the 20 row\(s\) of class"):
        draw_shots(table, task, 21, 2)


def test_fewshot_same_draws_for_every_strategy(tiny_bert_dir, table):
    train, test = table.split(test_size=0.5, seed=0)
    base = gk.Graft(backbone=str(tiny_bert_dir), progress=False)
    seen = []
    result = fewshot(base, train, test, {"zs": {"strategy": "zero-shot", "label_descriptions": DESCRIBED},
                                         "probe": {"strategy": "linear-probe"}}, shots=4, repeats=3,
                     on_result=lambda name, r, record: seen.append((name, r)))
    assert seen == [("zs", 0), ("zs", 1), ("zs", 2), ("probe", 0), ("probe", 1), ("probe", 2)]
    assert len(result["draws"]) == 3 and all(len(d) == 8 for d in result["draws"])
    for row in result["strategies"].values():
        values = [d["accuracy"] for d in row["draws"]]
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))


def test_cli_fewshot_and_zero_shot_fit(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    sentiment_frame(40).to_csv(data, index=False)
    descriptions = tmp_path / "d.json"
    descriptions.write_text(json.dumps(DESCRIBED))
    code = main(["fewshot", str(data), "--backbone", str(tiny_bert_dir), "--shots", "3", "--repeats", "2",
                 "--label-descriptions", str(descriptions), "--strategies", "zero-shot", "linear-probe",
                 "linear-probe:label_init=true", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out["strategies"]) == {"zero-shot", "linear-probe", "linear-probe:label_init=true"}
    assert out["strategies"]["linear-probe:label_init=true"]["settings"]["label_descriptions"] == str(descriptions)
    code = main(["fit", "--strategy", "zero-shot", "--label-descriptions", str(descriptions), "--backbone",
                 str(tiny_bert_dir), "-o", str(tmp_path / "zs")])
    assert code == 0 and (tmp_path / "zs" / "head.safetensors").is_file()
    assert main(["evaluate", str(tmp_path / "zs"), str(data)]) == 0


@pytest.mark.parametrize("args, message", [
    (["fewshot", "{data}", "--shots", "50"], "--shots 50 is more than the 10 row(s) of class 'neg'"),
    (["fewshot", "{data}", "--strategies", "zero-shot", "--label-descriptions", "{missing}"],
     "no description for class 'pos'"),
    (["fewshot", "{data}", "--strategies", "zero-shot", "--label-descriptions", "{extra}"],
     "describes class 'meh', which the data do not have"),
    (["fit", "{data}", "--strategy", "zero-shot", "--label-descriptions", "{missing}", "-o", "{out}"],
     "no description for class 'pos'"),
    (["fit", "-o", "{out}"], "learns from labelled rows"),
    (["fewshot", "{data}", "--strategies", "zero-shot:bogus=1"], "has no parameter 'bogus'"),
])
def test_bad_inputs_exit_2(tiny_bert_dir, tmp_path, capsys, args, message):
    data = tmp_path / "reviews.csv"
    sentiment_frame(40).to_csv(data, index=False)
    (tmp_path / "missing.json").write_text(json.dumps({"neg": "bad"}))
    (tmp_path / "extra.json").write_text(json.dumps({**DESCRIBED, "meh": "so so"}))
    paths = {"data": data, "missing": tmp_path / "missing.json", "extra": tmp_path / "extra.json",
             "out": tmp_path / "out"}
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args] + ["--backbone", str(tiny_bert_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_auto_runs_zero_shot_as_rung_zero_only_for_words(tiny_bert_dir):
    frame = sentiment_frame(40)
    result = gk.auto(frame, backbones=[str(tiny_bert_dir)], budget="2m", ladder=[], progress=False)
    rung = [row for row in result.rows if row["kind"] == "zero-shot"]
    assert len(rung) == 1 and rung[0]["status"] == "ran" and "class names are words" in rung[0]["reason"]
    assert rung[0]["validation"]["accuracy"] is not None
    ids = frame.assign(label=frame["label"].map({"pos": "1", "neg": "0"}))
    result = gk.auto(ids, backbones=[str(tiny_bert_dir)], budget="2m", ladder=[], progress=False)
    assert not [row for row in result.rows if row["kind"] == "zero-shot"]
    result = gk.auto(ids, backbones=[str(tiny_bert_dir)], budget="2m", ladder=[], progress=False,
                     label_descriptions={"1": "good great", "0": "bad awful"})
    assert [row["status"] for row in result.rows if row["kind"] == "zero-shot"] == ["ran"]


@pytest.mark.slow
def test_zero_shot_and_fewshot_on_ag_news():
    path = shared_path("data", "ag_news", "test.csv")
    frame = pd.read_csv(path, header=None, names=["label", "title", "body"], dtype=str).sample(400, random_state=0)
    frame["text"] = frame["title"] + ". " + frame["body"]
    table = gk.load_data(frame[["text", "label"]].reset_index(drop=True))
    train, test = table.split(test_size=0.5, seed=0)
    described = {"1": "world politics", "2": "sports", "3": "business", "4": "science and technology"}
    result = fewshot(gk.Graft(progress=False), train, test,
                     {"zs": {"strategy": "zero-shot", "label_descriptions": described,
                             "template": "a news article about {}"},
                      "probe": {"strategy": "linear-probe"},
                      "init": {"strategy": "linear-probe", "label_init": True, "label_descriptions": described}},
                     shots=4, repeats=2)
    scores = {k: v["mean"] for k, v in result["strategies"].items()}
    assert scores["zs"] > 0.5  # four balanced classes: chance is 0.25
    assert scores["init"] > 0.5 and scores["probe"] > 0.4
