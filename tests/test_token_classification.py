"""Token classification: tag schemes, word-piece alignment and windows, the CoNLL reader, the frozen token probe
and the engine on a tiny BERT, predictions with character offsets, and CoNLL-2003 with MiniLM (slow)."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.cli.main import main
from graftkit.errors import ConfigError, DataError
from graftkit.scoring.entities import entities, entity_counts, f1_from_counts
from graftkit.tasks.alignment import plan, word_windows
from graftkit.tasks.tagging import spans_to_tags, to_iob2, words_of

from conftest import SHARED, WORDS

TYPES = ("PER", "LOC")


# -- generated tag sequences ------------------------------------------------------------------------------------
@st.composite
def iob2_sequences(draw, max_len: int = 12):
    tags, inside = [], None
    for _ in range(draw(st.integers(0, max_len))):
        choice = draw(st.sampled_from(["O", "B", "I"] if inside else ["O", "B"]))
        if choice == "O":
            tags.append("O")
            inside = None
        elif choice == "B":
            inside = draw(st.sampled_from(TYPES))
            tags.append(f"B-{inside}")
        else:
            tags.append(f"I-{inside}")
    return tags


def to_bioes(tags: list[str]) -> list[str]:
    out = []
    for i, tag in enumerate(tags):
        following = tags[i + 1] if i + 1 < len(tags) else "O"
        continues = following.startswith("I-")
        if tag.startswith("B-"):
            out.append(("B-" if continues else "S-") + tag[2:])
        elif tag.startswith("I-"):
            out.append(("I-" if continues else "E-") + tag[2:])
        else:
            out.append(tag)
    return out


def to_iob1(tags: list[str]) -> list[str]:
    out = []
    for i, tag in enumerate(tags):
        previous = tags[i - 1] if i else "O"
        if tag.startswith("B-") and previous[2:] != tag[2:]:
            out.append("I-" + tag[2:])  # IOB1 writes B- only after an entity of the same type
        else:
            out.append(tag)
    return out


@settings(max_examples=80, deadline=None)
@given(iob2_sequences())
def test_every_scheme_reads_back_to_the_same_iob2(tags):
    assert to_iob2(to_bioes(tags), "bioes")[0] == tags
    assert to_iob2(to_iob1(tags), "iob1")[0] == tags
    assert to_iob2(tags, "iob2") == (tags, 0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(iob2_sequences(), iob2_sequences()), min_size=1, max_size=6))
def test_entity_counts_give_seqevals_strict_f1(pairs):
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    gold = [g[:min(len(g), len(p))] for g, p in pairs]
    predicted = [p[:len(g)] for g, p in zip(gold, (p for _, p in pairs))]
    gold, predicted = [to_iob2(g, "iob1")[0] for g in gold], [to_iob2(p, "iob1")[0] for p in predicted]
    ours = f1_from_counts(entity_counts(gold, predicted).sum(axis=0))["f1"]
    assert ours == pytest.approx(f1_score(gold, predicted, mode="strict", scheme=IOB2, zero_division=0))


def test_an_i_tag_after_o_in_iob2_is_repaired_and_counted():
    assert to_iob2(["O", "I-PER", "I-PER", "O", "B-LOC"], "iob2") == (["O", "B-PER", "I-PER", "O", "B-LOC"], 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=40), st.integers(1, 14), st.integers(0, 8))
def test_windows_own_every_word_once_within_the_budget(counts, budget, stride):
    windows = plan(counts, budget, stride)
    owned = [w for _, _, a, b in windows for w in range(a, b)]
    assert owned == list(range(len(counts)))
    for begin, end, a, b in windows:
        assert begin <= a < b <= end
        assert end - begin == 1 or sum(min(c, budget) for c in counts[begin:end]) <= budget


def test_spans_become_tags_on_the_words_they_cover():
    words, offsets = words_of("Angela Merkel visited New York.")
    assert words == ["Angela", "Merkel", "visited", "New", "York", "."]
    tags = spans_to_tags([{"start": 0, "end": 13, "label": "PER"}, [22, 30, "LOC"]], offsets, "row 1")
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    with pytest.raises(DataError, match="overlaps another span"):
        spans_to_tags([[0, 6, "PER"], [0, 13, "PER"]], offsets, "row 1")
    with pytest.raises(DataError, match="covers no word"):
        spans_to_tags([[6, 7, "PER"]], offsets, "row 1")


# -- a learnable tagging set for the tiny BERT ------------------------------------------------------------------
def tagged_sentences(n: int = 60, seed: int = 0, length: int = 8) -> list[tuple[list[str], list[str]]]:
    """Sentences whose "pos" words are one-word PER entities and whose LOC entities are two "neg" words (one of
    the first half, then one of the second): each word's tag follows from the word, so a probe can learn it."""
    rng = random.Random(seed)
    first, second = WORDS["neg"][:4], WORDS["neg"][4:]
    out = []
    for _ in range(n):
        words, tags = [], []
        while len(words) < length:
            kind = rng.choice(["neutral", "neutral", "pos", "neg"])
            if kind == "neutral":
                words.append(rng.choice(WORDS["neutral"]))
                tags.append("O")
            elif kind == "pos":
                words.append(rng.choice(WORDS["pos"]))
                tags.append("B-PER")
            else:
                words += [rng.choice(first), rng.choice(second)]
                tags += ["B-LOC", "I-LOC"]
        out.append((words, tags))
    return out


def write_conll(path, sentences) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in sentences:
        lines += [f"{w} NN O {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def conll_files(tmp_path):
    train, test = tmp_path / "train.conll", tmp_path / "test.txt"
    write_conll(train, tagged_sentences(60, seed=0))
    write_conll(test, tagged_sentences(20, seed=1))
    return train, test


def test_conll_reader_reads_sentences_and_names_a_bad_line(tmp_path, conll_files):
    train, test = conll_files
    table = gk.load_data(train)
    assert (table.input_column, table.label_column, len(table)) == ("tokens", "tags", 60)
    assert len(gk.load_data(test)) == 20  # a .txt file of CoNLL columns is sniffed
    bad = tmp_path / "bad.conll"
    bad.write_text("EU NNP B-ORG\nrejects VBZ O\nGerman B-MISC\n")
    with pytest.raises(DataError, match=r"bad.conll: line 3 has 2 column\(s\) where the file's first word line has 3"):
        gk.load_data(bad)


def test_token_probe_fits_predicts_with_offsets_and_round_trips(tmp_path, conll_files, tiny_bert_dir):
    train, test = conll_files
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    assert model.task_.kind == "token-classification" and model.task_.types == ("LOC", "PER")
    metrics = model.evaluate(test)
    assert metrics["f1"] > 0.8 and set(metrics["per_type"]) == set(TYPES)
    assert metrics["calibration"]["unit"] == "words"
    records = model.predict_records(gk.load_data(test))
    table = gk.load_data(test)
    for record, words in zip(records, table.frame["tokens"]):
        assert record["words"] == " ".join(words)
        for entity in json.loads(record["entities"]):
            assert record["words"][entity["start"]:entity["end"]] == entity["text"]
            assert entity["text"] == " ".join(words[entity["first_word"]:entity["last_word"] + 1])
    model.save(tmp_path / "model")
    loaded = gk.load(tmp_path / "model")
    assert loaded.predict(test) == model.predict(test)


def test_a_sentence_longer_than_the_window_is_tagged_word_by_word(tiny_bert_dir):
    from graftkit.backbones import load_backbone
    from graftkit.features.words import extract_word_features

    backbone = load_backbone(str(tiny_bert_dir), max_length=16)
    long_sentence = [random.Random(i).choice(WORDS["neutral"] + WORDS["pos"]) for i in range(50)]
    windows = word_windows(backbone.tokenizer, [long_sentence], backbone.max_length)
    assert len(windows) > 3 and sorted(w for window in windows for w in window.words) == list(range(50))
    assert all(len(window.encoding["input_ids"]) <= 16 for window in windows)
    features = extract_word_features(backbone, [long_sentence, long_sentence[:5]], progress=False)
    assert features[0].shape == (50, 32) and np.isfinite(features[0]).all()
    # a word far from any window edge sees the same context in both sentences' windows: same feature
    short = extract_word_features(backbone, [long_sentence[:5]], progress=False)[0]
    np.testing.assert_allclose(features[1], short, atol=1e-5)


def test_a_text_and_spans_table_trains_and_answers_in_character_offsets(tiny_bert_dir):
    rows = []
    for words, tags in tagged_sentences(50, seed=2):
        text, offsets, spans = " ".join(words), [], []
        position = 0
        for word in words:
            offsets.append((position, position + len(word)))
            position += len(word) + 1
        for kind, a, b in entities(tags):
            spans.append({"start": offsets[a][0], "end": offsets[b - 1][1], "label": kind})
        rows.append({"text": text, "entities": json.dumps(spans)})
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(pd.DataFrame(rows[:40]))
    assert model.task_.kind == "token-classification"
    assert model.evaluate(pd.DataFrame(rows[40:]))["f1"] > 0.7
    record = model.predict_records(["the great movie"])[0]
    assert json.loads(record["entities"])[0]["text"] == "great"


@pytest.mark.parametrize("strategy", ["finetune", "lora"])
def test_engine_strategies_train_and_their_validation_score_is_what_evaluate_gives(conll_files, tiny_bert_dir,
                                                                                  strategy, one_thread):
    train, _ = conll_files
    model = gk.Graft(backbone=str(tiny_bert_dir), strategy=strategy, epochs=2, progress=False,
                     learning_rate=5e-3).fit(train)
    table = gk.load_data(train)
    _, val = model.task_.split(table, test_size=model.strategy_.val_size, seed=0)
    best = model.training_["history"][model.training_["best_epoch"] - 1]["val_f1"]
    assert model.evaluate(val)["f1"] == pytest.approx(best)


def test_bad_token_targets_are_refused_naming_the_row(tmp_path, tiny_bert_dir, conll_files):
    rows = pd.DataFrame({"tokens": [["good", "movie"], ["bad", "film", "x"]],
                         "tags": [["B-PER", "O"], ["B-LOC", "O"]]})
    with pytest.raises(DataError, match="row 2, column 'tags': 2 tags for 3 words"):
        gk.Graft(backbone=str(tiny_bert_dir), task="token-classification").fit(rows)
    rows = pd.DataFrame({"tokens": [["good", "movie"]], "tags": [["PERSON", "O"]]})
    with pytest.raises(DataError, match="'PERSON' is not O or B-/I-/E-/S-"):
        gk.Graft(backbone=str(tiny_bert_dir), task="token-classification").fit(rows)
    train, _ = conll_files
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    unseen = pd.DataFrame({"tokens": [["good", "movie"]], "tags": [["B-ORG", "O"]]})
    with pytest.raises(DataError, match="row 1, column 'tags': entity type of tag 'B-ORG' was not seen"):
        model.evaluate(unseen)


def test_iob2_violations_are_repaired_with_a_warning(tiny_bert_dir, caplog):
    sentences = tagged_sentences(30, seed=3)
    sentences[4] = (["the", "good", "movie"], ["O", "I-PER", "O"])  # I- after O in IOB2 data
    frame = pd.DataFrame({"tokens": [w for w, _ in sentences], "tags": [t for _, t in sentences]})
    task = gk.Graft(backbone=str(tiny_bert_dir)).infer_task(gk.load_data(frame))
    assert task.scheme == "iob2"
    with caplog.at_level(logging.WARNING):
        y = task.encode(gk.load_data(frame))
    assert "1 tag(s) start an entity with I- in IOB2 data (first in row 5)" in caplog.text
    assert task.labels[y[4][1]] == "B-PER"


def test_cli_fits_on_conll_and_predicts_entities(tmp_path, conll_files, tiny_bert_dir, capsys):
    train, test = conll_files
    out = tmp_path / "model"
    assert main(["fit", str(train), "--backbone", str(tiny_bert_dir), "-o", str(out), "--seed", "0"]) == 0
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", str(out), str(test), "-o", str(predictions)]) == 0
    frame = pd.read_csv(predictions)
    assert list(frame.columns) == ["row", "words", "tags", "entities"] and len(frame) == 20
    assert main(["evaluate", str(out), str(test)]) == 0
    assert "entity F1" in capsys.readouterr().out


def test_a_backbone_without_token_features_is_refused(conll_files, tiny_vit_dir, tiny_bert_dir, tmp_path):
    train, _ = conll_files
    with pytest.raises(DataError, match="reads image"):
        gk.Graft(backbone=str(tiny_vit_dir)).fit(train)
    with pytest.raises(ConfigError, match="augment"):
        gk.Graft(backbone=str(tiny_bert_dir), strategy="finetune", augment=True).fit(train)


def test_baseline_and_transfer_gain_on_tags(conll_files, tiny_bert_dir):
    from graftkit.evaluation.baselines import run_baseline, transfer_gain

    train, test = conll_files
    train, test = gk.load_data(train), gk.load_data(test)
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    baseline = run_baseline(train, test, model.task_)
    assert baseline["f1"] > 0.9  # word identity decides the tag here: the word-feature baseline learns it
    y = model.task_.encode(test)
    gain = transfer_gain(model.task_, y, model.outputs(test), baseline["outputs"], n_bootstrap=200)
    assert gain["metric"] == "f1" and gain["ci95"][0] <= gain["gain"] <= gain["ci95"][1]


def test_cross_validation_runs_on_sentences(conll_files, tiny_bert_dir):
    from graftkit.evaluation.cv import cross_validate

    train, _ = conll_files
    result = cross_validate(gk.Graft(backbone=str(tiny_bert_dir), progress=False), gk.load_data(train), k=2)
    assert len(result["folds"]) == 2 and 0.0 <= result["summary"]["f1"]["mean"] <= 1.0


@pytest.mark.slow
def test_conll2003_minilm_token_probe_on_a_real_subset():
    path = SHARED / "data" / "conll2003"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    train = gk.load_data(path / "train.txt").head(400)
    test = gk.load_data(path / "test.txt").head(300)
    model = gk.Graft(progress=False).fit(train)
    metrics = model.evaluate(test)
    # the frozen probe of a lower-cased sentence encoder is the weak rung (bench/RESULTS.md: 0.59 on 4,000 sentences)
    assert metrics["f1"] > 0.35 and metrics["token_accuracy"] > 0.8 and set(metrics["per_type"]) >= {"LOC", "PER"}


def test_report_and_auto_on_a_tagging_set(tmp_path, conll_files, tiny_bert_dir):
    from graftkit.playbook import auto

    train, test = conll_files
    out = tmp_path / "model"
    assert main(["fit", str(train), "--backbone", str(tiny_bert_dir), "-o", str(out)]) == 0
    assert main(["report", str(out), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "Entities per type" in html and "Types taken for types" in html and "Calibration of word tags" in html
    result = auto(train, backbones=[str(tiny_bert_dir)], budget="5m", test=test, ladder=["finetune"],
                  epochs=1, output=tmp_path / "auto")
    ran = [row for row in result.rows if row["status"] == "ran"]
    assert len(ran) >= 2, result.rows  # the baseline and at least the probe
    assert result.chosen is not None and result.model.task_.kind == "token-classification"
    assert (tmp_path / "auto" / "manifest.json").is_file()


def test_learning_curve_counts_labelled_sentences(conll_files, tiny_bert_dir):
    from graftkit.evaluation.learning_curve import measure_learning_curve

    train, test = conll_files
    model = gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train)
    curve = measure_learning_curve(model, gk.load_data(train), gk.load_data(test), seeds=2)
    sizes = [point["n"] if "n" in point else point.get("rows") for point in curve["points"]]
    assert sizes[0] == 25 and sizes[-1] == 60, curve["points"]
    assert curve["metric"] == "f1"


def test_a_crashed_tagging_run_resumes_to_the_uninterrupted_model(conll_files, tiny_bert_dir, tmp_path, one_thread):
    from conftest import assert_resume_reproduces

    assert_resume_reproduces(tiny_bert_dir, gk.load_data(conll_files[0]), tmp_path)


def test_the_server_answers_a_tagger_with_entities(conll_files, tiny_bert_dir, tmp_path):
    from fastapi.testclient import TestClient

    from graftkit.serving.app import create_app
    from graftkit.serving.models import load_served

    train, _ = conll_files
    gk.Graft(backbone=str(tiny_bert_dir), progress=False).fit(train).save(tmp_path / "ner")
    with TestClient(create_app(load_served({"ner": tmp_path / "ner"}))) as client:
        answer = client.post("/v1/models/ner/predict", json={"inputs": [{"tokens": "the great movie"}]})
    assert answer.status_code == 200, answer.text
    record = answer.json()["predictions"][0]
    assert record["tags"] == "O B-PER O" and json.loads(record["entities"])[0]["text"] == "great"


def test_a_word_the_tokenizer_drops_reads_as_unknown(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert tokenizer.tokenize("\u200b") == []  # a zero-width space gives no token at all
    window = word_windows(tokenizer, [["good", "\u200b", "movie"]], max_length=16)[0]
    assert window.words == [0, 1, 2] and len(set(window.positions)) == 3
    assert tokenizer.convert_ids_to_tokens(window.encoding["input_ids"][window.positions[1]]) == tokenizer.unk_token
