"""``graftkit report``: one self-contained HTML file rendered from the saved evaluation record, with every
user-supplied string escaped. Opened in headless Chromium (Debian ``chromium``) to check what renders and
that nothing from a malicious label, text or file name runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from conftest import sentiment_frame
from graftkit.cli.main import main

SCRIPT_LABEL = "<script>document.body.setAttribute('data-pwned','1')</script>"
IMG_LABEL = "<img src=x onerror=\"document.title='pwned'\">"
IFRAME_TEXT = "<iframe src=javascript:alert(3)></iframe> good great film"
SECTIONS = ["Calibration", "Precision, recall and ROC", "Learning curve", "Transfer gain", "Forgetting",
            "Confusion matrix",
            "Per-class results", "Leakage", "Cross-validation", "Manifest"]


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
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


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
                 "--save", "--drop-leaked", "--no-baseline", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["leakage"]["dropped"] and "baseline" not in printed
    record = json.loads((copy / "evaluation.json").read_text())
    assert record["metrics"]["n"] == record["test"]["rows_after_dropping_leaked"] == 37 - record["leakage"]["leaked"]
    assert record["baseline"] == {"skipped": "turned off (--no-baseline)"}
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert "The flagged rows were dropped before scoring." in html and "No baseline: turned off" in html
