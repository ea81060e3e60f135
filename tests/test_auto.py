"""``graftkit.auto`` / ``graftkit auto``: the baseline row and a reason for every step, budget skips, choice by
validation (never by test), the plain baseline-wins line on a keyword task, the artifact + leaderboard, one-line
errors; and (slow) the real demo data with all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import random
import shutil

import pandas as pd
import pytest

import graftkit
from conftest import WORDS, sentiment_frame
from graftkit.cli.main import main
from graftkit.errors import ConfigError
from graftkit.playbook import choose, parse_budget
from graftkit.playbook.budget import estimate_trainable


def _copy_with_new_weights(source, folder, seed):
    """The tiny BERT's tokenizer with freshly drawn weights: another candidate backbone."""
    import torch
    from transformers import BertConfig, BertModel

    shutil.copytree(source, folder)
    torch.manual_seed(seed)
    BertModel(BertConfig.from_pretrained(source)).save_pretrained(folder)
    return folder


def _keyword_frame(n=80, seed=0):
    """Labels carried only by words outside the tiny BERT's vocabulary (it reads them all as [UNK]): TF-IDF sees
    the keyword, the pretrained features cannot."""
    rng = random.Random(seed)
    keys = {"alpha": ["zorblax", "quintex", "vormund"], "beta": ["plimsy", "gradoon", "yellik"]}
    rows = []
    for i in range(n):
        label = "alpha" if i % 2 == 0 else "beta"
        words = rng.sample(WORDS["neutral"], 4) + [rng.choice(keys[label])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def _noisy(frame, share=0.2, seed=0):
    """Some labels flipped, so no model reaches validation accuracy 1.0 and escalation has something to gain."""
    frame = frame.copy()
    flip = frame.sample(frac=share, random_state=seed).index
    frame.loc[flip, "label"] = frame.loc[flip, "label"].map({"pos": "neg", "neg": "pos"})
    return frame


def _by_strategy(result):
    return {row["strategy"]: row for row in result.rows}


# -- budgets and the choice ------------------------------------------------------------------------------------

def test_parse_budget():
    assert parse_budget("20m") == 1200 and parse_budget("90s") == 90 and parse_budget("1h") == 3600
    assert parse_budget("1h30m") == 5400 and parse_budget(" 1.5m ") == 90 and parse_budget(45) == 45
    for bad in ("20", "20x", "m", "", "-5m", "0s", None, "20 minutes"):
        with pytest.raises(ConfigError, match="budget"):
            parse_budget(bad)


def test_estimate_grows_with_epochs_and_takes_the_measured_correction():
    one, _ = estimate_trainable("finetune", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=1)
    three, _ = estimate_trainable("finetune", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=3)
    corrected, basis = estimate_trainable("finetune", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=3,
                                          correction=2.0)
    assert one < three and corrected == pytest.approx(2 * three) and "measured" in basis


def test_choose_reads_validation_never_test():
    rows = [{"step": 1, "kind": "baseline", "status": "ran", "validation": {"score": 0.70, "accuracy": 0.70, "macro_f1": 0.7},
             "test": {"accuracy": 0.99}},
            {"step": 2, "kind": "probe", "strategy": "linear-probe", "status": "ran",
             "validation": {"score": 0.90, "accuracy": 0.90, "macro_f1": 0.9}, "test": {"accuracy": 0.50}},
            {"step": 3, "kind": "trainable", "status": "skipped", "validation": None, "test": None},
            {"step": 4, "kind": "trainable", "strategy": "full", "status": "ran",
             "validation": {"score": 0.90, "accuracy": 0.90, "macro_f1": 0.9}, "test": {"accuracy": 0.95}}]
    assert choose(rows)["step"] == 2  # tie on validation: the simpler rung, whatever the test says


def test_a_validation_tie_goes_to_the_simpler_rung_whatever_the_order():
    tie = {"status": "ran", "validation": {"score": 0.8, "accuracy": 0.8, "macro_f1": 0.8}}
    rows = [{"step": 1, "kind": "trainable", "strategy": "full", **tie},
            {"step": 2, "kind": "trainable", "strategy": "lp-ft", **tie},
            {"step": 3, "kind": "trainable", "strategy": "finetune", **tie}]
    assert choose(rows)["step"] == 3
    assert choose(rows[:2])["step"] == 2
    assert choose([*rows, {"step": 4, "kind": "baseline", "strategy": "TF-IDF", **tie}])["step"] == 4


# -- auto on the tiny models -----------------------------------------------------------------------------------

def test_leaderboard_has_the_baseline_and_every_step_with_a_reason(tiny_bert_dir, tmp_path):
    second = _copy_with_new_weights(tiny_bert_dir, tmp_path / "second", 1)
    third = _copy_with_new_weights(tiny_bert_dir, tmp_path / "third", 2)
    backbones = [str(tiny_bert_dir), str(second), str(third)]
    result = graftkit.auto(_noisy(sentiment_frame(80)), backbones=backbones, budget="2m", epochs=1, seed=0,
                           test=sentiment_frame(30, seed=5), progress=False)
    rows = result.rows
    assert rows[0]["kind"] == "baseline" and rows[0]["status"] == "ran" and rows[0]["test"] is not None
    assert all(row["reason"] for row in rows)
    probes = [row for row in rows if row["kind"] == "probe"]
    assert [row["status"] for row in probes].count("ran") == 2
    assert any(row["status"] == "skipped" and "only the top 2" in row["reason"] for row in probes)
    ladder = [row for row in rows if row["kind"] == "trainable"]
    assert [row["strategy"] for row in ladder] == ["finetune", "lora", "lp-ft"]
    assert result.ranking is not None and any(step["action"] == "rank" for step in result.steps)
    for row in rows:
        if row["status"] == "ran":
            assert row["validation"]["accuracy"] is not None and row["seconds"] >= 0 and row["peak_rss_mib"] > 0
            assert row["test"]["score_std"] >= 0
            assert row["parameters"]["trainable"] > 0 or row["strategy"] == "zero-shot"  # rung 0 trains nothing
    finetune = _by_strategy(result)["finetune"]
    if finetune["status"] == "ran":  # the manifest's training section gives the trainable share
        assert 0 < finetune["parameters"]["share"] < 1
    assert sum(row["chosen"] for row in rows) == 1 and result.chosen["chosen_reason"]
    assert result.model is not None


def test_a_step_that_cannot_fit_the_budget_is_skipped_with_the_reason(tiny_bert_dir, monkeypatch):
    from graftkit.playbook.steps import Run

    # 2 s per row whatever the machine: not even 1 epoch on the 48 training rows fits what 30 s leave
    monkeypatch.setattr(Run, "_measure_forward", lambda self, spec, model, embedded: self.forward_s.__setitem__(spec, 2.0))
    result = graftkit.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="30s", epochs=100_000,
                           ladder=["finetune", "full"], progress=False)
    ladder = _by_strategy(result)
    for strategy in ("finetune", "full"):
        assert ladder[strategy]["status"] == "skipped"
        assert "would not fit the budget" in ladder[strategy]["reason"]
        assert ladder[strategy]["estimated_s"] > 30
    assert _by_strategy(result)["linear-probe"]["status"] == "ran"


def test_escalation_stops_when_the_gain_per_minute_is_below_the_threshold(tiny_bert_dir, monkeypatch):
    import numpy as np

    from graftkit.playbook import steps

    def one_class(self, items, where=None):  # a baseline that always says "neg": the probe leads it
        probabilities = np.zeros((len(items), 2))
        probabilities[:, 0] = 1.0
        return probabilities

    monkeypatch.setattr(steps.ClassicalBaseline, "outputs", one_class)
    result = graftkit.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="1m", epochs=1,
                           ladder=["finetune", "full"], min_gain_per_minute=1e9, progress=False)
    ladder = _by_strategy(result)
    assert not result.baseline_wins and ladder["finetune"]["status"] == "ran"
    assert "gain_per_minute" in ladder["finetune"]
    assert ladder["full"]["status"] == "skipped" and "escalation stopped" in ladder["full"]["reason"]


def test_a_fresh_head_falling_short_still_lets_lp_ft_run(tiny_bert_dir, monkeypatch):
    import numpy as np

    from graftkit.playbook import steps

    monkeypatch.setattr(steps.ClassicalBaseline, "predict_proba",
                        lambda self, items, where=None: np.tile([1.0, 0.0], (len(items), 1)))
    result = graftkit.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="2m", epochs=1,
                           ladder=["finetune", "lora", "lp-ft", "full"], min_gain_per_minute=1e9, progress=False)
    ladder = _by_strategy(result)
    assert ladder["finetune"]["status"] == "ran"
    assert ladder["lora"]["status"] == "skipped" and "escalation stopped, finetune" in ladder["lora"]["reason"]
    assert ladder["lp-ft"]["status"] == "ran", ladder["lp-ft"]["reason"]
    assert "tried although escalation had stopped: the rung that fell short trained a fresh head" \
        in ladder["lp-ft"]["reason"]
    assert any("lp-ft is tried although escalation stopped" in step["reason"] for step in result.steps)
    # lp-ft fell short as well (no gain reaches 1e9 points a minute): nothing after it runs
    assert ladder["full"]["status"] == "skipped" and "escalation stopped, lp-ft" in ladder["full"]["reason"]


def test_the_lp_ft_rung_fine_tunes_every_group_from_the_probe_head(tiny_bert_dir, tmp_path):
    result = graftkit.auto(_noisy(sentiment_frame(80)), backbones=[str(tiny_bert_dir)], budget="1m", epochs=1,
                           ladder=["lp-ft"], progress=False, cache_dir=tmp_path)
    row = _by_strategy(result)["lp-ft"]
    assert row["status"] == "ran" and row["validation"]["accuracy"] is not None, row["reason"]
    assert row["parameters"]["share"] > 0.9  # every layer group trains, as in full fine-tuning


def test_an_unknown_rung_names_the_rungs_there_are(tiny_bert_dir):
    with pytest.raises(ConfigError, match="unknown escalation step 'ulmfit'; the ladder is built from finetune, "
                                          "lora, lp-ft, full"):
        graftkit.auto(sentiment_frame(20), backbones=[str(tiny_bert_dir)], ladder=["ulmfit"])


def test_the_choice_is_by_validation_and_the_test_set_changes_nothing(tiny_bert_dir):
    data = sentiment_frame(60)
    flipped = sentiment_frame(40, seed=3)
    flipped["label"] = flipped["label"].map({"pos": "neg", "neg": "pos"})  # test prefers the worst model
    options = {"backbones": [str(tiny_bert_dir)], "budget": "30s", "ladder": [], "progress": False}
    without = graftkit.auto(data, **options)
    with_test = graftkit.auto(data, test=flipped, **options)
    assert with_test.chosen["step"] == without.chosen["step"]
    ran = [row for row in with_test.rows if row["status"] == "ran"]
    assert with_test.chosen["validation"]["accuracy"] == max(row["validation"]["accuracy"] for row in ran)
    assert all(row["test"] is not None for row in ran)
    test_order = sorted(ran, key=lambda r: r["test"]["accuracy"])
    assert test_order[0]["validation"]["accuracy"] >= test_order[-1]["validation"]["accuracy"]


def test_the_baseline_wins_on_a_keyword_task_and_auto_says_so(tiny_bert_dir, tmp_path):
    result = graftkit.auto(_keyword_frame(), backbones=[str(tiny_bert_dir)], budget="45s", epochs=1,
                           ladder=["finetune", "full"], progress=False, output=tmp_path / "model")
    assert result.baseline_wins and result.chosen["kind"] == "baseline"
    assert result.message.startswith("the classical baseline beats every pretrained candidate on validation: ")
    ladder = _by_strategy(result)
    # the baseline leads, so escalation went on whatever the gain per minute, while the budget lasted
    assert ladder["finetune"]["status"] == "ran"
    assert "escalation stopped" not in ladder["full"]["reason"]
    markdown = (tmp_path / "model" / "leaderboard.md").read_text()
    assert "the classical baseline beats every pretrained candidate on validation: " in markdown
    assert json.loads((tmp_path / "model" / "leaderboard.json").read_text())["baseline_wins"] is True


# -- the command line ------------------------------------------------------------------------------------------

def test_cli_writes_the_model_and_the_leaderboard(tiny_bert_dir, tmp_path, capsys):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    sentiment_frame(60).to_csv(train, index=False)
    sentiment_frame(30, seed=7).to_csv(test, index=False)
    out = tmp_path / "model"
    code = main(["-q", "auto", str(train), "--backbones", str(tiny_bert_dir), "--budget", "30s", "--test", str(test),
                 "--ladder", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "classical baseline" in printed and "chosen: step" in printed and "leaderboard" in printed
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["rows"][0]["kind"] == "baseline" and board["saved_step"] is not None
    assert "| step |" in (out / "leaderboard.md").read_text()
    model = graftkit.load(out)
    assert len(model.predict(["good great movie"])) == 1
    code = main(["-q", "auto", str(train), "--backbones", str(tiny_bert_dir), "--budget", "30s", "--ladder",
                 "-o", str(out)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_cli_bad_budget_is_one_line_and_exit_2(tmp_path, capsys):
    train = tmp_path / "train.csv"
    sentiment_frame(20).to_csv(train, index=False)
    code = main(["auto", str(train), "--backbones", "x", "--budget", "20x", "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("graftkit: error: budget '20x'") and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


# -- real data -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_auto_on_the_demo_data_is_at_least_as_good_as_the_probe(tmp_path):
    from graftkit.cli.demo import demo_data_dir

    folder = demo_data_dir()
    train = graftkit.load_data(folder / "banking77_train.csv", text="text", label="category")
    test = graftkit.load_data(folder / "banking77_test.csv", text="text", label="category")
    result = graftkit.auto(train, backbones=["all-MiniLM-L6-v2"], budget="4m", epochs=1, test=test,
                           progress=False, output=tmp_path / "auto")
    probe = _by_strategy(result)["linear-probe"]
    assert probe["status"] == "ran"
    assert result.chosen["validation"]["accuracy"] >= probe["validation"]["accuracy"]
    assert result.shipped["validation"]["accuracy"] >= probe["validation"]["accuracy"]
    assert (tmp_path / "auto" / "leaderboard.md").is_file()


def test_a_chosen_linear_probe_is_refitted_on_training_and_validation_rows(tiny_bert_dir):
    data = _noisy(sentiment_frame(60))
    options = {"backbones": [str(tiny_bert_dir)], "budget": "1m", "ladder": [], "progress": False}
    result = graftkit.auto(data, **options)
    probe = _by_strategy(result)["linear-probe"]
    assert "refitted on training + validation (60 rows)" in probe["refit"]
    assert result.model.data_["rows"] == 60  # the saved model saw every row; validation scored the 48-row fit
    kept = graftkit.auto(data, refit=False, **options)
    assert "refit" not in _by_strategy(kept)["linear-probe"] and kept.model.data_["rows"] == 48


def test_a_rung_past_the_budget_stops_cleanly_and_the_leaderboard_says_so(tiny_bert_dir, monkeypatch, tmp_path):
    """The estimate is made to undershoot 1000-fold: the Deadline ends the rung at the budget with its best
    checkpoint so far, the row says so, and later rungs are skipped for the budget (early stopping is switched off,
    so only the budget can end the 500 epochs)."""
    from transformers import TrainerCallback

    from graftkit.playbook import budget, steps
    from graftkit.training import engine

    monkeypatch.setattr(engine, "EarlyStoppingCallback", lambda **_: TrainerCallback())
    monkeypatch.setattr(budget, "TRAIN_FACTOR", {k: v / 1000 for k, v in budget.TRAIN_FACTOR.items()})
    monkeypatch.setattr(budget, "STEP_OVERHEAD_S", 0.0)
    # the first rung is let in whatever the baseline and probe cost on a busy machine (else it reads the clock)
    note, let_in = steps.Run.budget_note, []
    monkeypatch.setattr(steps.Run, "budget_note", lambda run, estimate: (
        let_in.append(1) or (True, "let in by the test")) if not let_in else note(run, estimate))
    result = graftkit.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="25s", epochs=500,
                           ladder=["finetune", "lp-ft"], seed=0, batch_size=8, output=tmp_path / "model")
    rows = _by_strategy(result)
    tuned = rows["finetune"]
    assert tuned["status"] == "ran" and tuned["stopped_at_budget"] is True
    assert "stopped at the time budget after" in tuned["reason"] and tuned["validation"] is not None
    # what the stop left is either too little for lp-ft, or enough only for fewer epochs (playbook/bounded.py)
    assert "budget" in rows["lp-ft"]["reason"]
    assert rows["lp-ft"]["status"] == "skipped" or "so that it fits the budget" in rows["lp-ft"]["reason"]
    markdown = (tmp_path / "model" / "leaderboard.md").read_text()
    assert "ran, stopped at budget" in markdown
    saved = json.loads((tmp_path / "model" / "leaderboard.json").read_text())["rows"]
    assert next(r for r in saved if r["strategy"] == "finetune")["stopped_at_budget"]


def test_the_estimate_counts_uncached_pretrained_features_not_a_training_metrics_pass():
    cached, basis = estimate_trainable("finetune", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=2)
    uncached, more = estimate_trainable("finetune", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=2,
                                        feature_rows=100)
    # 3 x 100 x 2 training + 20 x 3 validation passes (2 epochs + calibration), no pass over the 100 training rows
    assert cached == pytest.approx(0.01 * (600 + 60) + 5.0) and "3 validation passes" in basis
    assert uncached == pytest.approx(cached + 1.0) and "100 rows' pretrained features" in more


def test_installed_backbones_by_modality_cheapest_first():
    from graftkit.backbones.registry import installed_backbones

    text = installed_backbones("text")
    assert "all-MiniLM-L6-v2" in [c["name"] for c in text]
    for modality in ("text", "image", "audio"):
        sizes = [c["bytes"] for c in installed_backbones(modality)]
        assert sizes == sorted(sizes)
    two_towers = {c["name"] for c in text if c["family"] == "hf-clip"}  # an image-text model reads both
    assert not {c["name"] for c in installed_backbones("image")} & {c["name"] for c in text} - two_towers


def test_auto_without_backbones_takes_the_installed_ones_and_says_so(tmp_path, capsys):
    data = tmp_path / "train.csv"
    _noisy(sentiment_frame(60)).to_csv(data, index=False)
    code = main(["auto", str(data), "--budget", "2m", "--ladder", "-o", str(tmp_path / "model"), "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "no backbones given: took the" in out and "all-MiniLM-L6-v2" in out.splitlines()[0]
    board = json.loads((tmp_path / "model" / "leaderboard.json").read_text())
    assert "all-MiniLM-L6-v2" in board["settings"]["backbones"]
    assert any(step["action"] == "backbones" for step in board["steps"])


def test_auto_without_backbones_and_none_installed_says_how_to_get_one(monkeypatch):
    from graftkit.backbones import registry

    monkeypatch.setattr(registry, "installed_backbones", lambda modality: [])
    with pytest.raises(ConfigError, match="no installed backbone reads text; install one"):
        graftkit.auto(sentiment_frame(20), budget="1m")


# -- the first probe within the budget (playbook/bounded.py) ---------------------------------------------------

def test_rows_that_fit_leave_room_for_validation_and_test_and_keep_a_floor():
    from graftkit.playbook.bounded import HEAD_SHARE, MIN_ROWS, rows_that_fit

    # 100 s left, 1 s per row, 20 other rows: 80 s for training rows at (1 + HEAD_SHARE) s each
    assert rows_that_fit(1.0, train_rows=1000, other_rows=20, seconds_left=100) == int(80 / (1 + HEAD_SHARE))
    assert rows_that_fit(0.001, train_rows=1000, other_rows=20, seconds_left=100) == 1000  # everything fits
    assert rows_that_fit(1.0, train_rows=1000, other_rows=500, seconds_left=100) == MIN_ROWS  # nothing fits
    assert rows_that_fit(1.0, train_rows=30, other_rows=500, seconds_left=100) == 30  # the floor never exceeds the data


def test_the_first_probe_takes_a_subsample_that_fits_the_budget_and_says_so(tiny_bert_dir, monkeypatch):
    from graftkit.playbook import bounded

    # one second per row (timed on a 16-row sample), whatever the machine: 96 training + 24 validation rows at
    # that rate cannot fit 100 s, so the probe gets a stratified subsample of the training rows
    monkeypatch.setattr(bounded, "forward_seconds_per_row", lambda spec, train, task, options: (1.0, 16, None))
    result = graftkit.auto(_noisy(sentiment_frame(120)), backbones=[str(tiny_bert_dir)], budget="100s", ladder=[],
                           refit=False)
    probe = _by_strategy(result)["linear-probe"]
    assert probe["status"] == "ran" and bounded.MIN_ROWS <= probe["train_rows"] < 96
    assert f"subsample of {probe['train_rows']} of the 96 training rows" in probe["reason"]
    assert result.model.data_["rows"] == probe["train_rows"]
    labels = result.model.data_.get("classes") or result.model.task_.classes
    assert len(labels) == 2  # stratified: both classes kept
    assert any(step["action"] == "budget" and "subsample" in step["reason"] for step in result.steps)


def test_the_first_probe_sees_every_training_row_when_the_budget_allows(tiny_bert_dir):
    result = graftkit.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="5m", ladder=[],
                           refit=False)
    probe = _by_strategy(result)["linear-probe"]
    assert probe["train_rows"] == 48 and "subsample" not in probe["reason"]
    # either timed and fitting, or its timing sample already cached (earlier tests embed the same sentences)
    assert any(step["action"] == "budget" and ("fit the budget" in step["reason"] or "feature cache" in step["reason"])
               for step in result.steps)


def test_a_failed_timing_sample_leaves_the_first_probe_to_record_its_own_outcome(tiny_bert_dir, monkeypatch):
    from graftkit.errors import DataError
    from graftkit.playbook import bounded

    def unreadable(spec, train, task, options):
        raise DataError("the backbone cannot read this column")

    monkeypatch.setattr(bounded, "forward_seconds_per_row", unreadable)
    result = graftkit.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="2m", ladder=[],
                           refit=False)
    probe = _by_strategy(result)["linear-probe"]
    assert probe["status"] == "ran" and probe["train_rows"] == 48 and "subsample" not in probe["reason"]


def test_the_timing_sample_excludes_loading_and_the_probe_reuses_the_loaded_backbone(tiny_bert_dir, monkeypatch):
    import time

    import graftkit.graft as graft_module
    from graftkit.playbook import bounded

    loads, load = [], graft_module.load_backbone

    def slow_load(*args, **kwargs):  # a load far slower than a forward pass of 16 tiny-BERT rows
        loads.append(1)
        time.sleep(2.0)
        return load(*args, **kwargs)

    monkeypatch.setattr(graft_module, "load_backbone", slow_load)
    table = graftkit.load_data(_noisy(sentiment_frame(40)), text="text", label="label")
    options = {"seed": 0, "batch_size": 8, "use_cache": False, "progress": False}
    per_row, sampled, model = bounded.forward_seconds_per_row(str(tiny_bert_dir), table, None, options)
    assert sampled == 16 and per_row is not None and per_row * sampled < 2.0  # the load is not in the per-row time
    model.fit(table)
    assert len(loads) == 1  # the probe fitted the timing model: one load, not two


# -- trainable rungs within the budget (playbook/bounded.py) ---------------------------------------------------

def _fake_run(seconds_left, rows=1000, first=None, feature_rows=0):
    from types import SimpleNamespace

    from graftkit.playbook.budget import Clock
    from graftkit.playbook.steps import Run

    table = graftkit.load_data(sentiment_frame(rows), text="text", label="label")
    task = graftkit.Graft().infer_task(table)
    run = SimpleNamespace(train=table, val=table.head(100), forward_s={"b": 0.01}, correction=1.0,
                          feature_rows=feature_rows, first_probe_rows=first, clock=Clock(seconds_left),
                          reserve=lambda: 0.0, task=task, settings={"seed": 0})
    run.uncached_rows = lambda train: Run.uncached_rows(run, train)
    return run


def test_a_trainable_rung_that_does_not_fit_loses_epochs_first_then_rows_down_to_a_floor():
    from graftkit.playbook.bounded import MIN_TRAINABLE_ROWS, fit_trainable_to_budget

    # finetune at 10 ms/row, 1000 training + 100 validation rows: 3 epochs 99 s, 2 epochs 68 s, 1 epoch 37 s
    train, epochs, estimate, _, note = fit_trainable_to_budget(_fake_run(70), "b", "finetune", 3)
    assert len(train) == 1000 and epochs == 2 and estimate <= 70 and "2 of the 3 epochs" in note
    train, epochs, _, _, _ = fit_trainable_to_budget(_fake_run(40), "b", "finetune", 3)
    assert len(train) == 1000 and epochs == 1
    # 20 s: 0.01 x (3 r + 200) + 5 <= 20 -> at most 433 rows, 1 epoch, both classes kept
    train, epochs, estimate, _, note = fit_trainable_to_budget(_fake_run(20), "b", "finetune", 3)
    assert epochs == 1 and 400 <= len(train) <= 433 and estimate <= 20
    assert set(train.frame["label"]) == {"pos", "neg"} and f"subsample of {len(train)} of the 1000" in note
    # 10 s cannot fit one epoch on the floor's rows: 0.01 x (3 x 200 + 200) + 5 = 13 s
    assert fit_trainable_to_budget(_fake_run(10), "b", "finetune", 3) is None and MIN_TRAINABLE_ROWS == 200


def test_a_cut_trainable_rung_keeps_the_first_probes_rows_and_counts_the_others_features():
    from graftkit.playbook.bounded import fit_trainable_to_budget

    probe_rows = _fake_run(1).train.subset(range(0, 600, 2))  # 300 of the 1000 rows
    run = _fake_run(20, first=probe_rows)
    train, _, estimate, basis, _ = fit_trainable_to_budget(run, "b", "finetune", 3)
    assert set(probe_rows.frame.index) <= set(train.frame.index) and len(train) > 300
    assert f"{len(train) - 300} rows' pretrained features" in basis  # only the rows outside the probe's cache
    smaller = fit_trainable_to_budget(_fake_run(8.5, first=probe_rows), "b", "finetune", 1)
    assert smaller is None or set(smaller[0].frame.index) <= set(probe_rows.frame.index)


def test_auto_fits_a_trainable_rung_on_the_rows_that_fit_and_says_so(tiny_bert_dir, monkeypatch):
    from graftkit.playbook import bounded
    from graftkit.playbook.steps import Run

    # 0.2 s per row whatever the machine: finetune on all 96 training rows, even for 1 epoch, needs
    # 0.2 x (3 x 96 + 2 x 24) + 5 = 72 s, more than the 60 s budget holds; a subsample of them fits
    monkeypatch.setattr(bounded, "forward_seconds_per_row", lambda spec, train, task, options: (0.2, 16, None))
    monkeypatch.setattr(Run, "_measure_forward", lambda self, spec, model, embedded: self.forward_s.__setitem__(spec, 0.2))
    monkeypatch.setattr(bounded, "MIN_TRAINABLE_ROWS", 20)
    result = graftkit.auto(_noisy(sentiment_frame(120)), backbones=[str(tiny_bert_dir)], budget="60s",
                           ladder=["finetune"], epochs=3, refit=False)
    tuned = _by_strategy(result)["finetune"]
    assert tuned["status"] == "ran", tuned["reason"]
    assert 20 <= tuned["train_rows"] < 96 and tuned["params"]["epochs"] == 1
    assert f"subsample of {tuned['train_rows']} of the 96 training rows" in tuned["reason"]
    assert any(step["action"] == "budget" and step["reason"].startswith("finetune:") for step in result.steps)


def test_the_budget_clock_counts_what_was_spent_before_it_started():
    import subprocess
    import sys

    from graftkit.playbook.budget import Clock, process_seconds

    assert Clock(100, spent=30).remaining() == pytest.approx(70, abs=1.0)
    # a child process that sleeps 1 s before asking: its start-up is counted, not only the time since the call
    child = subprocess.run([sys.executable, "-c", "import time; time.sleep(1.0); from graftkit.playbook.budget import "
                            "process_seconds; print(process_seconds())"], capture_output=True, text=True, check=True)
    assert float(child.stdout) >= 1.0 and 0 <= process_seconds() < 24 * 3600


def test_the_console_script_counts_its_start_up_and_an_in_process_main_does_not(monkeypatch, tmp_path):
    import graftkit.cli.auto as cli_auto
    import graftkit.cli.main as cli_main
    from graftkit.errors import DataError

    seen = []

    def fake_auto(*args, **kwargs):
        seen.append(kwargs["spent"])
        raise DataError("stop here")

    monkeypatch.setattr(cli_auto, "auto", fake_auto)
    monkeypatch.setattr("graftkit.playbook.budget.process_seconds", lambda: 12.5)
    data = tmp_path / "train.csv"
    sentiment_frame(20).to_csv(data, index=False)
    command = ["auto", str(data), "--budget", "1m", "-o", str(tmp_path / "model")]
    assert main(command) == 2  # a test (or any caller) running main in its own long-lived process
    monkeypatch.setattr("sys.argv", ["graftkit", *command])
    assert cli_main.entry() == 2  # the console script
    assert seen == [0.0, 12.5]
