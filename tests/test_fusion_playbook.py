"""Multi-input tables through the rest of graftkit (issue 12 item 6): `cv` routes to the fusion model's folds,
`rank` scores backbones on the fused features, `auto` climbs the fusion playbook (tabular GBDT -> TF-IDF baseline ->
frozen fusion, GBDT and linear heads -> two-stage LoRA when it fits) and saves a loadable fusion model, `report`
renders a fusion directory with its feature-group importance. Tiny BERT, synthetic tables."""

from __future__ import annotations

import json

import pytest
from test_fusion import FAST, ROLES, table_frame

from graftkit.cli.main import main

ROLE_FLAGS = ["--text", "title", "review", "--numeric", "age", "--categorical", "dept"]


@pytest.fixture(autouse=True)
def one_openmp_thread(one_thread):
    """The trees' OpenMP pool at one thread too: on two shared, busy cores a spinning second thread costs ten-fold."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def noisy_frame(n: int, seed: int = 0):
    """``table_frame`` with every sixth label flipped after the inputs were drawn: no rung can be perfect."""
    frame = table_frame(n, seed)
    flip = frame.index % 6 == 5
    frame.loc[flip, "label"] = frame.loc[flip, "label"].map({"pos": "neg", "neg": "pos"})
    return frame


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "t.csv"
    table_frame(80).to_csv(path, index=False)
    return path


def test_cli_cv_on_a_multi_input_table_runs_the_fusion_folds(tiny_bert_dir, table_csv, capsys):
    code = main(["cv", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--folds", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["task"] == "classification" and len(result["folds"]) == 2
    assert result["summary"]["accuracy"]["mean"] > 0.6
    assert sum(f["n_test"] for f in result["folds"]) == 80


def test_cli_cv_refuses_a_strategy_fusion_has_not(tiny_bert_dir, table_csv, capsys):
    code = main(["cv", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--strategy", "finetune"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--strategy linear-probe" in err[0] and "got --strategy finetune" in err[0]


def test_rank_scores_candidates_on_the_fused_features(tiny_bert_dir):
    """The trained-looking BERT and its randomly re-drawn control embed the two text columns; the tabular column
    (age, which carries half the signal) is in both matrices. LogME and the linear probe's accuracy order them."""
    import graftkit as gk
    from graftkit.data import load_data

    table = load_data(table_frame(80), label="label", **ROLES)
    ranking = gk.rank(table, [str(tiny_bert_dir), f"random:{tiny_bert_dir}"], scores=("logme", "linear", "leep"),
                      progress=False)
    assert ranking.data["modality"] == "multi-input" and [r["columns"] for r in ranking.rows] == [["title", "review"]] * 2
    dims = {r["candidate"]: r["dim"] for r in ranking.rows}
    assert len(set(dims.values())) == 1  # same layout: 2 x 32 embedding dims + age + the one-hot departments
    assert ranking.rows[0]["random"] is False and ranking.rows[0]["scores"]["logme"] > ranking.rows[1]["scores"]["logme"]
    assert all(r["scores"]["leep"] is None and "fused" in r["skipped"]["leep"] for r in ranking.rows)


def test_rank_on_the_fused_features_sees_the_tabular_signal(tiny_bert_dir):
    """Reviews of neutral words only: the label is in age alone, which the fused matrix holds and the text lacks."""
    import random

    from conftest import WORDS

    import graftkit as gk
    from graftkit.data import load_data

    frame = table_frame(80)
    frame["review"] = [" ".join(random.Random(i).sample(WORDS["neutral"], 4)) for i in range(len(frame))]
    with_age = gk.rank(load_data(frame, label="label", text=["review"], numeric=["age"]), [str(tiny_bert_dir)],
                       scores=("linear",), rank_by="linear", progress=False)
    without = gk.rank(load_data(frame, label="label", text=["title", "review"]), [str(tiny_bert_dir)],
                      scores=("linear",), rank_by="linear", progress=False)
    assert with_age.rows[0]["scores"]["linear"] > without.rows[0]["scores"]["linear"] + 0.2


def test_cli_rank_on_a_multi_input_table(tiny_bert_dir, table_csv, capsys):
    code = main(["rank", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbones", str(tiny_bert_dir),
                 f"random:{tiny_bert_dir}", "--scores", "logme", "hscore"])
    out = capsys.readouterr().out
    assert code == 0 and "scored on the fused features" in out and "title, review" in out
    code = main(["rank", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbones", "efficientnet-lite0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "reads image" in err[0] and "hold text" in err[0]


# -- auto -------------------------------------------------------------------------------------------------------
def _by_strategy(result) -> dict:
    return {row["strategy"]: row for row in result.rows}


def test_auto_climbs_the_fusion_rungs_with_reasons_and_saves_a_loadable_model(tiny_bert_dir, tmp_path):
    import graftkit as gk
    from graftkit.data import load_data
    from graftkit.fusion import load_fusion

    table = load_data(noisy_frame(100), label="label", **ROLES)
    test = noisy_frame(40, seed=5)
    result = gk.auto(table, backbones=[str(tiny_bert_dir)], budget="10m", test=test, output=tmp_path / "auto",
                     ladder=["lora"], epochs=1)
    rows = _by_strategy(result)
    assert list(rows) == ["gbdt", "tfidf-svd + tabular gbdt", "frozen + gbdt", "frozen + linear", "lora + gbdt"]
    assert [r["kind"] for r in result.rows] == ["baseline", "baseline", "fusion", "fusion", "trainable"]
    assert all(r["status"] == "ran" and r["reason"] and r["validation"] and r["test"] for r in result.rows)
    assert "always run: the tabular columns alone (age, dept)" in rows["gbdt"]["reason"]
    assert rows["lora + gbdt"]["reason"].startswith("escalated: fits the budget") and "estimated" in \
        rows["lora + gbdt"]["reason"]
    assert "gain_per_minute" in rows["lora + gbdt"]
    assert [r for r in result.rows if r["chosen"]] == [result.chosen]
    assert result.chosen["validation"]["score"] == max(r["validation"]["score"] for r in result.rows)
    # the saved model: the best saveable row, loadable, predicting the test rows as the run's own model did
    assert (tmp_path / "auto" / "leaderboard.md").is_file() and (tmp_path / "auto" / "evaluation.json").is_file()
    board = json.loads((tmp_path / "auto" / "leaderboard.json").read_text())
    assert board["saved_step"] == result.shipped["step"] and result.shipped["kind"] != "baseline"
    loaded = load_fusion(tmp_path / "auto", progress=False)
    assert loaded.predict(test.drop(columns="label")) == result.model.predict(test.drop(columns="label"))


def test_auto_skips_what_the_table_lacks_and_what_the_budget_cannot_hold(tiny_bert_dir):
    import graftkit as gk
    from graftkit.data import load_data

    frame = table_frame(60)
    table = load_data(frame, label="label", text=["title", "review"])  # no tabular column
    result = gk.auto(table, backbones=[str(tiny_bert_dir)], budget="1s", epochs=1)
    rows = _by_strategy(result)
    assert rows["gbdt"]["status"] == "skipped" and "no tabular column" in rows["gbdt"]["reason"]
    assert rows["frozen + gbdt"]["status"] == "ran"  # the first pretrained rung always runs
    assert rows["lora + gbdt"]["status"] == "skipped" and "would not fit the budget" in rows["lora + gbdt"]["reason"]
    numeric = load_data(frame, label="label", text=["review"], numeric=["age"])
    rows = _by_strategy(gk.auto(numeric, backbones=[str(tiny_bert_dir)], budget="10m", ladder=[]))
    assert "lora is not in the ladder" in rows["lora + gbdt"]["reason"]


def test_auto_says_when_the_tabular_columns_alone_win(tiny_bert_dir):
    import random

    from conftest import WORDS

    import graftkit as gk
    from graftkit.data import load_data

    frame = table_frame(100)
    frame["review"] = [" ".join(random.Random(i).sample(WORDS["neutral"], 4)) for i in range(len(frame))]
    frame["age"] = frame["label"].map({"pos": "60", "neg": "30"})  # the label, exactly
    result = gk.auto(load_data(frame, label="label", text=["review"], numeric=["age"]),
                     backbones=[str(tiny_bert_dir)], budget="10m", ladder=[])
    assert result.chosen["strategy"] == "gbdt" and "tabular columns alone beat" in result.message
    assert result.shipped is result.chosen and result.model.featurizer_.roles.media == ()


def test_the_first_frozen_fusion_rung_is_cut_to_the_budget_rather_than_overrunning(tiny_bert_dir, monkeypatch):
    """An extraction slowed to 0.1 s a text (whatever the machine): the timed sample says the 144 training rows
    cannot be embedded within a 12 s budget, so the trees get the rows that fit, stratified, and the run ends on
    time (on every row the same run took 18 s)."""
    import time

    import graftkit as gk
    from graftkit.data import load_data
    from graftkit.fusion import encoders
    from graftkit.playbook import bounded

    extract = encoders.extract_features

    def slow(backbone, items, **kwargs):
        time.sleep(0.1 * len(items))
        return extract(backbone, items, **kwargs)

    monkeypatch.setattr(encoders, "extract_features", slow)
    monkeypatch.setattr(bounded, "MIN_FUSION_ROWS", 20)
    drawn, subsample = [], bounded._subsample
    monkeypatch.setattr(bounded, "_subsample", lambda *args: drawn.append(subsample(*args)) or drawn[-1])
    table = load_data(noisy_frame(160), label="label", text=["title", "review"], numeric=["age"])
    result = gk.auto(table, backbones=[str(tiny_bert_dir)], budget="12s", val_size=0.1, ladder=[], refit=False,
                     batch_size=8)
    rung = _by_strategy(result)["frozen + gbdt"]
    assert rung["status"] == "ran" and 20 <= rung["train_rows"] < 144, rung["reason"]
    assert f"subsample of {rung['train_rows']} of the 144 training rows" in rung["reason"]
    assert "timed on 16 rows" in rung["reason"]
    assert len(drawn) == 1 and len(drawn[0]) == rung["train_rows"]
    counts, share = drawn[0].frame["label"].value_counts(), (table.frame["label"] == "pos").mean()
    assert abs(counts["pos"] - share * len(drawn[0])) <= 1.5 and counts["neg"] > 0  # stratified: the classes' shares
    assert any(s["action"] == "budget" and s["reason"].startswith("first frozen fusion fitted on")
               for s in result.steps)
    linear = _by_strategy(result)["frozen + linear"]
    assert linear["status"] == "skipped" or linear["train_rows"] == rung["train_rows"]  # the same rows, or none
    assert result.seconds <= result.budget_s + 1.5


def test_the_first_frozen_fusion_rung_sees_every_row_when_the_budget_allows(tiny_bert_dir):
    import graftkit as gk
    from graftkit.data import load_data

    table = load_data(noisy_frame(60), label="label", text=["title", "review"], numeric=["age"])
    result = gk.auto(table, backbones=[str(tiny_bert_dir)], budget="10m", ladder=[], refit=False, batch_size=8)
    rows = _by_strategy(result)
    assert rows["frozen + gbdt"]["train_rows"] == rows["frozen + linear"]["train_rows"] == 48
    assert "subsample" not in rows["frozen + gbdt"]["reason"]
    assert any(s["action"] == "budget" and s["reason"].startswith("first frozen fusion: 48 training + 12 other rows")
               and "fit the budget" in s["reason"] for s in result.steps)


# -- report -----------------------------------------------------------------------------------------------------
def test_report_of_a_fusion_directory_has_the_importance_of_each_group(tiny_bert_dir, table_csv, tmp_path, capsys):
    out = tmp_path / "fused"
    code = main(["fuse", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--baseline", "--cv", "2", "-o", str(out)])
    assert code == 0 and (out / "evaluation.json").is_file()
    record = json.loads((out / "evaluation.json").read_text())
    assert set(record["metrics"]["feature_groups"]["groups"]) == {"title", "review", "all text", "tabular"}
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Feature-group importance" in page and "<script" not in page
    section = page[page.index("id='feature-groups'"):page.index("id='learning-curve'")]
    for group in ("title", "review", "all text", "tabular"):
        assert f"<td>{group}</td>" in section
    assert "<svg" in section and "accuracy drop" in section
    assert "TF-IDF + SVD + tabular GBDT" in page and "2 folds of the training data" in page
    assert "<td>categorical</td>" in page and "fusion.json" in page  # the fusion manifest, not a Graft's
    # a refit without a test split leaves no stale record behind: the report says there is none
    assert main(["fuse", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--test-size", "0", "-o", str(out), "--overwrite"]) == 0
    assert not (out / "evaluation.json").exists() and main(["report", str(out)]) == 0
    assert "Not measured: no evaluation record" in (out / "report.html").read_text()


def test_a_stale_fusion_record_is_flagged(tiny_bert_dir, table_csv, tmp_path):
    from graftkit.data import load_data
    from graftkit.fusion import FusionModel
    from graftkit.fusion.evaluation import (
        evaluate_fusion,
        read_fusion_evaluation,
        save_fusion_evaluation,
    )

    table = load_data(table_csv, label="label", **ROLES)
    train, test = table.split(0.25, seed=0)
    model = FusionModel({"text": str(tiny_bert_dir)}, **FAST).fit(train)
    model.save(tmp_path / "m")
    save_fusion_evaluation(tmp_path / "m", evaluate_fusion(model, test, train=train, baseline=False))
    assert read_fusion_evaluation(tmp_path / "m")["stale"] is False
    FusionModel({"text": str(tiny_bert_dir)}, **{**FAST, "seed": 1}).fit(table).save(tmp_path / "other")
    (tmp_path / "other" / "evaluation.json").write_bytes((tmp_path / "m" / "evaluation.json").read_bytes())
    assert read_fusion_evaluation(tmp_path / "other")["stale"] is True  # another model's record


# -- CLI auto and bad roles -------------------------------------------------------------------------------------
def test_cli_auto_on_a_multi_input_table_then_predict_and_report(tiny_bert_dir, tmp_path, capsys):
    noisy_frame(80).to_csv(tmp_path / "t.csv", index=False)
    noisy_frame(30, seed=4).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "auto"
    code = main(["auto", str(tmp_path / "t.csv"), "--label", "label", *ROLE_FLAGS, "--backbones",
                 str(tiny_bert_dir), "--budget", "10m", "--ladder", "--test", str(tmp_path / "test.csv"), "-o",
                 str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "frozen + gbdt" in printed and "tfidf-svd + tabular gbdt" in printed
    assert main(["predict", str(out), str(tmp_path / "test.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    assert main(["report", str(out)]) == 0 and "Feature-group importance" in (out / "report.html").read_text()
    code = main(["auto", str(tmp_path / "t.csv"), "--label", "label", "--roles", "infer", "--backbones",
                 str(tiny_bert_dir), "--budget", "10m", "--ladder", "-o", str(out), "--overwrite"])
    assert code == 0 and "age" in json.loads((out / "fusion.json").read_text())["featurizer"]["roles"]["numeric"]


@pytest.mark.parametrize("command", ["auto", "rank", "cv"])
def test_bad_roles_exit_2_with_one_line(tiny_bert_dir, table_csv, tmp_path, capsys, command):
    extra = {"auto": ["--backbones", str(tiny_bert_dir), "-o", str(tmp_path / "o")],
             "rank": ["--backbones", str(tiny_bert_dir)], "cv": ["--backbone", str(tiny_bert_dir)]}[command]
    for roles, message in ((["--text", "review", "--numeric", "review"], "named in --text and --numeric"),
                           (["--text", "review", "--numeric", "title"], "column 'title'"),
                           (["--text", "review", "--categorical", "nope"], "'nope'")):
        code = main([command, str(table_csv), "--label", "label", *roles, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("graftkit: error:") and message in err[0], err


@pytest.mark.slow
def test_real_clothing_reviews_auto_fuses_minilm_with_the_tabular_columns(tmp_path):
    import pandas as pd
    from conftest import shared_path

    import graftkit as gk
    from graftkit.data import load_data
    from graftkit.fusion import load_fusion

    path = shared_path("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).sample(n=300, random_state=0)
    table = load_data(frame.iloc[:240], label="Recommended IND", text=["Title", "Review Text"],
                      numeric=["Age", "Positive Feedback Count"], categorical=["Department Name", "Class Name"])
    result = gk.auto(table, budget="5m", ladder=[], test=frame.iloc[240:], output=tmp_path / "auto")
    rows = {row["strategy"]: row for row in result.rows}
    assert all(rows[s]["status"] == "ran" for s in ("gbdt", "tfidf-svd + tabular gbdt", "frozen + gbdt"))
    assert rows["frozen + gbdt"]["backbone"] == "all-MiniLM-L6-v2"
    # the review text carries the recommendation: fusing it beats the tabular columns alone on validation
    assert rows["frozen + gbdt"]["validation"]["score"] >= rows["gbdt"]["validation"]["score"]
    loaded = load_fusion(tmp_path / "auto", progress=False)
    assert len(loaded.predict(frame.iloc[240:])) == 60


def test_cli_evaluate_on_a_fusion_directory_saves_the_record_the_report_reads(tiny_bert_dir, table_csv, tmp_path,
                                                                               capsys):
    out, test = tmp_path / "fused", tmp_path / "test.csv"
    table_frame(40, seed=3).to_csv(test, index=False)
    assert main(["fuse", str(table_csv), "--label", "label", *ROLE_FLAGS, "--backbone", str(tiny_bert_dir),
                 "--test-size", "0", "-o", str(out)]) == 0
    assert not (out / "evaluation.json").exists()
    capsys.readouterr()
    assert main(["evaluate", str(out), str(test), "--train", str(table_csv), "--save"]) == 0
    printed = capsys.readouterr().out
    assert "feature-group importance" in printed and "tabular" in printed and "baseline" in printed
    record = json.loads((out / "evaluation.json").read_text())
    assert record["kind"] == "fusion" and record["metrics"]["n"] == 40
    assert set(record["metrics"]["feature_groups"]["groups"]) == {"title", "review", "all text", "tabular"}
    assert main(["report", str(out)]) == 0 and "Feature-group importance" in (out / "report.html").read_text()
    # a second --save without --overwrite keeps the record; --target does not apply to several inputs
    assert main(["evaluate", str(out), str(test), "--save"]) == 2
    assert main(["evaluate", str(out), str(test), "--target", str(test)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.json exists" in err and "drop --target" in err and "Traceback" not in err
