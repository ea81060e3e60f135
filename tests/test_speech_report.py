"""Speech recognition in the evaluation record, `graftkit cv` and `graftkit report`: WER / CER with their
intervals, zero-shot (rung 0) against the adapted model on validation, the worst utterances with jiwer's word
alignment, k folds of WER / CER. The fitted model is the tiny Whisper of test_speech_recognition.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report import parse
from test_speech_recognition import _clips, tiny_whisper  # noqa: F401  (the fixture)

from graftkit.cli.main import main
from graftkit.report import sections_transcripts
from graftkit.scoring.transcripts import edit_counts, frequent_errors, word_alignment

WORDS = ["one", "two", "three", "cat", "dog"]
HOSTILE = "<script>document.title='pwned'</script>"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=6), st.lists(st.sampled_from(WORDS), max_size=6))
def test_alignment_rebuilds_both_sides_and_counts_as_the_error_rate_does(ref, hyp):
    reference, hypothesis = " ".join(ref), " ".join(hyp)
    chunks = word_alignment(reference, hypothesis)
    assert [w for c in chunks for w in c["reference"]] == ref
    assert [w for c in chunks for w in c["hypothesis"]] == hyp
    assert all(c["reference"] == c["hypothesis"] for c in chunks if c["op"] == "equal")
    assert all(len(c["reference"]) == len(c["hypothesis"]) for c in chunks if c["op"] == "substitute")
    edits = {op: sum(len(c["reference"] or c["hypothesis"]) for c in chunks if c["op"] == op)
             for op in ("substitute", "delete", "insert")}
    if ref:  # the error rate's own counts (an empty reference counts every word inserted, as here)
        s, d, i, _, n = edit_counts([reference], [hypothesis])[0]
        assert (edits["substitute"], edits["delete"], edits["insert"], n) == (s, d, i, len(ref))
    errors = frequent_errors([reference], [hypothesis])
    assert sum(c for _, c in errors["substitutions"]) == edits["substitute"]
    assert sum(c for _, c in errors["deletions"]) == edits["delete"]
    assert sum(c for _, c in errors["insertions"]) == edits["insert"]


def test_sections_escape_every_user_string_and_mark_each_edit():
    chunks = [{"op": "equal", "reference": ["one"], "hypothesis": ["one"]},
              {"op": "substitute", "reference": [HOSTILE], "hypothesis": ["<b>x</b>"]},
              {"op": "delete", "reference": ["two"], "hypothesis": []},
              {"op": "insert", "reference": [], "hypothesis": ["&amp;"]}]
    record = {"model": {"strategy": "decoder-only"},
              "fit_metrics": {"validation_zero_shot": {"n": 2, "wer": 0.5, "cer": 0.25},
                              "validation": {"n": 2, "wer": 0.25, "cer": 0.125}},
              "metrics": {"n": 1, "wer": 1.0, "cer": 0.5, "wer_interval": [1.0, 1.0], "cer_interval": [0.5, 0.5],
                          "words": {"reference": 3, "substitutions": 1, "deletions": 1, "insertions": 1},
                          "normaliser": HOSTILE, "exact_match": 0.0,
                          "frequent_errors": {"substitutions": [[f"{HOSTILE} -> x", 1]], "deletions": [["two", 1]],
                                              "insertions": [["&amp;", 1]]},
                          "misses": [{"row": 0, "reference": HOSTILE, "transcript": "<i>hi</i>", "word_errors": 3,
                                      "reference_words": 3, "alignment": chunks}]}}
    html = "".join(render(record) for render in (sections_transcripts.cards, sections_transcripts.error_rates,
                                                 sections_transcripts.frequent, sections_transcripts.worst))
    assert "<script" not in html and "<b>x" not in html and "<i>hi" not in html
    assert "&lt;script&gt;" in html and "&amp;amp;" in html
    reference, transcript = sections_transcripts.aligned(chunks)
    assert "<del" in reference and "two" in reference and "two" not in transcript
    assert "<ins" in transcript and "<ins" not in reference
    assert reference.count("<u ") == transcript.count("<u ") == 1
    assert sections_transcripts._edits([{"op": "insert", "reference": [], "hypothesis": ["la"] * 3}]) == "+la ×3"
    assert "0.2500" in html and "-0.2500" in html  # validation WER: zero-shot 0.5 -> adapted 0.25
    perfect = {"metrics": {**record["metrics"], "wer": 0.0, "misses": []}}
    assert "No test utterance has a word error" in sections_transcripts.worst(perfect)
    tags = {tag for tag, _ in parse(html).tags}
    assert not tags & {"script", "img", "iframe"}


def test_fit_with_cv_then_report_renders_the_transcript_sections(tiny_whisper, tmp_path, capsys):  # noqa: F811
    frame = _clips(tmp_path / "clips", n=9)
    frame.to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "model"
    common = ["--task", "speech-recognition", "--backbone", str(tiny_whisper), "--label", "transcript", "--audio",
              "audio", "--strategy", "decoder-only", "--epochs", "1", "--batch-size", "3", "--learning-rate", "1e-2"]
    assert main(["fit", str(tmp_path / "train.csv"), *common, "--val-size", "0.34", "--patience", "0",
                 "--test-size", "0.34", "--cv", "2", "--learning-curve", "--seeds", "1", "-o", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["fit_metrics"]["validation_zero_shot"]["n"] == 2  # rung 0 measured before training
    assert set(record["fit_metrics"]["validation"]) >= {"wer", "cer"}
    assert record["baseline"]["skipped"] and record["forgetting"]["skipped"]
    cv = record["cv"]
    assert cv["split"].startswith("random over utterances") and sorted(f["n_test"] for f in cv["folds"]) == [2, 3]
    assert all(f["wer"] is not None and f["cer"] is not None for f in cv["folds"])
    assert cv["summary"]["wer"]["mean"] == pytest.approx(np.mean([f["wer"] for f in cv["folds"]]))
    curve = record["learning_curve"]  # refitted at 2 of the 5 training rows, then the fitted model itself
    assert [p["rows"] for p in curve["points"]] == [2, 5] and curve["refits"] == 1 and curve["x"] == "rows"
    assert "decoder-only strategy refitted" in curve["head"]
    metrics = record["metrics"]
    for miss in metrics["misses"]:  # the alignment covers the normalised reference, word for word
        assert sum(len(c["reference"]) for c in miss["alignment"]) == miss["reference_words"]

    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    for anchor in ("error-rates", "worst-utterances", "cv", "transfer", "forgetting", "learning-curve"):
        assert f"<h2 id='{anchor}'>" in html, anchor
    assert "Zero-shot (rung 0) against the adapted model" in html and "adapted (decoder-only)" in html
    assert "random over utterances" in html and "<th>WER</th><th>CER</th>" in html
    assert "Learning curve</h2><div class='row'>" in html and "(1 training run, " in html
    assert "confusion" not in html.lower() and "Per-class results" not in html  # no classification sections


def test_cv_command_runs_speech_recognition_folds(tiny_whisper, tmp_path, capsys):  # noqa: F811
    frame = _clips(tmp_path / "clips", n=4)
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert main(["cv", str(tmp_path / "train.csv"), "--task", "speech-recognition", "--backbone", str(tiny_whisper),
                 "--label", "transcript", "--audio", "audio", "--strategy", "zero-shot", "--folds", "2",
                 "--batch-size", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "speech-recognition" and set(result["summary"]) == {"wer", "cer"}
    assert [f["n_train"] for f in result["folds"]] == [2, 2]
    assert main(["cv", str(tmp_path / "train.csv"), "--task", "speech-recognition", "--backbone", str(tiny_whisper),
                 "--label", "transcript", "--audio", "audio", "--strategy", "zero-shot", "--folds", "5"]) == 2
    assert "4 rows cannot make 5 folds" in capsys.readouterr().err
