"""``graftkit report``: one self-contained HTML file rendered from the saved evaluation record, with every
user-supplied string escaped. Opened in headless Chromium (Debian ``chromium``) to check what renders and
that nothing from a malicious label, text or file name runs. Multi-label and regression models get their own
sections (and none of classification's), built from real evaluation records of tiny models."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_frame
from test_tasks import scored_frame, tagged_frame

import graftkit as gk
from graftkit.cli.main import main
from graftkit.evaluation.cv import cross_validate
from graftkit.evaluation.suite import evaluate_model, save_evaluation
from graftkit.report import sections_multilabel, sections_regression

SCRIPT_LABEL = "<script>document.body.setAttribute('data-pwned','1')</script>"
IMG_LABEL = "<img src=x onerror=\"document.title='pwned'\">"
IFRAME_TEXT = "<iframe src=javascript:alert(3)></iframe> good great film"
SECTIONS = ["Calibration", "Precision, recall and ROC", "Learning curve", "Transfer gain", "Forgetting",
            "Confusion matrix",
            "Per-class results", "Leakage", "Cross-validation", "Manifest"]
MULTILABEL_SECTIONS = ["Decision thresholds: tuned against 0.5", "Per-label calibration", "Learning curve",
                       "Transfer gain", "Forgetting", "Per-label results", "Leakage", "Cross-validation", "Manifest"]
REGRESSION_SECTIONS = ["Residuals", "Prediction intervals", "Learning curve", "Transfer gain", "Forgetting",
                       "Leakage", "Cross-validation", "Manifest"]
CLASSIFICATION_ONLY = ("Confusion matrix", "Per-class results", "Precision, recall and ROC", "ECE (15 bins)",
                       "test accuracy", "per class")


class Elements(HTMLParser):
    """Tags with their attributes, and text grouped by the nearest h1 / h2 / td / th / text element."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2", "td", "th", "text", "title"):
            self._open.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag):
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data):
        if self._open:
            self.text[self._open[-1]][-1] += data

    def count(self, tag: str) -> int:
        return sum(1 for name, _ in self.tags if name == tag)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def report_dir(tiny_bert_dir, tmp_path_factory):
    """A model fitted through the CLI on data whose labels, texts and file name are HTML / script."""
    folder = tmp_path_factory.mktemp("report")
    frame = sentiment_frame(120, seed=0)
    frame["label"] = frame["label"].map({"pos": SCRIPT_LABEL, "neg": IMG_LABEL})
    extra = pd.DataFrame({"text": [IFRAME_TEXT] * 2, "label": [SCRIPT_LABEL] * 2})
    train = pd.concat([frame.iloc[:84], extra.iloc[:1]], ignore_index=True)
    test = pd.concat([frame.iloc[84:], extra.iloc[1:]], ignore_index=True)  # an exact duplicate across splits
    train_file, test_file = folder / "reviews<i>.csv", folder / "test.csv"
    train.to_csv(train_file, index=False)
    test.to_csv(test_file, index=False)
    model = folder / "model"
    code = main(["-q", "fit", str(train_file), "--test", str(test_file), "--backbone", str(tiny_bert_dir), "-o",
                 str(model), "--learning-curve", "--shots", "4,8,16", "--seeds", "2", "--cv", "3", "--json"])
    assert code == 0
    assert main(["report", str(model)]) == 0
    return model


def test_report_is_self_contained_and_escapes_user_strings(report_dir):
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&lt;/script&gt;" in html
    assert "&lt;iframe src=javascript:alert(3)&gt;" in html
    assert "reviews&lt;i&gt;.csv" in html
    # no external resource: the only URL is the SVG namespace, which is never fetched
    assert {url for url in __import__("re").findall(r"https?://[^\s'\"<>]+", html)} == {"http://www.w3.org/2000/svg"}
    elements = parse(html)
    assert [t for t in elements.text["h2"]] == SECTIONS
    assert elements.count("svg") >= 6 and elements.count("style") == 1 and elements.count("link") == 0

    record = json.loads((report_dir / "evaluation.json").read_text())
    assert record["leakage"]["exact"] >= 1 and record["cv"]["summary"]["accuracy"]["mean"] > 0.5
    assert [p["per_class"] for p in record["learning_curve"]["points"]][:3] == [4, 8, 16]


def test_report_without_evaluation_record_shows_the_manifest(report_dir, tmp_path):
    copy = tmp_path / "bare"
    shutil.copytree(report_dir, copy)
    (copy / "evaluation.json").unlink()
    out = tmp_path / "out" / "bare.html"
    assert main(["report", str(copy), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "No evaluation record in this model directory" in html and "<h2 id='manifest'>Manifest</h2>" in html


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium); the report's escaping "
                "is still checked on the HTML text by the other report tests")


def _run_chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *arguments]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)


def test_report_renders_in_headless_chromium_and_runs_no_user_script(report_dir, tmp_path):
    url = (report_dir / "report.html").resolve().as_uri()
    dom = _run_chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    elements = parse(dom.stdout)
    body = next(attrs for tag, attrs in elements.tags if tag == "body")
    assert "data-pwned" not in body  # the label's script did not run
    assert elements.text["title"][0].startswith("graftkit report")  # nor did the onerror handler
    assert elements.count("script") == 0 and elements.count("img") == 0 and elements.count("iframe") == 0
    assert elements.text["h2"] == SECTIONS
    assert elements.count("svg") >= 6 and elements.count("polyline") >= 3 and elements.count("circle") >= 4
    assert elements.count("rect") > 20  # reliability bins, bars, confusion-matrix cells
    cells = elements.text["td"]
    assert SCRIPT_LABEL in cells and IMG_LABEL in cells  # labels shown as text in the per-class table
    assert any(IFRAME_TEXT in cell for cell in cells)  # the duplicated text in the leakage table
    per_class = dom.stdout.split("class=\"per-class\"", 1)[1].split("</table>", 1)[0]
    assert per_class.count("<tr>") == 1 + 2  # header + one row per class

    shot = tmp_path / "report.png"
    result = _run_chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # drawn content, not a blank page


def test_evaluate_save_rewrites_the_record_for_the_report(report_dir, tmp_path, capsys):
    copy = tmp_path / "model"
    shutil.copytree(report_dir, copy)
    folder = report_dir.parent
    code = main(["evaluate", str(copy), str(folder / "test.csv"), "--train", str(folder / "reviews<i>.csv"),
                 "--save", "--overwrite", "--drop-leaked", "--no-baseline", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["leakage"]["dropped"] and "baseline" not in printed
    record = json.loads((copy / "evaluation.json").read_text())
    assert record["metrics"]["n"] == record["test"]["rows_after_dropping_leaked"] == 37 - record["leakage"]["leaked"]
    assert record["baseline"] == {"skipped": "turned off (--no-baseline)"}
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert "The flagged rows were dropped before scoring." in html and "No baseline: turned off" in html


# -- multi-label and regression ------------------------------------------------------------------------------


def _evaluated_model(folder: Path, bert: Path, frame: pd.DataFrame, label: str) -> Path:
    """A linear probe fitted and evaluated (baseline, learning curve, 3-fold CV) through the Python API, with
    its evaluation.json saved and its report written by the CLI."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFTKIT_CACHE", str(folder / "cache"))
        table = gk.load_data(frame, label=label)
        train, test = gk.infer_task(table).split(table, test_size=0.25, seed=0)
        model = gk.Graft(backbone=str(bert), progress=False).fit(train)
        model.save(folder / "model")
        cv = cross_validate(gk.Graft(backbone=str(bert), progress=False), train, k=3)
        record = evaluate_model(model, test, train=train, learning_curve=True, seeds=2, cv=cv)
    save_evaluation(folder / "model", record)
    assert main(["report", str(folder / "model")]) == 0
    return folder / "model"


@pytest.fixture(scope="module")
def multilabel_dir(tiny_bert_dir, tmp_path_factory):
    """Tags "pos" / "neg" / both / none, the "pos" tag named as a script."""
    frame = tagged_frame(120, seed=0)
    frame["tags"] = frame["tags"].str.replace("pos", SCRIPT_LABEL, regex=False)
    return _evaluated_model(tmp_path_factory.mktemp("report-multilabel"), tiny_bert_dir, frame, "tags")


@pytest.fixture(scope="module")
def regression_dir(tiny_bert_dir, tmp_path_factory):
    """A numeric score whose column name is markup."""
    frame = scored_frame(120, seed=0).rename(columns={"score": "score<b>"})
    return _evaluated_model(tmp_path_factory.mktemp("report-regression"), tiny_bert_dir, frame, "score<b>")


def _section(html: str, anchor: str) -> str:
    """The HTML of the section whose h2 has ``id=anchor``, up to the next h2."""
    return html.split(f"<h2 id='{anchor}'>", 1)[1].split("<h2", 1)[0]


def _cards(html: str) -> list[str]:
    """The names on the summary cards."""
    return [part.split("</div>", 1)[0] for part in html.split("<div class='k'>")[1:]]


def test_multilabel_report_has_per_label_sections_and_no_classification_ones(multilabel_dir):
    html = (multilabel_dir / "report.html").read_text(encoding="utf-8")
    record = json.loads((multilabel_dir / "evaluation.json").read_text())
    metrics = record["metrics"]
    elements = parse(html)
    assert elements.text["h2"] == MULTILABEL_SECTIONS
    assert not any(text in html for text in CLASSIFICATION_ONLY)
    assert _cards(html)[:5] == ["test micro-F1", "macro-F1", "samples-F1", "subset accuracy", "Hamming loss"]
    assert "3-fold CV micro-F1" in _cards(html) and "micro-F1 at a fixed 0.5" in _cards(html)

    # the per-label table: every label, its tuned threshold, support and predicted count
    per_label = parse(html.split("class='per-label'>", 1)[1].split("</table>", 1)[0])
    rows = per_label.text["td"]
    assert len(rows) == 8 * len(metrics["per_label"]) == 16
    for row in metrics["per_label"]:
        at = rows.index(row["label"])
        assert rows[at + 5] == f"{row['threshold']:.3f}" and rows[at + 6] == str(row["support"])
        assert rows[at + 7] == str(metrics["predicted_label_counts"][row["label"]])
    # tuned thresholds against a fixed 0.5, for each headline metric
    comparison = parse(_section(html, "thresholds")).text["td"]
    fixed = metrics["fixed_threshold_0.5"]
    for name, key in (("micro-F1", "micro_f1"), ("macro-F1", "macro_f1"), ("subset accuracy", "subset_accuracy"),
                      ("Hamming loss (lower is better)", "hamming_loss")):
        at = comparison.index(name)
        assert comparison[at + 1: at + 3] == [f"{metrics[key]:.4f}", f"{fixed[key]:.4f}"]
    # one reliability diagram per label (two labels: under the cap), with the per-label ECE table
    calibration = _section(html, "calibration")
    assert calibration.count("<svg") == 2 and "Diagrams: one per label." in calibration
    assert f"{metrics['calibration']['per_label'][0]['ece_after']:.4f}" in calibration
    # the generic sections read the metric from the record
    assert "<th>micro-F1 gain</th>" in _section(html, "transfer")
    assert "<th>Hamming loss change (lower is better)</th>" in _section(html, "transfer")
    assert "<th>train rows</th><th>micro-F1</th>" in _section(html, "learning-curve")
    assert "<th>subset accuracy</th><th>Hamming loss</th>" in _section(html, "cv")


def test_multilabel_report_escapes_label_names(multilabel_dir):
    html = (multilabel_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    escaped = "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&lt;/script&gt;"
    assert escaped in _section(html, "per-label") and escaped in _section(html, "calibration")
    assert "Reliability: &lt;script&gt;document.body.setAttribute(" in html  # the chart's title, shortened
    cells = parse(html).text["td"]
    assert SCRIPT_LABEL in cells  # shown as text


def test_regression_report_has_residuals_and_interval_coverage(regression_dir):
    html = (regression_dir / "report.html").read_text(encoding="utf-8")
    record = json.loads((regression_dir / "evaluation.json").read_text())
    metrics = record["metrics"]
    elements = parse(html)
    assert elements.text["h2"] == REGRESSION_SECTIONS
    assert not any(text in html for text in CLASSIFICATION_ONLY) and "macro-F1" not in html
    assert _cards(html)[:5] == ["test R²", "RMSE", "MAE", "Spearman ρ", "90% interval coverage"]
    assert "3-fold CV R²" in _cards(html)

    residuals = _section(html, "residuals")
    scatter = parse(residuals)
    assert scatter.count("svg") == 1 and scatter.count("circle") == len(metrics["residuals"]["target"]) == 30
    assert scatter.count("polyline") == 3  # y = x and the interval's two edges
    assert "true score&lt;b&gt;" in residuals and "score<b>" not in html
    interval = metrics["interval"]
    coverage = parse(_section(html, "intervals")).text["td"]
    assert coverage[coverage.index("coverage on the test rows") + 1] == f"{interval['coverage']:.1%}"
    assert coverage[coverage.index("nominal level") + 1] == "90%"
    assert coverage[coverage.index("held-out residuals q was read from") + 1] == str(interval["held_out_residuals"])
    assert "<th>R² gain</th>" in _section(html, "transfer") and "<th>RMSE change (lower is better)</th>" in html
    assert "<th>train rows</th><th>R²</th>" in _section(html, "learning-curve")


def test_regression_interval_skipped_says_why():
    record = {"metrics": {"n": 3, "interval": {"level": 0.8, "skipped": "skipped: <no> held-out rows"}}}
    shown = sections_regression.intervals(record)
    assert "No interval at level 0.8000: skipped: &lt;no&gt; held-out rows." in shown
    assert sections_regression.cards(record) == "" and sections_regression.residuals(record) == ""


def test_multilabel_reliability_charts_are_capped_at_the_most_supported_labels():
    bins = [{"lower": 0.5, "upper": 1.0, "confidence": 0.8, "accuracy": 0.7, "count": 4}]
    labels = [f"label {i}" for i in range(15)]
    record = {"metrics": {
        "n": 20, "per_label": [{"label": name, "support": i} for i, name in enumerate(labels)],
        "calibration": {"status": "fitted", "per_label": [
            {"label": name, "temperature": 1.0, "ece_before": 0.1, "ece_after": 0.05, "reliability_before": bins,
             "reliability_after": bins} for name in labels]}}}
    shown = sections_multilabel.calibration(record)
    assert shown.count("<svg") == sections_multilabel.MAX_CHARTS == 12
    assert "the 12 labels with the most positive test rows, of 15" in shown
    assert "Reliability: label 14" in shown and "Reliability: label 2<" not in shown  # the least supported left out
    assert shown.count("<tr>") == 1 + 15  # the ECE table keeps every label


def test_report_of_an_older_record_without_a_task_is_a_classification_report(report_dir, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(report_dir, copy)
    record = json.loads((copy / "evaluation.json").read_text())
    del record["task"]
    (copy / "evaluation.json").write_text(json.dumps(record))
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert parse(html).text["h2"] == SECTIONS
    assert _cards(html)[:2] == ["test accuracy", "macro-F1"] and "3-fold CV accuracy" in _cards(html)
