"""The report's speech-recognition sections: WER / CER with their bootstrap intervals and the word error counts,
the pretrained model (rung 0, zero-shot) against the adapted one on the fit's validation clips, the most frequent
word errors, and the worst utterances with their word alignment (what was substituted, deleted, inserted)."""

from __future__ import annotations

from graftkit.report.common import card, metrics_of, num, signed, table, task_section
from graftkit.report.svg import esc
from graftkit.tasks import SpeechRecognition

MAX_MISSES = 10
# inline styles: the report's stylesheet is common to every task, these marks are this section's alone
SUBSTITUTED = "background:#fdecec"
DELETED = "background:#fdecec;color:#a02020"
INSERTED = "background:#e6f4ea;color:#1e6b35;text-decoration:none"


def _interval(metrics: dict, key: str) -> str:
    found = metrics.get(f"{key}_interval")
    if not found or found[0] is None:
        return "–"
    return f"{num(found[0])} to {num(found[1])}"


@task_section(SpeechRecognition, "cards")
def cards(record: dict | None) -> str:
    metrics = metrics_of(record)
    out = []
    if metrics.get("wer_interval"):
        out.append(card("WER 95% interval", _interval(metrics, "wer"), "bootstrap over utterances"))
    rung0, adapted = _validation(record)
    if rung0 and adapted and (record or {}).get("model", {}).get("strategy") != "zero-shot":
        out.append(card("validation WER, zero-shot → adapted", f"{num(rung0['wer'], 3)} → {num(adapted['wer'], 3)}",
                        f"n = {esc(adapted.get('n'))}"))
    return "".join(out)


def _validation(record: dict | None) -> tuple[dict | None, dict | None]:
    fit = (record or {}).get("fit_metrics") or {}
    return fit.get("validation_zero_shot"), fit.get("validation")


@task_section(SpeechRecognition, "lead")
def error_rates(record: dict | None) -> str:
    metrics = metrics_of(record)
    if metrics.get("wer") is None:
        return ""
    rates = table(["on the test clips", "value", "95% bootstrap interval"],
                  [["WER (word error rate)", num(metrics["wer"]), _interval(metrics, "wer")],
                   ["CER (character error rate)", num(metrics["cer"]), _interval(metrics, "cer")],
                   ["exact transcripts (share)", num(metrics.get("exact_match")), "–"]], {1})
    words = metrics.get("words") or {}
    counts = table(["word errors", "count"],
                   [["substitutions (S)", words.get("substitutions", "–")], ["deletions (D)", words.get("deletions", "–")],
                    ["insertions (I)", words.get("insertions", "–")],
                    ["reference words (N)", words.get("reference", "–")]], {1})
    note = (f"WER = (S + D + I) / N summed over the {esc(metrics.get('n'))} test utterances (not a mean of "
            f"per-utterance rates); CER the same over characters. Both sides are normalised first: "
            f"{esc(metrics.get('normaliser', ''))}. Interval: {esc(metrics.get('interval', ''))}.")
    return (f"<h2 id='error-rates'>Error rates</h2><div class='row'><div>{rates}</div><div>{counts}</div></div>"
            f"<p class='note' style='max-width:760px'>{note}</p>{_rung_zero(record)}")


def _rung_zero(record: dict | None) -> str:
    rung0, adapted = _validation(record)
    if not rung0:
        return ("<h3>Zero-shot (rung 0) against the adapted model</h3><p class='note'>Not measured: the fit had no "
                "validation clips (--val-size above 0, or --validation FILE).</p>")
    strategy = (record or {}).get("model", {}).get("strategy", "")
    if strategy == "zero-shot" or not adapted:
        return (f"<h3>Zero-shot (rung 0)</h3><p class='note'>The pretrained model as it is, on the fit's "
                f"{esc(rung0.get('n'))} validation clips: WER {num(rung0['wer'])}, CER {num(rung0['cer'])}.</p>")
    rows = [[key.upper(), num(rung0[key]), num(adapted[key]), signed(adapted[key] - rung0[key])]
            for key in ("wer", "cer") if rung0.get(key) is not None and adapted.get(key) is not None]
    shown = table(["on the validation clips", "zero-shot (rung 0)", f"adapted ({esc(strategy)})",
                   "change (lower is better)"], rows, {1, 2, 3})
    return (f"<h3>Zero-shot (rung 0) against the adapted model</h3>{shown}<p class='note'>Both transcribed the "
            f"same {esc(adapted.get('n'))} validation clips of the fit (held out from training), the pretrained model "
            "first.</p>")


@task_section(SpeechRecognition, "lead")
def frequent(record: dict | None) -> str:
    found = metrics_of(record).get("frequent_errors")
    if not found or not any(found.values()):
        return ""
    columns = []
    for kind, header in (("substitutions", "reference → transcript"), ("deletions", "deleted word"),
                         ("insertions", "inserted word")):
        rows = [[esc(words).replace(" -&gt; ", " → "), count] for words, count in found.get(kind, [])]
        if rows:
            columns.append(f"<div><h3>{esc(kind.capitalize())}</h3>{table([header, 'times'], rows, {1})}</div>")
    return (f"<h2 id='frequent-errors'>Frequent word errors</h2><div class='row'>{''.join(columns)}</div>"
            "<p class='note'>From jiwer's word alignment of the normalised texts, over all test utterances.</p>")


def aligned(chunks: list[dict]) -> tuple[str, str]:
    """The reference and the transcript as HTML, each word escaped, the words of each edit marked."""
    ref, hyp = [], []
    for chunk in chunks:
        a, b = [esc(w) for w in chunk["reference"]], [esc(w) for w in chunk["hypothesis"]]
        if chunk["op"] == "equal":
            ref += a
            hyp += b
        elif chunk["op"] == "substitute":
            ref += [f"<u style='{SUBSTITUTED}' title='substituted'>{w}</u>" for w in a]
            hyp += [f"<u style='{SUBSTITUTED}' title='substitution'>{w}</u>" for w in b]
        elif chunk["op"] == "delete":
            ref += [f"<del style='{DELETED}' title='deleted'>{w}</del>" for w in a]
        else:
            hyp += [f"<ins style='{INSERTED}' title='inserted'>+{w}</ins>" for w in b]
    return " ".join(ref), " ".join(hyp)


def _edits(chunks: list[dict]) -> str:
    parts = []
    for chunk in chunks:
        if chunk["op"] == "substitute":
            parts += [f"{esc(a)} → {esc(b)}" for a, b in zip(chunk["reference"], chunk["hypothesis"])]
        elif chunk["op"] == "delete":
            parts += [f"−{esc(w)}" for w in chunk["reference"]]
        elif chunk["op"] == "insert":
            parts += [f"+{esc(w)}" for w in chunk["hypothesis"]]
    runs = []  # a looping decoder repeats one word: "+reliever ×15", not fifteen entries
    for part in parts:
        if runs and runs[-1][0] == part:
            runs[-1][1] += 1
        else:
            runs.append([part, 1])
    return ", ".join(part if times == 1 else f"{part} ×{times}" for part, times in runs)


@task_section(SpeechRecognition, "details")
def worst(record: dict | None) -> str:
    metrics = metrics_of(record)
    found = metrics.get("misses")
    if not found:
        return ("<h2 id='worst-utterances'>Worst utterances</h2><p class='note'>No test utterance has a word error "
                "(after normalisation).</p>" if metrics.get("wer") is not None else "")
    rows = []
    for entry in found[:MAX_MISSES]:
        if entry.get("alignment") is not None:
            reference, transcript = aligned(entry["alignment"])
            edits = _edits(entry["alignment"])
        else:  # a record written before alignments were kept
            reference, transcript, edits = esc(entry["reference"]), esc(entry["transcript"]), "–"
        rate = (entry["word_errors"] / entry["reference_words"]) if entry.get("reference_words") else None
        rows.append([entry["row"], f"{reference}<div class='note'>as written: {esc(entry['reference'])}</div>",
                     f"{transcript}<div class='note'>as written: {esc(entry['transcript'])}</div>", edits,
                     entry["word_errors"], num(rate, 3)])
    shown = table(["row", "reference", "transcript", "word edits", "errors", "WER"], rows, {0, 4, 5}, css="misses")
    return (f"<h2 id='worst-utterances'>Worst utterances</h2><p class='note'>The {len(rows)} test clips with the most "
            "word errors, the normalised texts aligned word by word: <u style='" + SUBSTITUTED + "'>substituted</u>, "
            f"<del style='{DELETED}'>deleted</del> (in the reference), <ins style='{INSERTED}'>+inserted</ins> (in the "
            f"transcript). Row: position in the test data.</p><div class='scroll'>{shown}</div>")
