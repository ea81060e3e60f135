"""Parameter-efficient strategies (issue 4): lora, ia3 (through peft), bottleneck adapters, bitfit — what
trains, what the artifact holds, plain-PEFT loading, many adapters on one base, merge, bad inputs. The
fast tests run on the 2-layer hidden-32 BERT; EfficientNet-Lite0 with LoRA runs on real images (slow)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import WORDS, sentiment_frame, shared_path, stop_after_epoch
from transformers import BertConfig, BertModel, BertTokenizer

import graftkit as gk
from graftkit.adapters import tensor_bytes
from graftkit.cli.main import main
from graftkit.errors import ArtifactError, ConfigError

EFFICIENT = ("lora", "ia3", "adapters", "bitfit")
FAST = {"batch_size": 8, "progress": False, "patience": 0, "val_size": 0.0, "calibrate": False}
LEARNS = {"lora": {"learning_rate": 0.02}, "ia3": {"learning_rate": 0.05}, "adapters": {"learning_rate": 0.01},
          "bitfit": {"learning_rate": 0.05}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    table = gk.load_data(sentiment_frame(80), text="text", label="label")
    return table.split(test_size=0.25, seed=0)


def fit(backbone_dir, table, strategy, epochs=4, **params):
    return gk.Graft(str(backbone_dir), strategy=strategy, epochs=epochs, **FAST,
                    **{**LEARNS.get(strategy, {}), **params}).fit(table)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, data):
    torch.set_num_threads(1)
    return {name: fit(tiny_bert_dir, data[0], name) for name in EFFICIENT}


def _pretrained_state(backbone_dir) -> dict:
    return {k: v.clone() for k, v in BertModel.from_pretrained(backbone_dir).state_dict().items()}


@pytest.mark.parametrize("strategy", EFFICIENT)
def test_trains_a_small_share_learns_and_leaves_the_base_alone(fitted, data, tiny_bert_dir, strategy):
    model = fitted[strategy]
    counts = model.parameter_counts()
    assert 0 < counts["trainable"] < counts["total"] and counts["share"] < 0.3
    assert model.evaluate(data[1])["accuracy"] >= 0.8  # the toy task is learnt
    base = model.backbone_.model.state_dict()
    pretrained = _pretrained_state(tiny_bert_dir)
    changed = []
    for name, tensor in pretrained.items():
        # peft / adapters wrap layers: the pretrained tensor now sits under base_layer. / layer.
        key = next(k for k in base if k.replace("base_model.model.", "").replace(".base_layer", "")
                   .replace(".layer.weight", ".weight").replace(".layer.bias", ".bias") == name)
        if not torch.equal(base[key], tensor):
            changed.append(name)
    if strategy == "bitfit":
        assert changed and all(n.endswith("bias") for n in changed)
    else:
        assert changed == []


@pytest.mark.parametrize("strategy", EFFICIENT)
def test_artifact_holds_only_the_adapter_and_reloads_exactly(fitted, data, strategy, tmp_path):
    model = fitted[strategy]
    out = model.save(tmp_path / strategy)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not any(f.startswith("backbone") for f in files)
    adapter_bytes = sum((out / f).stat().st_size for f in files if f.startswith("adapter"))
    assert 0 < adapter_bytes < tensor_bytes(model.backbone_.model) * 0.3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["adaptation"]["kind"] == strategy
    loaded = gk.load(out, progress=False)
    texts = data[1].frame["text"].tolist()
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-6)


def test_lora_adapter_loads_in_plain_peft(fitted, tiny_bert_dir, tmp_path):
    from peft import PeftModel

    out = fitted["lora"].save(tmp_path / "lora")
    plain = PeftModel.from_pretrained(BertModel.from_pretrained(tiny_bert_dir), str(out / "adapter")).eval()
    tokens = BertTokenizer.from_pretrained(tiny_bert_dir)(["good movie", "awful plot"], return_tensors="pt",
                                                         padding=True)
    with torch.no_grad():
        ours = fitted["lora"].backbone_.model(**tokens).last_hidden_state
        theirs = plain(**tokens).last_hidden_state
        base = BertModel.from_pretrained(tiny_bert_dir).eval()(**tokens).last_hidden_state
    torch.testing.assert_close(theirs, ours)
    assert not torch.allclose(base, ours)  # the adapter does change the function


def _topic_frame(n=80, seed=1) -> pd.DataFrame:
    """A second task on the same texts: does the sentence mention the movie / film (topic), or not."""
    frame = sentiment_frame(n, seed=seed)
    frame["label"] = ["topic" if ("movie" in t or "film" in t) else "other" for t in frame["text"]]
    return frame


def test_many_adapters_on_one_base(tiny_bert_dir, data, tmp_path):
    tasks = {"sentiment": data[0], "topic": gk.load_data(_topic_frame(), text="text", label="label"),
             "sentiment2": data[0], "topic2": gk.load_data(_topic_frame(seed=2), text="text", label="label")}
    dirs = {}
    for i, (name, table) in enumerate(tasks.items()):
        dirs[name] = fit(tiny_bert_dir, table, "lora", epochs=2, seed=i).save(tmp_path / name)
    texts = data[1].frame["text"].tolist()
    alone = {name: gk.load(path, progress=False).predict_proba(texts) for name, path in dirs.items()}
    shared = gk.load_adapters(dirs, progress=False)
    assert shared.names == list(dirs)
    for name in ["topic", "sentiment", "topic2", "sentiment2", "sentiment"]:  # switching back and forth
        np.testing.assert_allclose(shared.predict_proba(name, texts), alone[name], atol=1e-6)
    # one copy of the base plus each adapter's own tensors, nothing else (on the hidden-32 toy the adapters are
    # large next to the base; bench/bench_peft.py measures the ratio on all-MiniLM-L6-v2)
    one_model = tensor_bytes(BertModel.from_pretrained(tiny_bert_dir))
    adapters = sum(json.loads((d / "manifest.json").read_text())["training"]["adaptation"]["trainable_parameters"]
                   for d in dirs.values()) * 4
    assert shared.memory_bytes() == one_model + adapters
    with pytest.raises(ConfigError, match="no adapter named 'nope'; loaded: sentiment, topic"):
        shared.predict("nope", texts)


@pytest.fixture(scope="module")
def other_bert_dir(tmp_path_factory) -> Path:
    """A second tiny BERT with the same vocabulary and shapes but other weights: another base model."""
    folder = tmp_path_factory.mktemp("other-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for ws in WORDS.values() for w in ws}), "."]
    torch.manual_seed(7)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return folder


def test_an_adapter_for_another_base_is_refused(fitted, tiny_bert_dir, other_bert_dir, data, tmp_path):
    ours = fitted["lora"].save(tmp_path / "ours")
    theirs = fit(other_bert_dir, data[0], "lora", epochs=1).save(tmp_path / "theirs")
    with pytest.raises(ArtifactError, match="fitted on base .* other weights"):
        gk.load_adapters([ours, theirs], progress=False)
    # the base files changed under a saved adapter model: loading names the files
    shutil.copy(other_bert_dir / "model.safetensors", tiny_bert_dir.parent / "swap.safetensors")
    moved = tmp_path / "moved-base"
    shutil.copytree(tiny_bert_dir, moved)
    shutil.copy(other_bert_dir / "model.safetensors", moved / "model.safetensors")
    manifest = json.loads((ours / "manifest.json").read_text())
    manifest["backbone"]["source"]["spec"] = str(moved)
    (ours / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(gk.BackboneError, match="other weights"):
        gk.load(ours, progress=False)


def test_mixed_kinds_cannot_share_a_base(fitted, tmp_path):
    with pytest.raises(ConfigError, match="bitfit model cannot share a base"):
        gk.load_adapters({"a": fitted["lora"].save(tmp_path / "a"), "b": fitted["bitfit"].save(tmp_path / "b")},
                         progress=False)


@pytest.mark.parametrize("strategy", ["lora", "ia3", "bitfit"])
def test_merge_writes_a_standalone_model_with_the_same_predictions(fitted, data, strategy, tmp_path, capsys):
    from transformers import AutoModel

    source = fitted[strategy].save(tmp_path / strategy)
    assert main(["merge", str(source), "-o", str(tmp_path / "merged")]) == 0
    merged = gk.load(tmp_path / "merged", progress=False)
    assert merged.adaptation_ is None and (tmp_path / "merged" / "backbone").is_dir()
    texts = data[1].frame["text"].tolist()
    np.testing.assert_allclose(merged.predict_proba(texts), fitted[strategy].predict_proba(texts), atol=1e-4)
    assert AutoModel.from_pretrained(tmp_path / "merged" / "backbone").config.model_type == "bert"
    assert "standalone model" in capsys.readouterr().out


def test_merge_refuses_what_cannot_be_merged(fitted, tmp_path, capsys):
    source = fitted["adapters"].save(tmp_path / "adapters")
    assert main(["merge", str(source), "-o", str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-linear" in err and "Traceback" not in err
    assert not (tmp_path / "merged").exists()


def test_resume_gives_the_same_lora_model(tiny_bert_dir, data, tmp_path):
    """A crash right after epoch 1's checkpoint, then --resume: the same adapter weights and predictions."""
    settings = {**FAST, **LEARNS["lora"], "deterministic": True, "epochs": 2, "seed": 3}
    whole = gk.Graft(str(tiny_bert_dir), strategy="lora", checkpoint_dir=tmp_path / "a", **settings).fit(data[0])
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        gk.Graft(str(tiny_bert_dir), strategy="lora", checkpoint_dir=run, **settings).fit(data[0],
                                                                                         callbacks=[stop_after_epoch(1)])
    resumed = gk.Graft(str(tiny_bert_dir), strategy="lora", checkpoint_dir=run, resume=True, **settings).fit(data[0])
    assert resumed.training_["resumed_from"]
    a, b = whole.backbone_.model.state_dict(), resumed.backbone_.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    texts = data[1].frame["text"].tolist()
    np.testing.assert_array_equal(resumed.predict_proba(texts), whole.predict_proba(texts))


@pytest.mark.parametrize("params, message", [
    ({"rank": 0}, r"lora rank must be an integer >= 1; got 0 \(--rank\)"),
    ({"rank": -3}, r"--rank"),
    ({"alpha": 0}, r"--alpha"),
    ({"dropout": 1.0}, r"--dropout"),
    ({"l2_sp": 0.1}, r"l2_sp .* does not apply"),
    ({"target_modules": " , "}, r"target_modules is empty"),
])
def test_bad_lora_settings(params, message):
    with pytest.raises(ConfigError, match=message):
        gk.strategies.get_strategy("lora", **params)


def test_missing_target_modules_list_the_candidates(tiny_bert_dir, data):
    with pytest.raises(ConfigError, match=r"target module 'qkv' matches no Linear / Conv layer .*candidates: "
                                          r".*query.*value"):
        fit(tiny_bert_dir, data[0], "lora", epochs=1, target_modules="qkv")
    with pytest.raises(ConfigError, match="feed-forward module .* is not among the target modules"):
        fit(tiny_bert_dir, data[0], "ia3", epochs=1, target_modules="query", feedforward_modules="intermediate.dense")


@pytest.mark.parametrize("extra, message", [
    (["--rank", "0"], "--rank"),
    (["--target-modules", "nope"], "candidates:"),
    (["--bottleneck", "0"], "--bottleneck"),
])
def test_cli_bad_peft_inputs_are_one_line(tiny_bert_dir, sentiment_csv, tmp_path, capsys, extra, message):
    strategy = "adapters" if "--bottleneck" in extra else "lora"
    code = main(["fit", str(sentiment_csv), "--backbone", str(tiny_bert_dir), "--strategy", strategy, "--epochs", "1",
                 "-o", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_fit_lora_reports_trainable_parameters(tiny_bert_dir, sentiment_csv, tmp_path, capsys):
    code = main(["-q", "fit", str(sentiment_csv), "--backbone", str(tiny_bert_dir), "--strategy", "lora", "--epochs",
                 "1", "--rank", "4", "--target-modules", "query,key,value", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "trained " in out and " parameters (" in out
    config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and len(config["target_modules"]) == 6  # 3 projections × 2 layers


@pytest.mark.slow
def test_efficientnet_lora_on_real_images(tmp_path):
    """LoRA on EfficientNet-Lite0's 1×1 convolutions (peft's Conv2d LoRA) on real CIFAR-10 JPEGs."""
    archive = shared_path("data", "cifar10_jpg", "cifar10_jpg.zip")
    names = [f"test/{c}/{i:04d}.jpg" for c in ("airplane", "frog") for i in range(12)]
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path, members=names)
    rows = [{"image": str(tmp_path / n), "label": n.split("/")[1]} for n in names]
    table = gk.load_data(pd.DataFrame(rows), image="image", label="label")
    model = gk.Graft("efficientnet-lite0", strategy="lora", epochs=1, batch_size=8, progress=False, patience=0,
                     val_size=0.0, calibrate=False).fit(table)
    counts = model.parameter_counts()
    assert counts["share"] < 0.05
    assert all(t.split(".")[-1] in ("_expand_conv", "_project_conv", "_conv_head")
               for t in model.training_["adaptation"]["targets"])
    out = model.save(tmp_path / "lora")
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size < 2_000_000
    np.testing.assert_allclose(gk.load(out, progress=False).predict_proba(table), model.predict_proba(table),
                               atol=1e-5)
