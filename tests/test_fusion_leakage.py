"""Leakage on multi-input tables (fusion/leakage.py): a test row leaks when one training row matches it in every media
column (exact after normalisation, or near by the single-input detectors per column); per-column counts say which
input repeats; the record reaches the fusion evaluation record, the report, `graftkit fuse` / `evaluate` and the
multi-input `auto`. Synthetic tables, tiny BERT."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import DISTINCT_SENTENCES
from test_fusion import FAST, ROLES, table_frame

from graftkit.cli.main import main
from graftkit.data import load_data
from graftkit.errors import DataError
from graftkit.evaluation.leakage import drop_leaked
from graftkit.fusion import FusionModel
from graftkit.fusion.leakage import multi_input_leakage

REVIEWS = DISTINCT_SENTENCES[:16]
TITLES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
          "lima", "mike", "november", "oscar", "papa"]


@pytest.fixture(autouse=True)
def one_openmp_thread(one_thread):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _image(folder, name: str, seed: int) -> str:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)
    return name


def _tables(folder):
    """Ten training rows (title, review, photo, age); ten test rows: 0 a normalised copy of training row 3 (its
    photo a byte-copy under another name), 1 an edited copy of training row 5, 2 training row 8's review alone,
    3 training row 9's photo alone, the rest distinct; every test label differs from its copy's."""
    train = pd.DataFrame({"title": TITLES[:10], "review": REVIEWS[:10],
                          "photo": [_image(folder, f"t{i}.png", i) for i in range(10)],
                          "age": [str(20 + i) for i in range(10)], "label": ["a", "b"] * 5})
    (folder / "copy.png").write_bytes((folder / "t2.png").read_bytes())
    test = pd.DataFrame({"title": ["CHARLIE!", "echo", "zulu", "yankee", *TITLES[10:16]],
                         "review": ["  My cat SLEEPS, on the warm windowsill ", "the train to lisbon leaves at nooon",
                                    REVIEWS[7], "a brand new sentence about nothing", *REVIEWS[10:16]],
                         "photo": ["copy.png", "t4.png", _image(folder, "n2.png", 102), "t8.png",
                                   *[_image(folder, f"n{i}.png", 100 + i) for i in range(4, 10)]],
                         "age": ["99"] * 10, "label": ["b"] * 10})
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    roles = {"text": ["title", "review"], "image": ["photo"], "numeric": ["age"]}
    return (load_data(folder / "train.csv", label="label", **roles),
            load_data(folder / "test.csv", label="label", **roles))


def test_a_row_leaks_only_when_every_media_column_matches_one_training_row(tmp_path):
    train, test = _tables(tmp_path)
    report = multi_input_leakage(train, test)
    assert (report["leaked"], report["exact"], report["text"], report["embedding"]) == (2, 1, 1, 0)
    assert report["test_positions"] == [0, 1] and report["test_rows"] == [1, 2]
    exact, near = report["examples"]
    assert exact["kind"] == "exact" and exact["train_row"] == 3 and exact["similarity"] == 1.0
    assert "photo: " in exact["test_input"] and "copy.png" in exact["test_input"] and "t2.png" in exact["train_input"]
    assert near["kind"] == "text" and near["train_row"] == 5 and 0.9 <= near["similarity"] < 1
    assert report["label_conflicts"] == 2  # both copies carry the other label
    assert "every media column (title, review, photo)" in report["warning"] and "--drop-leaked" in report["warning"]
    assert report["threshold"] is None and report["text_threshold"] == 0.9  # no features given: no cosine detector
    # per column: the review alone (row 3) and the photo alone (row 4) repeat, which is no leak by itself
    columns = report["columns"]
    assert columns["review"]["duplicated"] == 3 and columns["review"]["text"] == 1
    assert columns["photo"]["duplicated"] == 3 and columns["photo"]["exact"] == 3
    assert columns["title"]["duplicated"] == 2 and columns["photo"]["modality"] == "image"
    assert len(drop_leaked(test, report)) == 8


def test_blank_text_cells_match_only_blank_cells_and_an_all_blank_row_never_leaks():
    train = load_data(pd.DataFrame({"title": ["", "", "gamma"], "review": [REVIEWS[0], "", REVIEWS[2]],
                                    "label": ["a", "b", "a"]}), label="label", text=["title", "review"])
    test = load_data(pd.DataFrame({"title": ["", "", "", "beta"], "review": [REVIEWS[0], "", REVIEWS[2], REVIEWS[0]],
                                   "label": ["a", "b", "a", "b"]}), label="label", text=["title", "review"])
    report = multi_input_leakage(train, test)
    assert report["test_positions"] == [0]  # blank + the same review; a blank title is not 'gamma', nor 'beta' blank
    assert report["columns"]["title"]["duplicated"] == 0 and report["columns"]["title"]["blank_test_cells"] == 3
    assert report["columns"]["review"]["duplicated"] == 3  # rows 1, 3, 4 (the all-blank row 2 counts nowhere)


def test_bad_leakage_inputs_are_one_line(tmp_path):
    train, test = _tables(tmp_path)
    with pytest.raises(DataError, match="same media columns for both splits"):
        multi_input_leakage(train, test, {"review": np.zeros((10, 3))}, {})
    with pytest.raises(DataError, match="differ from test's"):
        multi_input_leakage(train, load_data(tmp_path / "test.csv", label="label", text=["title", "review"]))
    tabular = load_data(tmp_path / "test.csv", label="label", numeric=["age"])
    with pytest.raises(DataError, match="only tabular columns"):
        multi_input_leakage(tabular, tabular)
    single = load_data(tmp_path / "test.csv", label="label", text="review")
    with pytest.raises(DataError, match="near_duplicates for a single input"):
        multi_input_leakage(single, single)


def test_the_fusion_record_uses_each_columns_embedding_and_can_drop_the_leaked_rows(tiny_bert_dir):
    from graftkit.fusion.evaluation import evaluate_fusion

    frame = table_frame(60)
    train = load_data(frame.iloc[:40], label="label", **ROLES)
    test = load_data(pd.concat([frame.iloc[40:], frame.iloc[:4]], ignore_index=True), label="label", **ROLES)
    model = FusionModel({"text": str(tiny_bert_dir)}, **FAST).fit(train)
    record = evaluate_fusion(model, test, train=train, baseline=False)
    leak = record["leakage"]
    assert leak["exact"] >= 4 and {20, 21, 22, 23} <= set(leak["test_positions"])
    assert "feature cosine >= 0.98" in leak["method"] and leak["threshold"] == 0.98
    assert set(leak["columns"]) == {"title", "review"} and "tabular columns are not compared" in leak["scope"]
    # a cosine threshold every pair passes: every row with a title matches its title's nearest training row in both
    # columns (a blank title matches only a blank one, so rows without a title may not)
    everything = evaluate_fusion(model, test, train=train, baseline=False, leakage_threshold=-1.0)["leakage"]
    titled = int((test.frame["title"] != "").sum())
    assert everything["leaked"] >= titled and everything["embedding"] > 0 and "may be too low" in everything["warning"]
    dropped = evaluate_fusion(model, test, train=train, baseline=False, drop_leaked=True)
    assert dropped["leakage"]["dropped"] is True
    assert dropped["test"]["rows_after_dropping_leaked"] == dropped["metrics"]["n"] == len(test) - leak["leaked"]
    assert evaluate_fusion(model, test)["leakage"]["skipped"].startswith("no training data")
    off = evaluate_fusion(model, test, train=train, leakage=False, baseline=False)["leakage"]
    assert "turned off" in off["skipped"]


def test_fuse_prints_the_leakage_and_the_report_renders_it_per_column(tiny_bert_dir, tmp_path, capsys):
    frame = table_frame(40)
    pd.concat([frame, frame.iloc[:20]], ignore_index=True).to_csv(tmp_path / "t.csv", index=False)  # 20 rows twice
    out = tmp_path / "fused"
    code = main(["fuse", str(tmp_path / "t.csv"), "--label", "label", "--text", "title", "review", "--numeric", "age",
                 "--backbone", str(tiny_bert_dir), "--test-size", "0.4", "-o", str(out), "--json", "--threads", "1"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["leakage"]["leaked"] > 0 and result["leakage"]["exact"] > 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["leakage"]["leaked"] == result["leakage"]["leaked"]
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    section = page[page.index("id='leakage'"):page.index("id='cv'")]
    assert "Not checked" not in section and "Per input column" in section and "<td>review</td>" in section
    assert "review: " in section and "Leakage:</b>" in page  # the examples name each column; the warning is shown


def test_cli_evaluate_on_a_fusion_directory_checks_leakage_with_the_training_file(tiny_bert_dir, tmp_path, capsys):
    frame = table_frame(60)
    frame.iloc[:40].to_csv(tmp_path / "train.csv", index=False)
    test = pd.concat([frame.iloc[40:], frame.iloc[:3]], ignore_index=True)
    test.loc[1, "label"] = "NA"  # dropped by --drop-missing, refused without it
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "fused"
    role_flags = ["--text", "title", "review", "--numeric", "age", "--categorical", "dept", "--threads", "1"]
    assert main(["fuse", str(tmp_path / "train.csv"), "--label", "label", *role_flags, "--backbone",
                 str(tiny_bert_dir), "--test-size", "0", "-o", str(out)]) == 0
    capsys.readouterr()
    flags = ["--train", str(tmp_path / "train.csv"), "--threads", "1"]
    assert main(["evaluate", str(out), str(tmp_path / "test.csv"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test.csv" in err[0] and "row 2" in err[0] and "--drop-missing" in err[0]
    assert main(["evaluate", str(out), str(tmp_path / "test.csv"), *flags, "--drop-missing", "--no-baseline",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 22 and printed["leakage"]["exact"] >= 3 and "skipped" in printed["baseline"]
    assert main(["evaluate", str(out), str(tmp_path / "test.csv"), *flags, "--drop-missing", "--drop-leaked"]) == 0
    assert "; dropped before scoring" in capsys.readouterr().out


def test_auto_checks_validation_and_test_rows_for_leakage_before_the_rungs(tiny_bert_dir, tmp_path):
    import random

    import graftkit as gk

    frame = table_frame(60)
    frame["age"] = [str(random.Random(i).randint(20, 70)) for i in range(len(frame))]  # the review carries the label
    test = pd.concat([table_frame(20, seed=7), frame.iloc[:5]], ignore_index=True)
    result = gk.auto(load_data(frame, label="label", **ROLES), backbones=[str(tiny_bert_dir)], budget="10m",
                     ladder=[], refit=False, test=test, output=tmp_path / "auto")
    assert set(result.leakage) == {"validation", "test"}
    found = result.leakage["test"]
    assert found["leaked"] >= 1 and found["n_test"] == 25 and set(found["columns"]) == {"title", "review"}
    steps = [s for s in result.steps if s["action"] == "leakage"]
    assert [s["reason"].split(":")[0] for s in steps] == ["validation", "test"]
    assert "the test figures are optimistic" in steps[1]["reason"]
    first_rung = next(i for i, s in enumerate(result.steps) if s["action"].startswith("tabular columns"))
    assert result.steps.index(steps[1]) < first_rung  # checked before any rung ran
    board = json.loads((tmp_path / "auto" / "leaderboard.json").read_text())
    assert board["leakage"]["test"]["leaked"] == found["leaked"]
    record = json.loads((tmp_path / "auto" / "evaluation.json").read_text())
    assert record["leakage"]["leaked"] >= 1 and "feature cosine" in record["leakage"]["method"]
