"""The report's token-classification sections: entity precision / recall / F1 per type, which types were taken
for which (and the entities missed or invented), word-level calibration, and sentences the model got wrong."""

from __future__ import annotations

from graftkit.report.common import card, metrics_of, num, signed, table, task_section
from graftkit.report.svg import esc, reliability_svg
from graftkit.tasks import TokenClassification

MAX_MISSES = 10


@task_section(TokenClassification, "cards")
def cards(record: dict | None) -> str:
    metrics = metrics_of(record)
    if metrics.get("token_accuracy") is None:
        return ""
    return card("token accuracy", num(metrics["token_accuracy"]), f"{metrics.get('entities', '–')} test entities")


@task_section(TokenClassification, "lead")
def per_type(record: dict | None) -> str:
    metrics = metrics_of(record)
    if not metrics.get("per_type"):
        return ""
    rows = [[esc(kind), num(r["precision"], 3), num(r["recall"], 3), num(r["f1"], 3), r["support"]]
            for kind, r in sorted(metrics["per_type"].items(), key=lambda item: (item[1]["f1"], item[0]))]
    rows.append(["<b>all (micro)</b>", num(metrics["precision"], 3), num(metrics["recall"], 3), num(metrics["f1"], 3),
                 metrics.get("entities", "–")])
    shown = table(["entity type", "precision", "recall", "F1", "entities (support)"], rows, {1, 2, 3, 4},
                  css="per-type")
    return (f"<h2 id='per-type'>Entities per type</h2><p class='note'>Entity-level scores in seqeval's strict IOB2 "
            f"mode: an entity counts when its type and its exact words match. Worst F1 first.</p>{shown}")


@task_section(TokenClassification, "lead")
def confusion(record: dict | None) -> str:
    confusion = metrics_of(record).get("type_confusion")
    if not confusion:
        return ""
    gold = confusion["gold_to_predicted"]
    columns = sorted({k for row in gold.values() for k in row if k != "missed"} | set(gold))
    rows = [[esc(kind), *[row.get(c, 0) for c in columns], row.get("missed", 0)] for kind, row in gold.items()]
    rows.append(["<i>spurious</i>", *[confusion["spurious"].get(c, 0) for c in columns], "–"])
    shown = table(["gold type ↓ / predicted on its span →", *map(esc, columns), "missed"], rows,
                  set(range(1, len(columns) + 2)), css="type-confusion")
    return (f"<h2 id='type-confusion'>Types taken for types</h2><p class='note'>For each gold entity, what the model "
            "predicted on exactly its words: the same type (diagonal), another type, or nothing (missed, which includes "
            "entities found with the wrong boundaries). The last row counts predicted entities on spans that hold no "
            f"gold entity.</p>{shown}")


@task_section(TokenClassification, "lead")
def calibration(record: dict | None) -> str:
    cal = metrics_of(record).get("calibration")
    if not cal or not cal.get("reliability_before"):
        return ""
    chart = reliability_svg(cal["reliability_before"], cal["reliability_after"], ece_before=cal["ece_before"],
                            ece_after=cal["ece_after"], title="Reliability of word tags", width=340, height=250)
    rows = [["ECE", num(cal["ece_before"]), num(cal["ece_after"]), signed(cal["ece_after"] - cal["ece_before"])],
            ["NLL", num(cal["nll_before"]), num(cal["nll_after"]), signed(cal["nll_after"] - cal["nll_before"])]]
    shown = table(["per word", "before", f"after (T = {num(cal['temperature'], 3)})", "change"], rows, {1, 2, 3})
    return (f"<h2 id='calibration'>Calibration of word tags</h2><div class='row'><div class='panel'>{chart}</div>"
            f"<div>{shown}<p class='note' style='max-width:420px'>Every test word is one prediction: confidence is "
            f"the probability of its chosen tag. Status: {esc(cal.get('status', ''))}.</p></div></div>")


def _marked(words: list[str], spans: list) -> str:
    out = [esc(w) for w in words]
    for kind, a, b in spans:
        out[a] = f"<b>[{out[a]}"
        out[b - 1] = f"{out[b - 1]}]<sub>{esc(kind)}</sub></b>"
    return " ".join(out)


@task_section(TokenClassification, "details")
def misses(record: dict | None) -> str:
    found = metrics_of(record).get("misses")
    if not found:
        return ""
    rows = [[entry["row"], _marked(entry.get("words") or [], entry["gold"]) if entry.get("words") else esc(entry["gold"]),
             _marked(entry.get("words") or [], entry["predicted"]) if entry.get("words") else esc(entry["predicted"])]
            for entry in found[:MAX_MISSES]]
    shown = table(["row", "gold entities", "predicted entities"], rows, {0}, css="misses")
    return (f"<h2 id='misses'>Sentences with a miss</h2><p class='note'>The first {len(rows)} test sentences whose "
            f"entities differ from the gold ones.</p><div class='scroll'>{shown}</div>")
