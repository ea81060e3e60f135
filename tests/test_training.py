"""The fine-tuning engine (issue 3): strategies, layer groups and learning rates, gradual unfreezing, L2-SP,
artifacts (graftkit and plain transformers), exact resume after an interruption or kill -9, bad inputs,
and (slow) 2-process CPU data-parallel training. Everything runs on the 2-layer, hidden-32 BERT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORDS, model_weights, sentiment_frame, stop_after_epoch
from safetensors.torch import load_file
from torch import nn
from transformers import TrainerCallback

import graftkit as gk
from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.cli.main import main
from graftkit.cli.options import strategy_flags
from graftkit.errors import ConfigError
from graftkit.strategies import get_strategy
from graftkit.strategies.base import strategy_classes
from graftkit.tasks.heads import LinearHead, LogRegHead
from graftkit.training.checkpoints import SEAL
from graftkit.training.data import BackboneCollator, Examples
from graftkit.tasks import Classification
from graftkit.training.engine import train_model

SENTIMENT = Classification(classes=("neg", "pos"))
from graftkit.training.groups import optimizer_groups, plan_layers
from graftkit.training.model import GraftModel

TRAINABLE = ("finetune", "full", "gradual", "lp-ft")
FAST = {"batch_size": 8, "progress": False}
# per strategy: settings that learn the toy sentiment task in 3 epochs on the random tiny BERT
LEARNS = {
    "finetune": {"learning_rate": 0.05},
    "full": {"learning_rate": 0.05, "grad_accumulation": 2, "lr_schedule": "cosine"},
    "gradual": {"learning_rate": 0.05, "l2_sp": 0.01},
    "lp-ft": {"learning_rate": 0.005, "C": 1.0},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sentiment():
    data = gk.load_data(sentiment_frame(80), text="text", label="label")
    return data.split(test_size=0.25, seed=0)


def fit(backbone_dir, data, strategy="finetune", epochs=3, **params):
    settings = {"patience": 0, **LEARNS.get(strategy, {}), **params}
    return gk.Graft(str(backbone_dir), strategy=strategy, epochs=epochs, **FAST, **settings).fit(data)


@pytest.fixture(scope="module")
def finetuned(tiny_bert_dir, sentiment):
    torch.set_num_threads(1)
    train, _ = sentiment
    return fit(tiny_bert_dir, train, "finetune")


def _probe_plan(backbone, table):
    examples = Examples(table, np.zeros(len(table), dtype=np.int64))
    return plan_layers(backbone, BackboneCollator(backbone).sample(examples))


# -- every strategy learns ----------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", TRAINABLE)
def test_each_strategy_beats_chance(tiny_bert_dir, sentiment, strategy):
    train, test = sentiment
    model = fit(tiny_bert_dir, train, strategy)
    accuracy = model.evaluate(test)["accuracy"]
    assert accuracy >= 0.75, (strategy, accuracy, model.training_["history"])
    history = model.training_["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all({"train_loss", "lr", "val_loss", "val_accuracy", "val_macro_f1"} <= set(row) for row in history)
    assert model.strategy_.name == strategy and model.training_["parameters"]["trainable"] > 66


def test_lp_ft_starts_from_the_linear_probe(tiny_bert_dir, sentiment):
    train, _ = sentiment
    model = fit(tiny_bert_dir, train, "lp-ft", epochs=1)
    probe = model.training_["linear_probe"]
    assert probe["kind"] == "logreg" and probe["C"] == 1.0


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logreg_folds_into_one_linear_layer(n_classes):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32) * 3 + 1
    y = np.arange(60) % n_classes
    probe = LogRegHead.fit(X, y, C=1.0)
    weight, bias = probe.linear_weights()
    linear = LinearHead({"weight": weight, "bias": bias}, {"kind": "linear"})
    assert weight.shape == (n_classes, 5)
    np.testing.assert_allclose(linear.predict_proba(X), probe.predict_proba(X), atol=1e-5)


# -- what trains, at which learning rate ----------------------------------------------------------------
def test_trainable_parameters_per_strategy(tiny_bert_dir, sentiment):
    train, _ = sentiment
    backbone = gk.Graft(str(tiny_bert_dir)).loaded_backbone()
    plan = _probe_plan(backbone, train)
    bert = backbone.model
    assert plan.names == ["embeddings", "encoder.layer.0", "encoder.layer.1"]  # the unused pooler is left out
    assert {id(p) for p in bert.pooler.parameters()} <= {id(p) for p in plan.unused}
    size = {name: sum(p.numel() for p in module.parameters()) for name, module in
            (("embeddings", bert.embeddings), ("layer0", bert.encoder.layer[0]), ("layer1", bert.encoder.layer[1]))}
    head = 32 * 2 + 2
    expected = {"finetune": head + size["layer1"] + size["layer0"], "full": head + sum(size.values()),
                "gradual": head + sum(size.values())}
    for name, count in expected.items():
        model = GraftModel(backbone, SENTIMENT, plan)
        model.set_trainable_groups(get_strategy(name).groups_to_train(len(plan)))
        assert model.parameter_counts()["trainable"] == count, name
    model = GraftModel(backbone, SENTIMENT, plan)
    model.set_trainable_groups(get_strategy("finetune", layers=1).groups_to_train(len(plan)))
    assert model.parameter_counts()["trainable"] == head + size["layer1"]
    assert not any(p.requires_grad for p in bert.embeddings.parameters())


def test_layerwise_learning_rates_reach_the_optimizer(tiny_bert_dir, sentiment):
    train, _ = sentiment
    seen = {}

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            seen.update({g["name"]: (g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups})

    gk.Graft(str(tiny_bert_dir), strategy="full", epochs=1, learning_rate=0.01, backbone_lr_ratio=0.1,
             layer_decay=0.5, patience=0, **FAST).fit(train, callbacks=[Capture()])
    assert seen["head"] == (0.01, 0.01) and seen["head.no_decay"] == (0.01, 0.0)
    assert seen["backbone.encoder.layer.1"] == pytest.approx((0.001, 0.01))
    assert seen["backbone.encoder.layer.0"][0] == pytest.approx(0.0005)
    assert seen["backbone.embeddings"][0] == pytest.approx(0.00025)
    assert seen["backbone.embeddings.no_decay"] == pytest.approx((0.00025, 0.0))


def test_l2_sp_penalty_zero_at_start_positive_after_steps(tiny_bert_dir, sentiment):
    train, _ = sentiment
    backbone = gk.Graft(str(tiny_bert_dir)).loaded_backbone()
    plan = _probe_plan(backbone, train)
    model = GraftModel(backbone, SENTIMENT, plan, l2_sp=0.5)
    assert model.penalty().item() == 0.0
    groups = optimizer_groups(model.head, plan, get_strategy("full", l2_sp=0.5))
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].startswith("backbone"))  # L2-SP replaces it
    seen = []

    class Penalty(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            seen.append(model.penalty().item())

    gk.Graft(str(tiny_bert_dir), strategy="full", epochs=1, learning_rate=0.05, l2_sp=0.5, patience=0,
             **FAST).fit(train, callbacks=[Penalty()])
    assert seen and seen[0] > 0


def test_gradual_unfreezes_one_group_per_epoch_and_keeps_frozen_groups_in_eval(tiny_bert_dir, sentiment):
    train, _ = sentiment
    per_epoch, modes = [], []

    class Watch(TrainerCallback):
        def on_epoch_begin(self, args, state, control, model=None, **kwargs):
            per_epoch.append(sum(p.numel() for p in model.parameters() if p.requires_grad))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            modes.append([m.training for m in (model.backbone.embeddings, model.backbone.encoder.layer[1])])

    model = gk.Graft(str(tiny_bert_dir), strategy="gradual", epochs=4, learning_rate=0.05, patience=0,
                     **FAST).fit(train, callbacks=[Watch()])
    bert = model.backbone_.model
    size = [sum(p.numel() for p in m.parameters()) for m in (bert.embeddings, *bert.encoder.layer)]
    head = 66
    assert per_epoch == [head, head + size[2], head + size[2] + size[1], head + sum(size)]
    assert model.training_["schedule"] == [0, 1, 2, 3]
    assert [row["trainable_parameters"] for row in model.training_["history"]] == per_epoch
    assert model.parameter_counts()["trainable"] == per_epoch[-1]
    assert modes[0] == [False, False] and modes[-1] == [True, True]  # frozen groups stay in eval mode


def test_a_gradual_run_cut_short_counts_only_the_groups_it_reached(tiny_bert_dir, sentiment):
    train, _ = sentiment
    model = gk.Graft(str(tiny_bert_dir), strategy="gradual", epochs=2, patience=0, **FAST).fit(train)
    bert = model.backbone_.model
    top = sum(p.numel() for p in bert.encoder.layer[1].parameters())
    assert model.training_["schedule"] == [0, 1]
    assert model.parameter_counts()["trainable"] == 66 + top < model.parameter_counts()["total"] / 2


def test_gradual_schedule_is_configurable():
    strategy = get_strategy("gradual", unfreeze_every=2, layers=2)
    assert [strategy.groups_at_epoch(e, 5) for e in range(7)] == [0, 0, 1, 1, 2, 2, 2]


class ToyBackbone(Backbone):
    """A bag-of-words MLP with BatchNorm: the engine needs nothing but the backbone contract."""

    family = "toy"
    modality = "text"

    def __init__(self):
        torch.manual_seed(0)
        self.vocab = {w: i for i, w in enumerate(sorted({w for ws in WORDS.values() for w in ws}))}
        blocks = [nn.Sequential(nn.Linear(len(self.vocab), 64), nn.BatchNorm1d(64), nn.ReLU()),
                  nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU())]
        super().__init__(nn.Sequential(*blocks), BackboneSource(spec="toy", kind="local", path="."), 16)

    def load_item(self, item, where):
        return item

    def preprocess(self, decoded):
        x = torch.zeros(len(decoded), len(self.vocab))
        for row, text in enumerate(decoded):
            for word in text.split():
                x[row, self.vocab[word]] += 1
        return {"x": x}

    def embed(self, batch):
        return self.model(batch["x"].to(self.device))

    def layer_groups(self):
        return list(self.model)


def test_engine_is_modality_agnostic_and_frozen_batchnorm_stays_frozen(sentiment, tmp_path):
    train, test = sentiment
    backbone = ToyBackbone()
    frozen, trained = backbone.model[0][1], backbone.model[1][1]
    before = frozen.running_mean.clone(), trained.running_mean.clone()
    y = np.array([0 if label == "neg" else 1 for label in train.labels()])
    settings = {"layers": 1, "epochs": 3, "learning_rate": 0.05, "backbone_lr_ratio": 1.0, "patience": 0}
    model, result = train_model(backbone, get_strategy("finetune", **settings, freeze_batchnorm=False), SENTIMENT,
                                     train=Examples(train, y), validation=None, batch_size=8, seed=0,
                                     device="cpu", run_dir=tmp_path / "run", progress=False)
    assert torch.equal(frozen.running_mean, before[0])
    assert not torch.equal(trained.running_mean, before[1])  # a trained BatchNorm re-estimates its statistics
    toy = ToyBackbone()  # the default (freeze_batchnorm): statistics stay pretrained, the affine weights train
    norm = toy.model[1][1]
    mean, weight = norm.running_mean.clone(), norm.weight.detach().clone()
    train_model(toy, get_strategy("finetune", **settings), SENTIMENT, train=Examples(train, y), validation=None,
                batch_size=8, seed=0, device="cpu", run_dir=tmp_path / "run2", progress=False)
    assert torch.equal(norm.running_mean, mean) and not torch.equal(norm.weight.detach(), weight)
    assert result.parameters["trainable"] == 64 * 16 + 16 + 2 * 16 + 16 * 2 + 2  # block 2 (linear, norm) + head
    with torch.no_grad():
        batch = backbone.preprocess(test.items())
        predicted = model({"x": batch["x"]}).logits.argmax(1).numpy()
    truth = np.array([0 if label == "neg" else 1 for label in test.labels()])
    assert (predicted == truth).mean() >= 0.75


def test_early_stopping_restores_the_best_epoch(tiny_bert_dir, sentiment):
    train, _ = sentiment
    model = fit(tiny_bert_dir, train, "finetune", epochs=6, learning_rate=1e-7, patience=1)
    assert model.training_["epochs_run"] == 2  # no improvement after epoch 1, patience 1
    assert model.training_["best_epoch"] == 1


# -- artifacts ------------------------------------------------------------------------------------------
def test_save_load_gives_the_same_predictions(finetuned, sentiment, tmp_path):
    _, test = sentiment
    path = finetuned.save(tmp_path / "model")
    loaded = gk.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(test), finetuned.predict_proba(test))
    assert loaded.evaluate(test) == finetuned.evaluate(test)
    manifest = json.loads((path / "manifest.json").read_text())
    training = manifest["training"]
    assert manifest["strategy"]["name"] == "finetune" and manifest["head"]["kind"] == "linear"
    assert training["parameters"]["trainable"] < training["parameters"]["total"]
    assert 0 < training["parameters"]["share"] < 1 and len(training["history"]) == 3
    assert "backbone/model.safetensors" in manifest["files"]
    assert "## Fine-tuning" in (path / "README.md").read_text()


def test_plain_transformers_loads_the_fine_tuned_backbone(finetuned, sentiment, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    _, test = sentiment
    path = finetuned.save(tmp_path / "model")
    encoder = AutoModel.from_pretrained(path / "backbone").eval()
    tokenizer = AutoTokenizer.from_pretrained(path / "backbone")
    head = load_file(str(path / "head.safetensors"))
    batch = tokenizer(test.items(), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        probabilities = torch.softmax(pooled @ head["weight"].T + head["bias"], dim=1).numpy()
    np.testing.assert_allclose(probabilities, finetuned.head_.predict_proba(finetuned.features(test)), atol=1e-5)


def test_fine_tuned_features_never_enter_the_cache(tiny_bert_dir, sentiment, tmp_path):
    train, test = sentiment
    model = fit(tiny_bert_dir, train, "finetune", epochs=1, cache_dir=tmp_path)
    pristine = gk.Graft(str(tiny_bert_dir), use_cache=False, progress=False).features(test)
    assert not np.allclose(model.features(test), pristine)
    np.testing.assert_array_equal(gk.Graft(str(tiny_bert_dir), cache_dir=tmp_path, progress=False).features(test),
                                  pristine)


def test_refit_starts_from_the_pretrained_weights(tiny_bert_dir, sentiment):
    train, _ = sentiment
    model = fit(tiny_bert_dir, train, "finetune", epochs=1)
    first = {k: v.clone() for k, v in model.backbone_.model.state_dict().items()}
    model.fit(train)
    second = model.backbone_.model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


# -- resume -----------------------------------------------------------------------------------------------
RESUMABLE = {"strategy": "gradual", "epochs": 4, "learning_rate": 0.05, "patience": 2, "deterministic": True,
             "val_size": 0.2, **FAST}


def test_resume_mid_gradual_schedule_matches_the_uninterrupted_run(tiny_bert_dir, sentiment, tmp_path):
    train, test = sentiment
    reference = gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "a", **RESUMABLE).fit(train)
    with pytest.raises(KeyboardInterrupt):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "b", **RESUMABLE).fit(train,
                                                                                   callbacks=[stop_after_epoch(2)])
    resumed = gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "b", resume=True, **RESUMABLE).fit(train)
    assert resumed.training_["resumed_from"].endswith("checkpoint-12")  # 48 training rows, batch 8: 6 steps
    assert resumed.training_["history"] == reference.training_["history"]
    a, b = model_weights(reference), model_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.evaluate(test) == reference.evaluate(test)


@pytest.mark.parametrize("crash_after", [1, 2])
def test_resume_where_early_stopping_had_ended_the_run(tiny_bert_dir, sentiment, tmp_path, crash_after):
    """Early stopping decides at epoch 2 (patience 1, a learning rate too small to change the metric); a crash
    right after that epoch's checkpoint must not make the resumed run train a third epoch."""
    train, _ = sentiment
    settings = {**RESUMABLE, "strategy": "finetune", "epochs": 6, "learning_rate": 1e-7, "patience": 1}
    reference = gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "a", **settings).fit(train)
    assert reference.training_["epochs_run"] == 2
    with pytest.raises(KeyboardInterrupt):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "b", **settings).fit(
            train, callbacks=[stop_after_epoch(crash_after)])
    resumed = gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "b", resume=True, **settings).fit(train)
    assert resumed.training_["history"] == reference.training_["history"]
    a, b = model_weights(reference), model_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _fit_command(csv, backbone, output, *extra):
    return ["-q", "fit", str(csv), "-o", str(output), "--backbone", str(backbone), "--strategy", "gradual",
            "--epochs", "6", "--learning-rate", "0.05", "--batch-size", "8", "--test-size", "0", "--val-size", "0.2",
            "--deterministic", "true", *extra]


def _sealed_epochs(folder: Path) -> int:
    """The last epoch with a complete checkpoint (48 training rows, batch 8: 6 steps an epoch)."""
    steps = [int(seal.parent.name.split("-")[1]) for seal in folder.glob(f"checkpoint-*/{SEAL}")]
    return max(steps, default=0) // 6


@pytest.mark.parametrize("kill_after", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_kill_9_then_resume_gives_the_same_model(tiny_bert_dir, sentiment_csv, tmp_path, kill_after):
    assert main(_fit_command(sentiment_csv, tiny_bert_dir, tmp_path / "reference", "--patience", "0")) == 0
    checkpoints = tmp_path / "run.ckpt"
    command = [sys.executable, "-m", "graftkit.cli.main",
               *_fit_command(sentiment_csv, tiny_bert_dir, tmp_path / "killed", "--patience", "0",
                             "--checkpoint-dir", str(checkpoints))]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _sealed_epochs(checkpoints) < kill_after and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed: " + process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed").exists()
    assert main(_fit_command(sentiment_csv, tiny_bert_dir, tmp_path / "killed", "--patience", "0",
                             "--resume", str(checkpoints))) == 0
    for name in ("head.safetensors", "backbone/model.safetensors"):
        a, b = load_file(str(tmp_path / "reference" / name)), load_file(str(tmp_path / "killed" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    history = [json.loads((tmp_path / d / "manifest.json").read_text())["training"]["history"]
               for d in ("reference", "killed")]
    assert history[0] == history[1]
    assert not checkpoints.exists()  # removed once the model is saved


# -- bad inputs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, flag", [
    ({"learning_rate": 0}, "--learning-rate"), ({"learning_rate": -1e-3}, "--learning-rate"),
    ({"backbone_lr_ratio": 0}, "--backbone-lr-ratio"), ({"layer_decay": 1.5}, "--layer-decay"),
    ({"epochs": 0}, "--epochs"), ({"warmup": 1.0}, "--warmup"), ({"lr_schedule": "step"}, "--lr-schedule"),
    ({"metric": "bleu"}, "--metric"), ({"l2_sp": -1}, "--l2-sp"), ({"grad_accumulation": 0}, "--grad-accumulation"),
    ({"val_size": 1.0}, "--val-size"), ({"layers": 0}, "--layers"), ({"layers": "two"}, "--layers"),
    ({"learning_rate": float("nan")}, "--learning-rate"), ({"deterministic": "yes"}, "--deterministic"),
    ({"group_by_length": "yes"}, "--group-by-length"),
])
def test_invalid_values_fail_with_one_line_naming_the_flag(params, flag):
    with pytest.raises(ConfigError) as error:
        get_strategy("finetune", **params)
    assert flag in str(error.value) and "\n" not in str(error.value)


def test_unknown_strategy_names_and_parameters():
    with pytest.raises(ConfigError, match="unknown strategy 'fine-tune'; choose one of: .*finetune, full"):
        get_strategy("fine-tune")
    with pytest.raises(ConfigError, match="has no parameter 'head'"):
        get_strategy("full", head="mlp")
    with pytest.raises(ConfigError, match="--unfreeze-every"):
        get_strategy("gradual", unfreeze_every=0)
    with pytest.raises(ConfigError, match="--C"):
        get_strategy("lp-ft", C=0)


def test_more_groups_than_the_backbone_has(tiny_bert_dir, sentiment):
    train, _ = sentiment
    with pytest.raises(ConfigError, match=r"layers=5 is more than the 3 trainable layer groups .*--layers 1 to 3"):
        fit(tiny_bert_dir, train, "finetune", layers=5)


def test_early_stopping_needs_validation(tiny_bert_dir, sentiment):
    train, _ = sentiment
    with pytest.raises(ConfigError, match="early stopping .* needs a validation split"):
        fit(tiny_bert_dir, train, "finetune", val_size=0, patience=2)


def test_bad_resume_inputs(tiny_bert_dir, sentiment, tmp_path):
    train, _ = sentiment
    run = tmp_path / "run"
    settings = {**RESUMABLE, "epochs": 2}
    with pytest.raises(ConfigError, match="resume=True needs checkpoint_dir"):
        gk.Graft(str(tiny_bert_dir), resume=True, **settings).fit(train)
    with pytest.raises(ConfigError, match="does not exist"):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, resume=True, **settings).fit(train)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no graftkit training run"):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "other", resume=True, **settings).fit(train)
    with pytest.raises(ConfigError, match="not empty and holds no graftkit training run"):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=tmp_path / "other", **settings).fit(train)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"  # nothing lost
    gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, **settings).fit(train)
    with pytest.raises(ConfigError, match="already holds a training run; continue it with --resume"):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, **settings).fit(train)
    with pytest.raises(ConfigError, match=r"belongs to another run \(its seed differs"):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, resume=True, **{**settings, "seed": 1}).fit(train)
    with pytest.raises(ConfigError, match=r"belongs to another run \(its strategy differs"):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, resume=True, **{**settings, "l2_sp": 0.1}).fit(train)
    newest = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ConfigError) as error:
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, resume=True, **settings).fit(train)
    assert f"checkpoint {newest} is corrupt: model.safetensors does not match" in str(error.value)
    assert "\n" not in str(error.value)
    shutil.rmtree(newest)  # as the message says: resume from the previous checkpoint
    resumed = gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, resume=True, **settings).fit(train)
    assert resumed.training_["resumed_from"] is not None


def test_half_written_checkpoint_is_discarded(tiny_bert_dir, sentiment, tmp_path):
    train, _ = sentiment
    run = tmp_path / "run"
    settings = {**RESUMABLE, "epochs": 2}
    with pytest.raises(KeyboardInterrupt):
        gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, **settings).fit(train, callbacks=[stop_after_epoch(1)])
    partial = run / "checkpoint-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    resumed = gk.Graft(str(tiny_bert_dir), checkpoint_dir=run, resume=True, **settings).fit(train)
    assert resumed.training_["resumed_from"].endswith("checkpoint-6") and not partial.exists()


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_fit_finetune_end_to_end(tiny_bert_dir, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "model"
    validation = tmp_path / "validation.csv"
    sentiment_frame(20, seed=1).to_csv(validation, index=False)
    code = main(["-q", "fit", str(sentiment_csv), "-o", str(out), "--backbone", str(tiny_bert_dir), "--strategy",
                 "full", "--epochs", "3", "--learning-rate", "0.05", "--batch-size", "8", "--json",
                 "--validation", str(validation)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["test"]["accuracy"] >= 0.75
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["validation"] == {"rows": 20, "source": "given"} and training["train_rows"] == 48
    assert not Path(f"{out}.checkpoints").exists()
    assert main(["-q", "predict", str(out), str(sentiment_csv), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 60 and {"pos", "neg"} >= {p["prediction"] for p in predictions}


@pytest.mark.parametrize("args, message", [
    (["--strategy", "finetune", "--learning-rate", "0"], "finetune learning_rate must be a number > 0; got 0.0"),
    (["--strategy", "linear-probe", "--resume", "x"], "--resume applies to trainable strategies"),
    (["--strategy", "finetune", "--resume", "nowhere"], "cannot resume: "),
    (["--strategy", "finetune", "--layers", "7"], "more than the 3 trainable layer groups"),
])
def test_cli_bad_training_inputs_are_one_line(tiny_bert_dir, sentiment_csv, tmp_path, capsys, args, message):
    code = main(["-q", "fit", str(sentiment_csv), "-o", str(tmp_path / "m"), "--backbone", str(tiny_bert_dir), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.checkpoints").exists()  # nothing left behind


def test_strategy_flags_are_consistent_across_strategies():
    flags = strategy_flags()  # raises if two strategies give one flag different types
    for cls in strategy_classes():
        assert {f for f in cls.field_names()} <= set(flags)
    assert set(flags["learning_rate"]["defaults"]) == set(TRAINABLE) | {"lora", "ia3", "adapters", "bitfit", "decoder-only", "contrastive"}


# -- data-parallel -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    """torchrun, 2 CPU processes, gloo: gradual unfreezing data-parallel equals one process (no dropout, so
    that the two runs draw no different random masks)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path / "bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for ws in WORDS.values() for w in ws}), "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)).save_pretrained(folder)
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    csv = tmp_path / "data.csv"
    sentiment_frame(48).to_csv(csv, index=False)
    args = ["-q", "fit", str(csv), "--backbone", str(folder), "--strategy", "gradual", "--epochs", "3",
            "--learning-rate", "0.05", "--batch-size", "8", "--test-size", "0", "--val-size", "0", "--patience", "0"]
    assert main([*args, "-o", str(tmp_path / "single")]) == 0
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "graftkit.cli.main", *args, "-o",
                           str(tmp_path / "ddp")], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("head.safetensors", "backbone/model.safetensors"):
        a, b = load_file(str(tmp_path / "single" / name)), load_file(str(tmp_path / "ddp" / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("single", "ddp")]
    assert [r["trainable_groups"] for r in manifests[1]["training"]["history"]] == [0, 1, 2]
    assert manifests[1]["training"]["history"][-1]["train_loss"] == pytest.approx(
        manifests[0]["training"]["history"][-1]["train_loss"], rel=1e-4)
