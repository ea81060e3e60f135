"""Speech recognition: a generative task on a Whisper encoder-decoder (fit / evaluate / predict / save / load,
what each strategy trains, WER / CER and their bootstrap, bad inputs). Fast tests use a tiny
WhisperForConditionalGeneration built here with tiny.en's tokenizer and feature extractor (skipped without
../shared); the slow one runs the real whisper-tiny.en on FSDD clips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

import graftkit as gk
from graftkit.errors import BackboneError, ConfigError, DataError
from graftkit.scoring.transcripts import (
    edit_counts,
    error_rate,
    normalize,
    resampled_error_rate,
)

RATE = 16000
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A tiny WhisperForConditionalGeneration (d_model 32, 2 + 2 layers) with tiny.en's processor."""
    from transformers import (
        AutoFeatureExtractor,
        AutoTokenizer,
        WhisperConfig,
        WhisperForConditionalGeneration,
    )

    source = shared_path("models", "whisper-tiny.en")
    folder = tmp_path_factory.mktemp("tiny-whisper-seq2seq")
    config = WhisperConfig(vocab_size=51864, d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_target_positions=64, decoder_start_token_id=50257,
                           eos_token_id=50256, pad_token_id=50256, bos_token_id=50257)
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    AutoFeatureExtractor.from_pretrained(source).save_pretrained(folder)
    return folder


def _clips(folder, n: int = 6, seconds: float = 0.5):
    """Tones at a pitch per word, 8 kHz (resampled on reading, as FSDD is)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        word = ("one", "two")[i % 2]
        t = np.arange(int(8000 * seconds)) / 8000
        tone = 0.3 * np.sin(2 * np.pi * (300 if word == "one" else 700) * t) + 0.01 * rng.normal(size=t.size)
        path = folder / f"clip{i}.wav"
        soundfile.write(path, tone.astype(np.float32), 8000)
        rows.append({"audio": str(path), "transcript": word})
    return pd.DataFrame(rows)


def _table(frame):
    return gk.load_data(frame, audio="audio", label="transcript")


def _graft(model_dir, strategy, **params):
    settings_ = {"epochs": 1, "val_size": 0.0, "patience": 0, "learning_rate": 1e-2} if strategy != "zero-shot" else {}
    return gk.Graft(backbone=str(model_dir), strategy=strategy, task="speech-recognition", batch_size=3,
                    progress=False, **{**settings_, **params})


def _state(model, prefix):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


# -- fit / evaluate / predict / save / load ---------------------------------------------------------------------
def test_decoder_only_trains_the_decoder_blocks_and_round_trips(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips")
    graft = _graft(tiny_whisper, "decoder-only")
    pretrained = graft.loaded_backbone().model
    encoder_before = _state(pretrained, "model.encoder.")
    embed_before = _state(pretrained, "model.decoder.embed_")
    blocks_before = _state(pretrained, "model.decoder.layers.")
    graft.fit(_table(frame))
    model = graft.backbone_.model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in encoder_before.items())  # encoder frozen
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in embed_before.items())    # tied embeddings too
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in blocks_before.items())
    assert graft.training_["encoder_outputs_cached"] is True
    counts = graft.parameter_counts()
    assert counts["trainable"] == sum(v.numel() for k, v in model.named_parameters()
                                      if k.startswith("model.decoder.layer"))

    result = graft.evaluate(_table(frame))
    assert set(result) >= {"wer", "cer", "wer_interval", "cer_interval", "misses", "words"}
    low, high = result["wer_interval"]
    assert low <= result["wer"] <= high
    predictions = graft.predict(frame["audio"].tolist())
    assert len(predictions) == len(frame) and all(isinstance(p, str) for p in predictions)
    assert graft.predict_records(frame["audio"].tolist())[0] == {"transcript": predictions[0]}

    out = graft.save(tmp_path / "model")
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"head.safetensors", "labels.json", "trained.safetensors"}
    saved = load_file(str(out / "trained.safetensors"))
    assert saved and all(k.startswith("model.decoder.layer") for k in saved)
    assert manifest["task"] == {"kind": "speech-recognition", "column": "transcript"}
    # the bare generation config got Whisper's decoding settings (no timestamps, OpenAI's suppressed tokens)
    filled = manifest["backbone"]["settings"]["decoding_filled_in"]
    assert filled["no_timestamps_token_id"] == 50362 and filled["suppress_tokens"] > 80
    loaded = gk.load(out, progress=False)
    assert loaded.predict(frame["audio"].tolist()) == predictions
    assert loaded.evaluate(_table(frame))["wer"] == result["wer"]


def test_crash_then_resume_continues_from_the_sealed_checkpoint(tiny_whisper, tmp_path):
    """The engine's run directory: identity file, sealed checkpoints, resume equal to the uninterrupted run."""
    from conftest import stop_after_epoch

    from graftkit.training.checkpoints import RUN_FILE, SEAL

    table = _table(_clips(tmp_path / "clips"))
    params = {"epochs": 3, "val_size": 0.34, "deterministic": True}
    reference = _graft(tiny_whisper, "decoder-only", checkpoint_dir=tmp_path / "a", **params).fit(table)
    with pytest.raises(KeyboardInterrupt):
        _graft(tiny_whisper, "decoder-only", checkpoint_dir=tmp_path / "b", **params).fit(
            table, callbacks=[stop_after_epoch(1)])
    assert (tmp_path / "b" / RUN_FILE).is_file()
    assert [(c / SEAL).is_file() for c in (tmp_path / "b").glob("checkpoint-*")] == [True]
    with pytest.raises(ConfigError, match="belongs to another run"):  # other settings: not this run's directory
        _graft(tiny_whisper, "decoder-only", checkpoint_dir=tmp_path / "b", resume=True,
               **{**params, "learning_rate": 1e-3}).fit(table)
    resumed = _graft(tiny_whisper, "decoder-only", checkpoint_dir=tmp_path / "b", resume=True, **params).fit(table)
    assert resumed.training_["resumed_from"].endswith("checkpoint-1")  # 3 training clips, batch 3: a step an epoch
    assert [r["train_loss"] for r in resumed.training_["history"]] == pytest.approx(
        [r["train_loss"] for r in reference.training_["history"]], rel=1e-5)
    a, b = _state(reference.backbone_.model, "model.decoder."), _state(resumed.backbone_.model, "model.decoder.")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tiny_whisper, tmp_path):
    """torchrun, 2 CPU processes, gloo: decoder-only data-parallel (each process half of every batch) trains the
    same decoder as one process."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from graftkit.cli.main import main

    _clips(tmp_path / "clips", n=8).to_csv(tmp_path / "train.csv", index=False)
    args = ["-q", "fit", str(tmp_path / "train.csv"), "--task", "speech-recognition", "--backbone", str(tiny_whisper),
            "--strategy", "decoder-only", "--label", "transcript", "--audio", "audio", "--epochs", "2",
            "--batch-size", "4", "--learning-rate", "0.01", "--test-size", "0", "--val-size", "0", "--patience", "0"]
    assert main([*args, "-o", str(tmp_path / "single")]) == 0
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "graftkit.cli.main", *args, "--checkpoint-dir",
                           str(tmp_path / "run"), "-o", str(tmp_path / "ddp")],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    histories = [json.loads((tmp_path / d / "manifest.json").read_text())["training"]["history"]
                 for d in ("single", "ddp")]
    assert histories[0][-1]["train_loss"] == pytest.approx(histories[1][-1]["train_loss"], rel=1e-3)
    a, b = (load_file(str(tmp_path / d / "trained.safetensors")) for d in ("single", "ddp"))
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "ddp" / "manifest.json").read_text())["training"]["epochs_run"] == 2


def test_whispers_loss_still_ignores_num_items_in_batch(tiny_whisper):
    """Upstream's behaviour that ``mean_loss_for_the_trainer`` works around: the loss is a mean whatever
    ``num_items_in_batch`` says. When this fails, upstream reads it: drop the workaround."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper).eval()
    features = torch.randn(2, 80, 3000)
    labels = torch.tensor([[50257, 530, 50256], [50257, 734, 50256]])
    with torch.no_grad():
        plain = model(input_features=features, labels=labels).loss
        counted = model(input_features=features, labels=labels, num_items_in_batch=torch.tensor(1000)).loss
    assert torch.allclose(plain, counted)


def test_lora_artifact_holds_only_the_decoder_adapter(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips")
    graft = _graft(tiny_whisper, "lora", learning_rate=5e-2)
    base_before = _state(graft.loaded_backbone().model, "model.")
    graft.fit(_table(frame))
    out = graft.save(tmp_path / "lora")
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert "trained.safetensors" not in files and "adapter/adapter_model.safetensors" in files
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k and ".decoder." in k for k in adapter)
    size = (out / "adapter" / "adapter_model.safetensors").stat().st_size
    assert size < (tiny_whisper / "model.safetensors").stat().st_size / 10
    state = graft.backbone_.model.state_dict()
    for key, value in base_before.items():  # the pretrained weights are untouched (LoRA sits beside them)
        stored = state.get(key, state.get(key.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias")))
        assert torch.equal(value, stored), key
    assert graft.training_["encoder_outputs_cached"] is True
    predictions = graft.predict(frame["audio"].tolist())
    assert gk.load(out, progress=False).predict(frame["audio"].tolist()) == predictions


def test_zero_shot_is_rung_zero_and_saves_no_weights(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips")
    graft = _graft(tiny_whisper, "zero-shot").fit(_table(frame), validation=_table(frame))
    assert graft.metrics_["validation_zero_shot"] == graft.metrics_["validation"]
    assert graft.parameter_counts()["trainable"] == 0
    out = graft.save(tmp_path / "zero")
    assert set(json.loads((out / "manifest.json").read_text())["files"]) == {"head.safetensors", "labels.json"}
    assert gk.load(out, progress=False).predict(frame["audio"].tolist()) == graft.predict(frame["audio"].tolist())

    trained = _graft(tiny_whisper, "finetune", layers=1, val_size=0.34).fit(_table(frame))
    assert "validation_zero_shot" in trained.metrics_ and "validation" in trained.metrics_  # measured before and after
    assert trained.training_["targets"] == ["model.decoder.layer_norm"]


def test_augmentation_runs_the_encoder_each_epoch(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips", n=3)
    graft = _graft(tiny_whisper, "decoder-only", augment=True).fit(_table(frame))
    assert graft.training_["encoder_outputs_cached"] is False
    assert graft.training_["augmentation"]["modality"] == "audio"


def test_transcript_folder(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "data")
    lines = ["file,transcript"] + [f"clip{i}.wav,{t}" for i, t in enumerate(frame["transcript"])]
    (tmp_path / "data" / "transcripts.csv").write_text("\n".join(lines) + "\n")
    table = gk.load_data(tmp_path / "data")
    assert (table.modality, table.label_column, len(table)) == ("audio", "transcript", len(frame))
    assert list(gk.tasks.infer_task(table, "speech-recognition").encode(table)) == list(frame["transcript"])
    (tmp_path / "data" / "transcripts.csv").write_text("file,transcript\nclip0.wav,one\nmissing.wav,two\n")
    with pytest.raises(DataError, match=r"row 2: audio file 'missing.wav' does not exist"):
        gk.load_data(tmp_path / "data")


# -- bad inputs -------------------------------------------------------------------------------------------------
def test_empty_transcripts_are_refused_by_row(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips")
    frame.loc[[1, 4], "transcript"] = ["", "   "]
    with pytest.raises(DataError, match=r"transcript column 'transcript' is empty in 2 row\(s\) \(rows 2, 5\)"):
        _graft(tiny_whisper, "decoder-only").fit(_table(frame))
    frame.loc[[1, 4], "transcript"] = ["uh", "!"]
    with pytest.raises(DataError, match=r"empty after Whisper's English normaliser in 2 row\(s\) \(rows 2, 5"):
        _graft(tiny_whisper, "decoder-only").fit(_table(frame))


def test_a_model_that_cannot_generate_is_refused(tiny_whisper, tiny_bert_dir, tmp_path):
    from transformers import WhisperConfig, WhisperForAudioClassification

    frame = _clips(tmp_path / "clips", n=2)
    with pytest.raises(BackboneError, match="is a 'bert' model, not a speech encoder-decoder"):
        gk.Graft(backbone=str(tiny_bert_dir), strategy="zero-shot", task="speech-recognition").fit(_table(frame))
    encoder_only = tmp_path / "encoder-only"
    WhisperForAudioClassification(WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1,
                                                 encoder_attention_heads=2, decoder_attention_heads=2,
                                                 encoder_ffn_dim=32, decoder_ffn_dim=32)).save_pretrained(encoder_only)
    with pytest.raises(BackboneError, match="encoder-only checkpoint, and its decoder would be random"):
        gk.Graft(backbone=str(encoder_only), strategy="zero-shot", task="speech-recognition").fit(_table(frame))
    with pytest.raises(ConfigError, match="no head on frozen features.*--strategy zero-shot"):
        gk.Graft(backbone=str(tiny_whisper), task="speech-recognition").fit(_table(frame))
    with pytest.raises(ConfigError, match="decoder-only trains the decoder of an encoder-decoder"):
        gk.Graft(backbone=str(tiny_bert_dir), strategy="decoder-only", val_size=0.0, patience=0).fit(
            pd.DataFrame({"text": ["good", "bad"] * 4, "label": ["p", "n"] * 4}))


def test_a_clip_longer_than_the_window_is_refused_naming_the_file(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips", n=2)
    long = tmp_path / "clips" / "long.wav"
    soundfile.write(long, np.zeros(16000 * 31, dtype=np.float32), 16000)
    frame.loc[len(frame)] = {"audio": str(long), "transcript": "silence"}
    graft = _graft(tiny_whisper, "zero-shot").fit(_table(frame.iloc[:2]))
    with pytest.raises(DataError, match=r"row 3, column 'audio'.*long\.wav' is 31\.0 s long; Whisper reads 30 s"):
        graft.evaluate(_table(frame))


# -- metrics ----------------------------------------------------------------------------------------------------
def test_wer_on_whisper_normaliser():
    task = gk.tasks.SpeechRecognition()
    y = np.array(["Seven.", "hello world", "three"], dtype=object)
    out = np.array(["7", "Hello, word!", ""], dtype=object)
    summary = task.summary(y, out)
    assert summary["wer"] == pytest.approx(2 / 4)  # "word" substituted, "three" deleted; "7" == "seven"
    # the normaliser reads spelled-out numbers as numbers: "one two" is the number 12 (one word)
    assert normalize(["Hello, World!", "one two"]) == ["hello world", "12"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(DIGITS), min_size=1, max_size=4),
                          st.lists(st.sampled_from(DIGITS + ["oh"]), max_size=5)), min_size=1, max_size=12),
       st.integers(0, 2 ** 16))
def test_bootstrap_sums_counts_per_utterance(pairs, seed):
    refs = np.array([" ".join(r) for r, _ in pairs], dtype=object)
    hyps = np.array([" ".join(h) for _, h in pairs], dtype=object)
    task = gk.tasks.SpeechRecognition()
    index = np.random.default_rng(seed).integers(0, len(refs), size=(5, len(refs)))
    expected = [task.primary(refs[i], hyps[i]) for i in index]
    np.testing.assert_allclose(task.resampled_primary(refs, hyps, index), expected)
    counts = edit_counts(normalize(refs), normalize(hyps))
    np.testing.assert_allclose(resampled_error_rate(counts, np.arange(len(refs))[None]), [error_rate(counts)])


def test_lower_wer_is_a_positive_transfer_gain_and_a_higher_auto_score():
    from graftkit.evaluation.baselines import transfer_gain
    from graftkit.playbook.leaderboard import choose

    task = gk.tasks.SpeechRecognition()
    y = np.array(["seven", "three", "hello world"] * 6, dtype=object)
    worse = np.array(["eight"] * len(y), dtype=object)
    result = transfer_gain(task, y, y.copy(), worse, model_name="tuned", baseline_name="zero-shot")
    assert result["model"] == 0.0 and result["baseline"] > 0.9
    assert result["gain"] > 0 and result["ci95"][0] > 0 and not result["negative_transfer"]
    assert transfer_gain(task, y, worse, y.copy())["negative_transfer"]
    rows = [{"status": "ran", "kind": "trainable", "strategy": "lora",
             "validation": {"wer": w, "score": -w}} for w in (0.4, 0.1, 0.3)]
    assert choose(rows)["validation"]["wer"] == 0.1


def test_cli_fit_predict_evaluate_and_auto_refusal(tiny_whisper, tmp_path, capsys):
    from graftkit.cli.main import main

    frame = _clips(tmp_path / "clips", n=4)
    frame.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "model"
    assert main(["fit", str(tmp_path / "train.csv"), "--task", "speech-recognition", "--backbone", str(tiny_whisper),
                 "--strategy", "zero-shot", "--label", "transcript", "--audio", "audio", "-o", str(out)]) == 0
    assert main(["predict", str(out), str(tmp_path / "train.csv"), "-o", str(tmp_path / "pred.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "pred.csv")
    assert list(predictions.columns) == ["row", "transcript"] and len(predictions) == 4
    capsys.readouterr()
    assert main(["evaluate", str(out), str(tmp_path / "train.csv")]) == 0
    assert "WER" in capsys.readouterr().out
    assert main(["fit", str(tmp_path / "train.csv"), "--task", "speech-recognition", "--backbone", str(tiny_whisper),
                 "--label", "transcript", "-o", str(tmp_path / "m2")]) == 2
    assert "--strategy zero-shot" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs the encoder-decoder models to try"):
        gk.auto(_table(frame), task="speech-recognition")


def test_auto_measures_rung_zero_first_then_adapts_the_decoder(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips", n=9)
    test = _clips(tmp_path / "test", n=4)
    result = gk.auto(_table(frame), backbones=[str(tiny_whisper)], task="speech-recognition", budget="30m",
                     epochs=1, batch_size=3, val_size=0.34, test=_table(test), output=tmp_path / "auto",
                     min_gain_per_minute=0)
    assert [(r["kind"], r["strategy"]) for r in result.rows] == [
        ("zero-shot", "zero-shot"), ("trainable", "decoder-only"), ("trainable", "lora")]
    assert [r["status"] for r in result.rows[:2]] == ["ran", "ran"]
    lora = result.rows[2]  # a decoder-only rung that lost WER stops the escalation, and says so
    assert lora["status"] == "ran" or "escalation stopped" in lora["reason"]
    ran = [r for r in result.rows if r["status"] == "ran"]
    assert all(r["validation"]["score"] == -r["validation"]["wer"] for r in ran)  # lower WER is better
    best = min(ran, key=lambda r: (r["validation"]["wer"], r["step"]))
    assert result.chosen is best and result.shipped is best
    assert all(r["test"] is not None and "score_std" in r["test"] for r in ran)
    board = json.loads((tmp_path / "auto" / "leaderboard.json").read_text())
    assert board["chosen_step"] == best["step"] and "val WER" not in board  # plain JSON rows
    assert "| val wer | val cer |" in (tmp_path / "auto" / "leaderboard.md").read_text()
    loaded = gk.load(tmp_path / "auto", progress=False)
    assert loaded.strategy_.name == best["strategy"] and len(loaded.predict(test["audio"].tolist())) == 4


def test_auto_skips_the_rungs_a_budget_cannot_hold(tiny_whisper, tmp_path):
    frame = _clips(tmp_path / "clips", n=6)
    result = gk.auto(_table(frame), backbones=[str(tiny_whisper)], task="speech-recognition", budget="1s",
                     epochs=1, batch_size=3, val_size=0.34)
    assert result.rows[0]["status"] == "ran"  # rung 0 always runs
    assert [r["status"] for r in result.rows[1:]] == ["skipped", "skipped"]
    assert all("would not fit the budget" in r["reason"] for r in result.rows[1:])
    assert result.chosen is result.rows[0]


# -- the real model -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_whisper_tiny_en_on_fsdd_zero_shot_then_decoder_only(tmp_path):
    model_dir = shared_path("models", "whisper-tiny.en")
    recordings = shared_path("data", "fsdd", "recordings")
    train_files = [recordings / f"{d}_jackson_{i}.wav" for d in range(10) for i in (5,)]
    test_files = [recordings / f"{d}_theo_0.wav" for d in range(0, 10, 2)]
    frame = lambda files: pd.DataFrame({"audio": [str(f) for f in files],
                                        "transcript": [DIGITS[int(f.name[0])] for f in files]})
    zero = gk.Graft(backbone=str(model_dir), strategy="zero-shot", task="speech-recognition", progress=False,
                    batch_size=5).fit(_table(frame(train_files[:2])))
    before = zero.evaluate(_table(frame(test_files)))
    assert before["wer"] < 0.8  # tiny.en knows spoken digits
    tuned = gk.Graft(backbone=str(model_dir), strategy="decoder-only", task="speech-recognition", progress=False,
                     batch_size=5, epochs=2, val_size=0.0, patience=0, learning_rate=1e-4)
    tuned.fit(_table(frame(train_files)))
    after = tuned.evaluate(_table(frame(test_files)))
    assert after["wer"] <= before["wer"]
    assert 0.1 < tuned.parameter_counts()["share"] < 0.4
