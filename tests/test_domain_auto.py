"""Domain adaptation in ``auto`` and the report (issue 14): ``auto --target`` measures the shift on the first probe's
features; a large one adds DANN and (text) continued-pretraining rungs with their reasons, budgeted like every rung
and chosen by the source validation metric; a small one adds none and says why. The report's domain-shift section
shows a measured shift and nothing without one."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import examples, sentiment_frame
from hypothesis import given, settings
from hypothesis import strategies as st

import graftkit as gk
from graftkit.cli.main import main
from graftkit.errors import ConfigError, DataError
from graftkit.playbook import domain as domain_module
from graftkit.playbook.budget import (
    estimate_pretrain,
    estimate_trainable,
    pretrain_steps_that_fit,
)
from graftkit.report import render_report
from graftkit.report.sections_domain import shift_card, shift_section

# repeated filler lines against sentiment sentences: the tiny BERT's features tell them apart (a real large shift)
FILLER = ["the the the plot plot"] * 12 + ["actor actor movie quite"] * 12


def _noisy(frame: pd.DataFrame, share: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Some labels flipped: no rung reaches validation accuracy 1, so the ladder has something to climb."""
    frame = frame.copy()
    flip = frame.sample(frac=share, random_state=seed).index
    frame.loc[flip, "label"] = frame.loc[flip, "label"].map({"pos": "neg", "neg": "pos"})
    return frame


def _domain_rows(rows):
    return {row["adaptation"]: row for row in rows if row["kind"] == "domain"}


def _large_shift(*args, **kwargs):
    """A shift record as ``evaluation.shift.domain_shift`` writes it, large, without computing it."""
    return {"source": {"data": "train", "rows": 40}, "target": {"data": "target", "rows": 40},
            "proxy_a_distance": {"pad": 1.9, "error": 0.025, "rows": 40},
            "mmd": {"mmd2": 0.4, "bandwidth": 1.0, "p_value": 0.005, "rows": 40}, "large": True,
            "verdict": "large: a linear domain classifier tells source from target with 2.5% error (proxy A-distance "
                       "1.90 of 2)"}


# -- auto ---------------------------------------------------------------------------------------------------------

def test_cli_auto_with_a_shifted_target_adds_dann_and_tapt_rungs_with_their_reasons(tiny_bert_dir, tmp_path, capsys):
    train, target, out = tmp_path / "train.csv", tmp_path / "target.txt", tmp_path / "model"
    _noisy(sentiment_frame(60)).to_csv(train, index=False)
    target.write_text("\n".join(FILLER) + "\n")
    code = main(["-q", "auto", str(train), "--backbones", str(tiny_bert_dir), "--budget", "3m", "--ladder",
                 "finetune", "--epochs", "1", "--target", str(target), "--pretrain-steps", "4", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    board = json.loads((out / "leaderboard.json").read_text())
    shift = board["domain_shift"]
    # measured for real on the probe's frozen features, a step of the log
    assert shift["large"] and shift["proxy_a_distance"]["pad"] > 1.0 and shift["mmd"]["p_value"] < 0.01
    assert shift["target"]["of"] == 24 and shift["backbone"] == str(tiny_bert_dir)
    assert any(step["action"] == "domain shift" and "large" in step["reason"] for step in board["steps"])
    rows = board["rows"]
    domain = _domain_rows(rows)
    assert set(domain) == {"DANN", "TAPT"} and shift["rungs"] == [domain["DANN"]["step"], domain["TAPT"]["step"]]
    ordinary = [row for row in rows if row["kind"] == "trainable"]
    assert max(row["step"] for row in ordinary) < min(row["step"] for row in domain.values())  # after the ladder
    best = max((row for row in ordinary if row["status"] == "ran"), key=lambda r: r["validation"]["score"],
               default=None)
    strategy = best["strategy"] if best else "lp-ft"
    for row in domain.values():
        assert row["status"] == "ran", row["reason"]
        assert row["strategy"] == strategy and row["validation"]["accuracy"] is not None
        assert row["reason"].startswith("domain rung: shift large: PAD ")
        assert "MMD p=" in row["reason"] and "source validation accuracy: the target's labels are unknown" \
            in row["reason"]
        assert row["estimated_s"] > 0 and row["seconds"] > 0
    assert domain["DANN"]["params"]["adapt_to"] == str(target) and domain["DANN"]["backbone"] == str(tiny_bert_dir)
    # TAPT: continued pretraining on the target texts into MODEL-tapt, then the same strategy on that backbone
    tapt_dir = tmp_path / "model-tapt"
    lineage = json.loads((tapt_dir / "graftkit-pretrain.json").read_text())
    assert domain["TAPT"]["backbone"] == str(tapt_dir) and lineage["corpus"]["documents"] == 24
    assert domain["TAPT"]["pretrain"]["steps"] == lineage["steps"] <= 4
    assert "continued masked-LM pretraining (TAPT)" in domain["TAPT"]["reason"]
    assert f"{strategy} + DANN" in printed and f"{strategy} + TAPT" in printed
    markdown = (out / "leaderboard.md").read_text()
    assert f"domain shift to {target}: shift large: PAD" in markdown and "domain rung(s) added" in markdown
    assert gk.load(out).predict(["good great film"])  # whichever rung was saved, it loads


def test_auto_with_a_target_like_the_training_data_adds_no_domain_rung_and_says_why(tiny_bert_dir, tmp_path):
    target = sentiment_frame(40, seed=11)[["text"]]  # the same distribution, other rows
    result = gk.auto(sentiment_frame(60), backbones=[str(tiny_bert_dir)], budget="1m", ladder=[], progress=False,
                     target=target, output=tmp_path / "model")
    shift = result.domain_shift
    assert not shift["large"] and "verdict" in shift
    assert not [row for row in result.rows if row["kind"] == "domain"]
    assert shift["decision"].startswith("no domain rung: the shift is not large (") and shift["rungs"] == []
    assert any(step["action"] == "domain" and step["reason"] == shift["decision"] for step in result.steps)
    assert "no domain rung: the shift is not large" in (tmp_path / "model" / "leaderboard.md").read_text()
    assert not (tmp_path / "model-tapt").exists()


def test_domain_rungs_that_cannot_fit_the_budget_are_skipped_with_the_reason(tiny_bert_dir, monkeypatch, tmp_path):
    from graftkit.playbook.steps import Run

    monkeypatch.setattr(domain_module, "domain_shift", _large_shift)
    # 0.5 s per row whatever the machine: the shift sample fits 60 s, not even 1 epoch of finetune on 48 rows does
    monkeypatch.setattr(Run, "_measure_forward", lambda self, spec, model, embedded: self.forward_s.__setitem__(spec, 0.5))
    result = gk.auto(_noisy(sentiment_frame(60)), backbones=[str(tiny_bert_dir)], budget="60s", epochs=100_000,
                     ladder=["finetune"], progress=False, target=FILLER, pretrain_output=tmp_path / "tapt")
    domain = _domain_rows(result.rows)
    assert {row["status"] for row in domain.values()} == {"skipped"}
    assert domain["DANN"]["strategy"] == "lp-ft"  # no trainable rung ran
    assert "DANN would not fit the budget" in domain["DANN"]["reason"] and domain["DANN"]["estimated_s"] > 30
    assert "would not fit the budget" in domain["TAPT"]["reason"] and domain["TAPT"]["estimated_s"] > 30
    assert "lp-ft, since no trainable rung ran" in result.domain_shift["decision"]


def test_a_python_target_without_output_runs_dann_and_says_why_no_tapt(tiny_bert_dir, monkeypatch):
    monkeypatch.setattr(domain_module, "domain_shift", _large_shift)
    result = gk.auto(_noisy(sentiment_frame(50)), backbones=[str(tiny_bert_dir)], budget="2m", epochs=1, ladder=[],
                     progress=False, target=FILLER)
    domain = _domain_rows(result.rows)
    assert domain["DANN"]["status"] == "ran", domain["DANN"]["reason"]
    assert domain["DANN"]["strategy"] == "lp-ft"
    assert domain["DANN"]["params"]["adapt_to"].endswith("target.csv")  # the in-memory target, written for the fit
    assert domain["DANN"]["parameters"]["share"] > 0.9  # lp-ft trains every group; the domain classifier is not counted
    assert domain["TAPT"]["status"] == "skipped" and "nowhere to keep it" in domain["TAPT"]["reason"]


def test_a_tie_on_validation_goes_to_the_unadapted_rung():
    from graftkit.playbook import choose

    plain = {"step": 2, "kind": "trainable", "strategy": "lp-ft", "status": "ran",
             "validation": {"score": 0.8, "macro_f1": 0.8}}
    adapted = {**plain, "step": 3, "kind": "domain", "adaptation": "DANN"}
    assert choose([adapted, plain]) is plain and choose([plain, adapted]) is plain


def test_a_target_of_another_modality_or_a_generative_task_is_refused_before_any_work(tiny_bert_dir, tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(paths[-1])
    images = tmp_path / "images.csv"
    pd.DataFrame({"image": [str(p) for p in paths]}).to_csv(images, index=False)
    with pytest.raises(DataError, match="holds image, but the training data holds text.*--target"):
        gk.auto(sentiment_frame(40), backbones=[str(tiny_bert_dir)], target=str(images), progress=False)
    with pytest.raises(ConfigError, match="--pretrain-steps"):
        gk.auto(sentiment_frame(40), backbones=[str(tiny_bert_dir)], target=FILLER, pretrain_steps=0)


def test_a_target_that_holds_the_test_rows_gives_the_leakage_warning(tiny_bert_dir, tmp_path, caplog):
    test = sentiment_frame(20, seed=9)
    result = gk.auto(sentiment_frame(60), backbones=[str(tiny_bert_dir)], budget="1m", ladder=[], progress=False,
                     test=test, target=test[["text"]])
    assert any("leak" in r.getMessage() and "test" in r.getMessage() for r in caplog.records)
    assert result.domain_shift["test_rows_in_target"] == 1.0


def test_a_pretrained_backbone_directory_in_the_way_fails_before_the_work(tiny_bert_dir, tmp_path):
    (tmp_path / "model-tapt").mkdir()
    (tmp_path / "model-tapt" / "notes.txt").write_text("mine")
    with pytest.raises(gk.ArtifactError, match="model-tapt.*not empty"):
        gk.auto(sentiment_frame(40), backbones=[str(tiny_bert_dir)], target=FILLER, output=tmp_path / "model")


def test_cli_auto_target_missing_or_empty_exits_2_with_one_line(tiny_bert_dir, tmp_path, capsys):
    train, empty = tmp_path / "train.csv", tmp_path / "empty.txt"
    sentiment_frame(30).to_csv(train, index=False)
    empty.write_text("")
    for target, says in ((tmp_path / "absent.txt", "does not exist"), (empty, "empty")):
        code = main(["-q", "auto", str(train), "--backbones", str(tiny_bert_dir), "--target", str(target), "-o",
                     str(tmp_path / "model")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith("graftkit: error:") and says in err[0] and str(target) in err[0]
        assert "--target" in err[0]
    assert not (tmp_path / "model").exists()


# -- the budget of the domain rungs ---------------------------------------------------------------------------------

def test_dann_is_estimated_with_its_target_rows():
    plain, _ = estimate_trainable("lp-ft", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=2)
    dann, basis = estimate_trainable("lp-ft", forward_s_per_row=0.01, train_rows=100, val_rows=20, epochs=2,
                                     target_rows=100)
    assert dann == pytest.approx(plain + 4.0 * 0.01 * 100 * 2) and "(100 + 100 target) rows" in basis


@settings(max_examples=examples(50))
@given(st.floats(0.0, 1e4), st.floats(1e-5, 0.5), st.integers(1, 256), st.floats(0.2, 5.0), st.integers(1, 1000))
def test_pretrain_steps_that_fit_are_the_most_whose_estimate_fits(seconds, forward, batch, correction, most):
    steps = pretrain_steps_that_fit(seconds, forward_s_per_row=forward, batch_size=batch, correction=correction,
                                    most=most)
    assert 0 <= steps <= most

    def cost(n):
        return estimate_pretrain(n, forward_s_per_row=forward, batch_size=batch, correction=correction)[0]

    if steps:
        assert cost(steps) <= seconds * (1 + 1e-9)
    if steps < most:
        assert cost(steps + 1) > seconds * (1 - 1e-9)


# -- the report -----------------------------------------------------------------------------------------------------

def test_the_report_shows_a_measured_domain_shift_and_nothing_without_one(tiny_bert_dir, tmp_path, capsys):
    train, test, target = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "target<b>.txt"
    sentiment_frame(40).to_csv(train, index=False)
    sentiment_frame(20, seed=7).to_csv(test, index=False)
    target.write_text("\n".join(FILLER) + "\n")
    model = tmp_path / "m"
    assert main(["-q", "fit", str(train), "--backbone", str(tiny_bert_dir), "--test-size", "0", "-o", str(model)]) == 0
    assert main(["-q", "evaluate", str(model), str(test), "--no-baseline", "--save", "--overwrite"]) == 0
    assert main(["report", str(model)]) == 0
    html = (model / "report.html").read_text(encoding="utf-8")
    assert "Domain shift" not in html and "domain shift" not in html  # no target given: no section, no card
    assert main(["-q", "evaluate", str(model), str(test), "--train", str(train), "--target", str(target),
                 "--no-baseline", "--save", "--overwrite"]) == 0
    assert main(["report", str(model)]) == 0
    html = (model / "report.html").read_text(encoding="utf-8")
    record = json.loads((model / "evaluation.json").read_text())
    shift = record["domain_shift"]
    section = html.split("<h2 id='domain-shift'>", 1)[1].split("<h2", 1)[0]
    assert f"{shift['proxy_a_distance']['pad']:.3f}" in section and f"{shift['mmd']['mmd2']:.5f}" in section
    assert f"{shift['mmd']['p_value']:.4f}" in section and f"{100 * shift['proxy_a_distance']['error']:.1f}%" in section
    assert f"<td class='n'>{shift['mmd']['rows']}</td>" in section and "/target&lt;b&gt;.txt</td>" in section
    assert "target<b>" not in html  # the file name is escaped
    assert shift["large"] and "--adapt-to TARGET" in section and "graftkit pretrain" in section
    assert "domain shift (proxy A-distance)" in html  # the summary card
    manifest = json.loads((model / "manifest.json").read_text())
    assert "id='domain-shift'" not in render_report(manifest, {**record, "domain_shift": {"skipped": "none given"}})


def test_a_small_shift_section_says_the_test_figures_are_a_fair_guide():
    record = {"domain_shift": {**_large_shift(), "large": False, "proxy_a_distance": {"pad": 0.1, "error": 0.475,
                                                                                      "rows": 40},
                               "mmd": {"mmd2": 0.001, "bandwidth": 1.0, "p_value": 0.4, "rows": 40},
                               "verdict": "none detected: proxy A-distance 0.10 of 2, MMD test p=0.4"}}
    shown = shift_section(record)
    assert "none detected" in shown and "fair guide" in shown and "class='note'" in shown
    assert "none" in shift_card(record) and shift_section({}) == "" and shift_card(None) == ""


@pytest.mark.slow
def test_auto_with_clothing_reviews_as_the_target_of_sst2_adds_a_dann_rung():
    """Real data, real backbone: SST-2 sentences against women's clothing reviews are a large shift (PAD near 2 in
    bench/RESULTS.md), so auto measures it and fits lp-ft + DANN on MiniLM; without a place to keep a pretrained
    backbone (no output), TAPT is skipped and says why."""
    from conftest import shared_path

    sst2 = pd.read_csv(shared_path("data", "sst2", "train.tsv"), sep="\t", quoting=3).head(80)
    reviews = pd.read_csv(shared_path("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv"))
    target = reviews["Review Text"].dropna().head(80).tolist()
    result = gk.auto(sst2.rename(columns={"sentence": "text"}), backbones=["all-MiniLM-L6-v2"], budget="4m",
                     ladder=[], epochs=1, refit=False, progress=False, target=target)
    assert result.domain_shift["large"] and result.domain_shift["proxy_a_distance"]["pad"] > 1.5
    domain = _domain_rows(result.rows)
    assert domain["DANN"]["status"] == "ran", domain["DANN"]["reason"]
    assert domain["DANN"]["reason"].startswith("domain rung: shift large")
    assert domain["DANN"]["validation"]["accuracy"] is not None
    assert domain["TAPT"]["status"] == "skipped"
