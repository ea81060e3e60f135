"""Domain adaptation (issue 14): continued MLM pretraining into a backbone directory, domain-adversarial training
(gradient reversal, Ganin's schedule) on every trainable strategy, and the domain-shift measures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import examples, sentiment_frame
from hypothesis import given, settings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.cli.main import main
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.evaluation.shift import mmd_rbf, proxy_a_distance, shift_between
from graftkit.training.adversarial import (
    DomainAdversarial,
    ganin_lambda,
    reverse_gradient,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    path = folder / "docs.txt"
    path.write_text("\n".join(sentiment_frame(48, seed=5)["text"]) + "\n\n")
    return path


@pytest.fixture(scope="module")
def pretrained(tiny_bert_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "tiny-dapt"
    return gk.pretrain(str(corpus), out, backbone=str(tiny_bert_dir), steps=4, batch_size=8, progress=False)


# -- continued pretraining ------------------------------------------------------------------------------------------

def test_pretrain_writes_a_backbone_directory_with_its_lineage(pretrained, tiny_bert_dir, corpus):
    from safetensors.torch import load_file

    lineage = json.loads((pretrained.path / "graftkit-pretrain.json").read_text())
    assert lineage["steps"] == 4
    assert lineage["corpus"]["documents"] == 48  # the blank line is not a document
    assert lineage["base"]["spec"] == str(tiny_bert_dir.resolve())
    assert "model.safetensors" in lineage["base"]["files"]
    # the tiny BERT is saved without an MLM head: a new one, its decoder tied to the input embeddings
    assert lineage["mlm_head"]["initialised"] and lineage["mlm_head"]["decoder_tied_to_embeddings"]
    before = load_file(tiny_bert_dir / "model.safetensors")
    after = load_file(pretrained.path / "model.safetensors")
    assert set(after) == set(before)  # the same encoder layout (AutoModel's, the pooler kept)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("encoder.layer" in k for k in changed)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("pooler."))


def test_fit_on_the_pretrained_backbone_names_base_and_corpus(pretrained, tmp_path):
    model = gk.Graft(str(pretrained.path), strategy="linear-probe", progress=False).fit(sentiment_frame(40))
    assert model.backbone_.source.lineage["corpus"]["fingerprint"] == pretrained.lineage["corpus"]["fingerprint"]
    saved = model.save(tmp_path / "model")
    card = (saved / "README.md").read_text()
    assert "Continued pretraining" in card and pretrained.lineage["base"]["spec"] in card
    assert pretrained.lineage["corpus"]["fingerprint"][:16] in card
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["backbone"]["source"]["lineage"]["steps"] == 4
    assert gk.load(saved).predict(["good great film"])  # loads back, the lineage file verified with the weights


def test_pretrain_from_a_labelled_table_reads_its_text_column_tapt(tiny_bert_dir, sentiment_csv, tmp_path):
    result = gk.pretrain(str(sentiment_csv), tmp_path / "tapt", backbone=str(tiny_bert_dir), steps=2, batch_size=8,
                         whole_word_mask=True, progress=False)
    assert result.lineage["corpus"]["column"] == "text" and result.lineage["corpus"]["documents"] == 60
    assert result.lineage["settings"]["whole_word_mask"] is True


def test_pretrain_resumes_from_its_sealed_checkpoint(tiny_bert_dir, corpus, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated crash")

    run = tmp_path / "run"
    settings_ = {"backbone": str(tiny_bert_dir), "steps": 4, "batch_size": 8, "save_steps": 2, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        gk.pretrain(str(corpus), tmp_path / "out", checkpoint_dir=run, callbacks=[Crash()], **settings_)
    assert not (tmp_path / "out").exists()  # nothing half-written
    result = gk.pretrain(str(corpus), tmp_path / "out", checkpoint_dir=run, resume=True, **settings_)
    assert result.lineage["resumed_from"].endswith("checkpoint-2") and result.lineage["steps"] == 4
    with pytest.raises(ConfigError, match="another run"):  # other settings: not this run
        gk.pretrain(str(corpus), tmp_path / "out2", checkpoint_dir=run, resume=True,
                    **{**settings_, "learning_rate": 1e-3})


def test_pretrain_refuses_bad_inputs(tiny_bert_dir, tiny_vit_dir, corpus, tmp_path, pretrained):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        gk.pretrain(str(empty), tmp_path / "a", backbone=str(tiny_bert_dir), steps=1)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(DataError, match="every line is blank"):
        gk.pretrain(str(blank), tmp_path / "a", backbone=str(tiny_bert_dir), steps=1)
    with pytest.raises(BackboneError, match="text encoders"):
        gk.pretrain(str(corpus), tmp_path / "a", backbone=str(tiny_vit_dir), steps=1)
    with pytest.raises(gk.ArtifactError, match="--overwrite"):
        gk.pretrain(str(corpus), pretrained.path, backbone=str(tiny_bert_dir), steps=1)
    with pytest.raises(ConfigError, match="--steps"):
        gk.pretrain(str(corpus), tmp_path / "a", backbone=str(tiny_bert_dir), steps=0)


def test_pretrain_cli_bad_inputs_exit_2_with_one_line(tiny_bert_dir, tiny_vit_dir, corpus, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["pretrain", str(empty), "--backbone", str(tiny_bert_dir), "-o", str(tmp_path / "o")]) == 2
    assert main(["pretrain", str(corpus), "--backbone", str(tiny_vit_dir), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("graftkit: error:") and "empty" in err[-2]
    assert err[-1].startswith("graftkit: error:") and "text encoders" in err[-1]
    assert main(["pretrain", str(corpus), "--backbone", str(tiny_bert_dir), "-o", str(tmp_path / "o"), "--steps", "2",
                 "--batch-size", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2


# -- domain-adversarial training --------------------------------------------------------------------------------------

@settings(max_examples=examples(30))
@given(st.floats(0.0, 5.0), st.lists(st.floats(-10, 10), min_size=1, max_size=8))
def test_gradient_reversal_is_identity_forward_and_flips_gradients(strength, values):
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    y = reverse_gradient(x, strength)
    assert torch.equal(y.detach(), x.detach())
    (y * torch.arange(1, len(values) + 1, dtype=torch.float64)).sum().backward()
    assert torch.allclose(x.grad, -strength * torch.arange(1, len(values) + 1, dtype=torch.float64))


@settings(max_examples=examples(30))
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_lambda_schedule_is_ganins(p, q):
    assert ganin_lambda(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1)
    assert 0.0 <= ganin_lambda(p) < 1.0
    if p < q:
        assert ganin_lambda(p) <= ganin_lambda(q)


def test_lambda_schedule_endpoints():
    assert ganin_lambda(0.0) == 0.0 and ganin_lambda(1.0) == pytest.approx(0.99991, abs=1e-5)
    assert ganin_lambda(-1) == 0.0 and ganin_lambda(2) == ganin_lambda(1)  # clipped to [0, 1]


def test_domain_objective_trains_its_classifier_and_reverses_into_the_features():
    torch.manual_seed(0)
    objective = DomainAdversarial(4, weight=1.0).eval()  # no dropout: the two passes below see the same classifier
    objective.progress = 1.0

    class Features(torch.nn.Module):  # stands in for GraftModel: standardized(inputs) -> features
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 4)

        def standardized(self, inputs):
            return self.layer(inputs)

    model = Features().train()
    source_in, target_in = torch.randn(8, 4), torch.randn(8, 4) + 3
    loss = objective(model, model.standardized(source_in), {"target_inputs": target_in})
    loss.backward()
    grad_reversed = model.layer.weight.grad.clone()
    classifier_grad = objective.classifier[0].weight.grad.clone()
    # the same loss without reversal: the feature gradient is the exact negative (times λ), the classifier's the same
    model.zero_grad()
    objective.zero_grad()
    features = torch.cat([model.standardized(source_in), model.standardized(target_in)])
    logits = objective.classifier(features).squeeze(-1)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.cat([torch.zeros(8), torch.ones(8)]))
    plain.backward()
    assert torch.allclose(grad_reversed, -objective.strength * model.layer.weight.grad, atol=1e-6)
    assert torch.allclose(classifier_grad, objective.classifier[0].weight.grad, atol=1e-6)
    model.eval()
    assert objective(model, model.standardized(source_in), {"target_inputs": target_in}) is None  # training only


@pytest.mark.parametrize("strategy", ["finetune", "lp-ft", "lora"])
def test_dann_fits_with_every_trainable_strategy(tiny_bert_dir, tmp_path, strategy):
    target = tmp_path / "target.csv"
    pd.DataFrame({"text": [t + " the plot" for t in sentiment_frame(30, seed=4)["text"]]}).to_csv(target, index=False)
    model = gk.Graft(str(tiny_bert_dir), strategy=strategy, epochs=2, progress=False, adapt_to=str(target))
    model.fit(sentiment_frame(40))
    record = model.training_["domain_adaptation"]
    assert record["target"]["rows"] == 30 and record["lambda_final"] > 0.99
    assert 0.0 <= record["domain_accuracy_last_epoch"] <= 1.0
    assert all("domain_accuracy" in row for row in model.training_["history"])
    assert any(g["name"] == "objectives" for g in model.training_["optimizer_groups"])
    saved = model.save(tmp_path / "model")
    assert gk.load(saved).predict(["good great film"])  # the domain classifier is not part of the artifact


def test_dann_target_of_another_modality_is_refused(tiny_bert_dir, tmp_path, capsys):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(paths[-1])
    target = tmp_path / "images.csv"
    pd.DataFrame({"image": [str(p) for p in paths]}).to_csv(target, index=False)
    with pytest.raises(DataError, match="holds image.*reads text"):
        gk.Graft(str(tiny_bert_dir), strategy="finetune", epochs=1, progress=False,
                 adapt_to=str(target)).fit(sentiment_frame(20))
    data = tmp_path / "train.csv"
    sentiment_frame(20).to_csv(data, index=False)
    code = main(["fit", str(data), "--backbone", str(tiny_bert_dir), "--strategy", "finetune", "--epochs", "1",
                 "--adapt-to", str(target), "-o", str(tmp_path / "m")])
    assert code == 2 and "holds image" in capsys.readouterr().err.strip().splitlines()[-1]


def test_dann_warns_when_the_target_is_the_test_set(tiny_bert_dir, tmp_path, caplog):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    sentiment_frame(30).to_csv(train, index=False)
    sentiment_frame(16, seed=9).to_csv(test, index=False)
    code = main(["fit", str(train), "--test", str(test), "--backbone", str(tiny_bert_dir), "--strategy", "finetune",
                 "--epochs", "1", "--adapt-to", str(test), "-o", str(tmp_path / "m")])
    assert code == 0
    assert any("leak" in r.getMessage() and "test" in r.getMessage() for r in caplog.records)


# -- the shift measures -----------------------------------------------------------------------------------------------

def test_pad_and_mmd_tell_shifted_from_unshifted_data():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(300, 16))
    same = rng.normal(size=(300, 16))
    shifted = rng.normal(size=(300, 16)) + np.r_[np.full(4, 1.5), np.zeros(12)]
    assert proxy_a_distance(source, shifted)["pad"] > 1.5
    assert proxy_a_distance(source, same)["pad"] < 0.4
    assert mmd_rbf(source, shifted)["p_value"] < 0.01
    assert mmd_rbf(source, same)["p_value"] > 0.05
    assert mmd_rbf(source, shifted)["mmd2"] > 10 * abs(mmd_rbf(source, same)["mmd2"])
    assert shift_between(source, shifted)["large"] and not shift_between(source, same)["large"]


def test_shift_refuses_mismatched_or_tiny_inputs():
    with pytest.raises(DataError, match="one width"):
        proxy_a_distance(np.zeros((20, 3)), np.zeros((20, 4)))
    with pytest.raises(DataError, match="at least 10"):
        mmd_rbf(np.zeros((5, 3)), np.zeros((20, 3)))


@pytest.mark.slow
def test_domain_shift_sst2_against_clothing_reviews_is_large():
    from conftest import shared_path

    from graftkit.evaluation.shift import domain_shift

    sst2 = pd.read_csv(shared_path("data", "sst2", "train.tsv"), sep="\t", quoting=3).head(150)
    reviews = pd.read_csv(shared_path("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv"))
    reviews = reviews["Review Text"].dropna().head(150).tolist()
    probe = gk.Graft("all-MiniLM-L6-v2", strategy="linear-probe", progress=False)
    found = domain_shift(probe, sst2.rename(columns={"sentence": "text"})[["text"]], reviews)
    assert found["large"] and found["proxy_a_distance"]["pad"] > 1.5
    same = domain_shift(probe, sst2.rename(columns={"sentence": "text"})[["text"]].head(75),
                        sst2["sentence"].tail(75).tolist())
    assert not same["large"]


def test_evaluate_reports_the_domain_shift_to_a_target(tiny_bert_dir, tmp_path, capsys):
    train, test, target = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "target.txt"
    sentiment_frame(40).to_csv(train, index=False)
    sentiment_frame(20, seed=7).to_csv(test, index=False)
    target.write_text("\n".join(["the the the plot plot"] * 12 + ["actor actor movie quite"] * 12) + "\n")
    assert main(["fit", str(train), "--backbone", str(tiny_bert_dir), "--test-size", "0", "-o",
                 str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), str(test), "--train", str(train), "--target", str(target),
                 "--json", "--no-baseline"]) == 0
    shift = json.loads(capsys.readouterr().out)["domain_shift"]
    assert shift["target"]["rows"] == 24 and shift["source"]["rows"] == 40
    assert shift["proxy_a_distance"]["pad"] > 1.0 and shift["large"]  # repeated filler lines vs sentiment sentences
