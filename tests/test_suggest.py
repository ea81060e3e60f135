"""``graftkit suggest``: the task's uncertainty, the three pickers, the pool's dedupe against the labelled set, the
CSV for annotators, the simulation, and the bad inputs (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import WORDS, examples, sentiment_frame
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.active import simulate, suggest
from graftkit.active.picks import by_diversity, by_hybrid, by_uncertainty
from graftkit.active.suggest import choose
from graftkit.cli.main import main
from graftkit.errors import ConfigError, DataError
from graftkit.evaluation.leakage import normalize_text
from graftkit.tasks.classification import Classification
from graftkit.tasks.multilabel import MultiLabel
from graftkit.tasks.regression import Regression


# -- the task's uncertainty -----------------------------------------------------------------------------------------
def test_classification_uncertainty_is_one_at_a_tie_and_zero_when_sure():
    task = Classification(classes=("a", "b", "c"))
    p = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    margin = task.uncertainty(p)  # margin is the default
    assert margin == pytest.approx([1.0, 1.0, 0.0, 0.7])
    entropy = task.uncertainty(p, measure="entropy")
    assert entropy[0] == pytest.approx(1.0) and entropy[2] == pytest.approx(0.0, abs=1e-9)
    assert entropy[1] < entropy[0]  # two-way tie is less uncertain than a three-way one by entropy, not by margin


def test_multilabel_margin_is_measured_from_each_labels_own_threshold():
    task = MultiLabel(names=("x", "y"))
    calibration = {"thresholds": [0.2, 0.5]}
    p = np.array([[0.2, 0.99], [0.6, 0.5], [1.0, 0.0], [0.6, 0.75]])
    u = task.uncertainty(p, calibration)
    assert u[0] == pytest.approx(1.0) and u[1] == pytest.approx(1.0)  # one label sits on its threshold
    assert u[2] == pytest.approx(0.0)
    assert u[3] == pytest.approx(0.5)  # y: (0.75 - 0.5) / 0.5 = 0.5 from sure; x: (0.6 - 0.2) / 0.8 = 0.5
    assert task.uncertainty(p, calibration, measure="entropy")[2] == pytest.approx(0.0, abs=1e-9)


def test_regression_and_unknown_measures_are_refused_with_the_way_out():
    with pytest.raises(ConfigError, match="same width for every row.*--how diversity"):
        Regression().check_uncertainty()
    with pytest.raises(ConfigError, match="--measure"):
        Classification(classes=("a", "b")).check_uncertainty("variance")


@given(st.integers(2, 6).flatmap(lambda k: st.lists(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k),
                                                    min_size=1, max_size=20)))
@hsettings(max_examples=examples(40))
def test_uncertainty_lies_in_0_1_and_ignores_the_class_order(rows):
    p = np.asarray(rows) + 1e-9
    p = p / p.sum(axis=1, keepdims=True)
    task = Classification(classes=tuple(str(i) for i in range(p.shape[1])))
    for measure in task.uncertainty_measures:
        u = task.uncertainty(p, measure=measure)
        assert u.shape == (len(p),) and np.all((u >= 0) & (u <= 1))
        assert task.uncertainty(p[:, ::-1], measure=measure) == pytest.approx(u)


# -- the pickers, on constructed arrays --------------------------------------------------------------------------
def _two_blobs(seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal([-3, 0], 1.0, (40, 2)), rng.normal([3, 0], 1.0, (40, 2))])
    return X, np.repeat([0, 1], 40)


def test_uncertainty_picks_the_rows_nearest_the_decision_boundary():
    X, y = _two_blobs()
    task = Classification(classes=("left", "right"))
    head = task.fit_head(X, y, C=1.0)
    pool = np.column_stack([np.linspace(-6, 6, 25), np.random.default_rng(1).normal(0, 1, 25)])
    picks = choose(task, "uncertainty", 5, outputs=task.outputs(head.logits(pool), None))
    boundary = np.abs(pool[:, 0])  # the blobs mirror each other: the boundary is x = 0
    assert sorted(p.position for p in picks) == sorted(np.argsort(boundary)[:5].tolist())
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)


def test_diversity_picks_one_row_from_every_cluster():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:5] * 10
    sizes = [50, 30, 10, 5, 3]  # unequal clusters: the small ones must still be covered
    X = np.concatenate([rng.normal(c, 0.3, (s, 8)) for c, s in zip(centres, sizes)])
    cluster = np.repeat(np.arange(5), sizes)
    picks = by_diversity(X, 5, seed=0)
    assert sorted(cluster[[p.position for p in picks]].tolist()) == [0, 1, 2, 3, 4]
    assert picks[0].score == pytest.approx(50 / len(X))  # the largest cluster first, with its share


def test_hybrid_takes_uncertain_rows_that_do_not_repeat_each_other():
    rng = np.random.default_rng(0)
    # three tight groups of uncertain rows (u high) and one of sure rows: one pick per uncertain group
    X = np.concatenate([rng.normal(c, 0.05, (20, 3)) for c in np.eye(3) * 5] + [rng.normal(-5, 0.05, (40, 3))])
    u = np.concatenate([np.full(60, 0.9) + rng.uniform(0, 0.05, 60), np.full(40, 0.1)])
    picks = by_hybrid(X, u, 3, "margin", beta=20)
    groups = [p.position // 20 for p in picks]
    assert sorted(groups) == [0, 1, 2]  # pure uncertainty would take three rows of one group
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)
    assert all(p.position < 60 for p in by_uncertainty(u, 3, "margin"))


# -- suggest end to end on the tiny model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, tmp_path_factory):
    model = gk.Graft(str(tiny_bert_dir), progress=False).fit(sentiment_frame(40, seed=0))
    folder = tmp_path_factory.mktemp("suggest-model") / "model"
    model.save(folder)
    return model, folder


def _files(tmp_path, labelled: pd.DataFrame, pool: pd.DataFrame) -> tuple[Path, Path]:
    labelled_path, pool_path = tmp_path / "labelled.csv", tmp_path / "pool.csv"
    labelled.to_csv(labelled_path, index=False)
    pool.to_csv(pool_path, index=False)
    return labelled_path, pool_path


@pytest.mark.parametrize("how", ["hybrid", "uncertainty", "diversity"])
def test_suggest_never_repeats_labelled_rows_and_keeps_the_pool_columns(fitted, how):
    model, _ = fitted
    labelled = sentiment_frame(40, seed=0)
    pool = pd.concat([sentiment_frame(60, seed=1).assign(source="new"),
                      labelled.head(10).assign(text=lambda f: f["text"].str.upper() + " .", source="copied")],
                     ignore_index=True)
    result = suggest(model, pool, 20, how=how, labelled=labelled)
    frame = result.frame
    assert list(frame.columns[:4]) == ["row", "rank", "score", "reason"] and "source" in frame.columns
    assert set(frame["source"]) == {"new"}  # a case / punctuation change does not make a labelled row new
    assert len(frame) == 20 and frame["row"].is_unique and frame["rank"].tolist() == list(range(1, 21))
    assert (pool.loc[frame["row"] - 1, "text"].to_numpy() == frame["text"].to_numpy()).all()  # row = data row
    assert any("already in" in note for note in result.notes)


@given(st.lists(st.tuples(st.lists(st.sampled_from(sorted({w for ws in WORDS.values() for w in ws})), min_size=1,
                                   max_size=5), st.booleans()), min_size=1, max_size=25),
       st.integers(1, 30))
@hsettings(max_examples=examples(15))
def test_generated_pools_never_get_a_labelled_or_repeated_row_suggested(fitted, rows, n):
    model, _ = fitted
    labelled = sentiment_frame(40, seed=0)
    texts = [labelled["text"][i % 40].title() if copy else " ".join(words) for i, (words, copy) in enumerate(rows)]
    known = {normalize_text(t) for t in labelled["text"]}
    fresh = {normalize_text(t) for t in texts} - known
    try:
        result = suggest(model, pd.DataFrame({"text": texts}), n, how="hybrid", labelled=labelled)
    except DataError as exc:
        assert not fresh and ("nothing is left" in str(exc) or "no rows left" in str(exc))
        return
    chosen = [normalize_text(t) for t in result.frame["text"]]
    assert not set(chosen) & known and len(set(chosen)) == len(chosen) == min(n, len(fresh))


def test_more_rows_asked_than_left_suggests_them_all_with_a_warning(fitted, caplog):
    model, _ = fitted
    result = suggest(model, sentiment_frame(8, seed=5), 50, how="diversity")
    assert len(result.frame) == 8 and any("asked for 50 rows but only 8" in n for n in result.notes)


def test_a_pool_all_labelled_or_without_the_models_column_is_refused(fitted):
    model, _ = fitted
    labelled = sentiment_frame(40, seed=0)
    with pytest.raises(DataError, match="all 10 rows are already in"):
        suggest(model, labelled.head(10), 5, labelled=labelled)
    with pytest.raises(DataError, match=r"no column 'text', the text column the model was fitted on.*'review'.*--text"):
        suggest(model, labelled.rename(columns={"text": "review"}), 5)


# -- the CLI ------------------------------------------------------------------------------------------------------
def test_cli_writes_the_csv_atomically_and_refuses_to_overwrite(fitted, tmp_path, capsys):
    _, folder = fitted
    labelled, pool = _files(tmp_path, sentiment_frame(40, seed=0), sentiment_frame(50, seed=3))
    out = tmp_path / "to_label.csv"
    argv = ["suggest", str(labelled), "--model", str(folder), "--unlabelled", str(pool), "-n", "7", "-o", str(out)]
    assert main(argv) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 7 and list(frame.columns) == ["row", "rank", "score", "reason", "text", "label"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary or lock file left
    capsys.readouterr()
    assert main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--how", "uncertainty", "--measure", "entropy"]) == 0
    assert pd.read_csv(out)["reason"].str.startswith("uncertain: entropy").all()


@pytest.mark.parametrize("case, message", [
    ("other_columns", "no column 'text', the text column the model was fitted on"),
    ("empty", "has a header but no data rows"),
    ("all_labelled", "all 40 rows are already in"),
    ("no_pool", "needs --unlabelled POOL"),
])
def test_cli_bad_pools_are_one_line_and_exit_2(fitted, tmp_path, capsys, case, message):
    _, folder = fitted
    labelled = sentiment_frame(40, seed=0)
    pools = {"other_columns": labelled.rename(columns={"text": "review"}).assign(id=1),
             "empty": labelled.head(0), "all_labelled": labelled, "no_pool": labelled}
    labelled_path, pool_path = _files(tmp_path, labelled, pools[case])
    argv = ["suggest", str(labelled_path), "--model", str(folder), "-n", "5"]
    if case != "no_pool":
        argv += ["--unlabelled", str(pool_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if case in ("other_columns", "empty", "all_labelled"):
        assert str(pool_path) in err  # the file is named


def test_cli_caps_n_at_the_pool_with_a_warning(fitted, tmp_path, capsys):
    _, folder = fitted
    labelled, pool = _files(tmp_path, sentiment_frame(40, seed=0), sentiment_frame(6, seed=9))
    assert main(["suggest", str(labelled), "--model", str(folder), "--unlabelled", str(pool), "-n", "100",
                 "--how", "diversity"]) == 0
    out, err = capsys.readouterr()
    assert len(pd.read_csv(__import__("io").StringIO(out))) == 6 and "asked for 100 rows but only 6" in err


def test_a_regression_model_is_refused_for_uncertainty_but_served_by_diversity(tiny_bert_dir):
    frame = sentiment_frame(30).assign(label=lambda f: np.arange(len(f), dtype=float).astype(str))
    model = gk.Graft(str(tiny_bert_dir), progress=False, task="regression").fit(frame)
    with pytest.raises(ConfigError, match="--how diversity"):
        suggest(model, sentiment_frame(20, seed=4), 5, how="hybrid")
    assert len(suggest(model, sentiment_frame(20, seed=4), 5, how="diversity").frame) == 5


# -- the simulation -----------------------------------------------------------------------------------------------
def test_simulation_curves_share_the_start_and_grow_by_the_round(tiny_bert_dir):
    base = gk.Graft(str(tiny_bert_dir), progress=False)
    calls = []

    def first_rows(X_labelled, y_labelled, X_rest, k, seed):
        calls.append(len(X_rest))
        return np.arange(k)

    result = simulate(sentiment_frame(160, seed=2), methods=("hybrid", "diversity"), rounds=2, seeds=2, base=base,
                      pickers={"first": first_rows})
    assert set(result["curves"]) == {"random", "hybrid", "diversity", "first"}
    assert result["per_round"] == 4 and result["start"] == 4  # 2 per class of 2 classes
    for arm, curve in result["curves"].items():
        assert [p["labels"] for p in curve] == [4, 8, 12]
        assert len(curve[-1]["accuracy"]["values"]) == 2
    starts = {arm: curve[0]["accuracy"]["values"] for arm, curve in result["curves"].items()}
    assert len({tuple(v) for v in starts.values()}) == 1  # the same seeded start for every arm
    assert calls[:2] == [result["n_pool"] - 4, result["n_pool"] - 8]


def test_simulation_refuses_rounds_the_pool_cannot_hold(tiny_bert_dir):
    with pytest.raises(ConfigError, match="need 404 pool rows"):
        simulate(sentiment_frame(60), rounds=100, per_round=4, base=gk.Graft(str(tiny_bert_dir), progress=False))


def test_cli_simulate_prints_json(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "data.csv"
    sentiment_frame(120, seed=3).to_csv(data, index=False)
    assert main(["suggest", str(data), "--simulate", "--backbone", str(tiny_bert_dir), "--rounds", "1", "--seeds",
                 "1", "--methods", "uncertainty", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [p["labels"] for p in result["curves"]["uncertainty"]] == [4, 8] and result["measure"] == "margin"


# -- real model, real data --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_suggestions_on_banking77_beat_nothing_silly(tmp_path):
    from graftkit.cli.demo import demo_data_dir

    train = pd.read_csv(demo_data_dir() / "banking77_train.csv")
    classes = sorted(train["category"].unique())[:6]
    subset = train[train["category"].isin(classes)].reset_index(drop=True)  # 6 intents, 12 rows each
    labelled = subset.groupby("category").head(3)
    pool = subset.drop(labelled.index)
    model = gk.Graft(progress=False).fit(labelled)
    result = suggest(model, pd.concat([pool, labelled.head(5)]), 12, how="hybrid", labelled=labelled)
    assert not set(result.frame["text"]) & set(labelled["text"]) and len(result.frame) == 12
    assert result.frame["score"].between(0, 1).all()
    curves = simulate(subset, methods=("hybrid",), rounds=1, seeds=1, test_size=0.3)["curves"]
    assert [p["labels"] for p in curves["hybrid"]] == [12, 24]
    assert curves["hybrid"][-1]["accuracy"]["mean"] > 1 / 6  # well above chance on real intents
