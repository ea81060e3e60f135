"""Building blocks of the report's sections: number formatting, tables, summary cards, metric names, and the
registry that task-specific section modules add their sections to. Every value that reaches the HTML goes
through ``esc`` unless it is a number this module formatted."""

from __future__ import annotations

from graftkit.report.svg import esc

# How the report names a metric of the record (a metric the table lacks is shown by its key).
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "micro_f1": "micro-F1", "samples_f1": "samples-F1",
                "subset_accuracy": "subset accuracy", "hamming_loss": "Hamming loss", "r2": "R²", "rmse": "RMSE",
                "mae": "MAE", "spearman": "Spearman ρ", "wer": "WER", "cer": "CER"}
PLACES = ("cards", "lead", "details")  # summary cards; sections before the learning curve; after forgetting
_SECTIONS: dict[str, dict[str, list]] = {}
# a kind of model directory other than a Graft's (a fusion model): its subtitle, extra lead sections, manifest
MODEL_PLACES = ("subtitle", "lead", "manifest")
_MODEL_SECTIONS: dict[str, dict[str, object]] = {}
MODEL_FORMATS = {"graftkit-fusion": "fusion"}  # manifest "format" -> model kind


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key)


def num(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def signed(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def table(headers: list[str], rows: list[list], numeric: set[int] = frozenset(), css: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td class='n'>{cell}</td>" if i in numeric else f"<td>{cell}</td>"
                        for i, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def card(key: str, value: str, detail: str = "") -> str:
    return (f"<div class='card'><div class='k'>{esc(key)}</div><div class='v'>{value}</div>"
            f"<div class='d'>{detail}</div></div>")


def skipped(section: dict | None) -> str | None:
    if section is None:
        return "not in this evaluation record"
    return section.get("skipped")


def metrics_of(record: dict | None) -> dict:
    return (record or {}).get("metrics") or {}


def task_section(task_class, place: str):
    """Decorator: ``render(record) -> html`` is one of ``task_class``'s sections at ``place`` (``PLACES``), in
    the order registered. A kind without a module of its own gets the common sections only."""
    return _registrar(task_class.kind, place)


def _registrar(key: str, place: str):
    if place not in PLACES:
        raise ValueError(f"place must be one of {PLACES}; got {place!r}")

    def register(render):
        _SECTIONS.setdefault(key, {}).setdefault(place, []).append(render)
        return render

    return register


EVERY_TASK = "*"  # the registry key of sections that every task shows (sections_domain.py)


def every_task_section(place: str):
    """Decorator: ``render(record) -> html`` is a section of every task (and of a kind this version lacks) at
    ``place``, after the task's own sections there."""
    return _registrar(EVERY_TASK, place)


def task_sections(task, place: str, record: dict | None) -> str:
    """The HTML of ``task``'s registered sections at ``place``, then those of every task."""
    renders = [*_SECTIONS.get(getattr(task, "kind", None), {}).get(place, ()),
               *_SECTIONS.get(EVERY_TASK, {}).get(place, ())]
    return "".join(render(record) for render in renders)


def model_section(kind: str, place: str):
    """Decorator: ``render(manifest, record, task) -> html`` is the ``place`` (``MODEL_PLACES``) of a model
    directory of ``kind`` (``MODEL_FORMATS``): its subtitle, its lead sections, or its manifest section."""
    if place not in MODEL_PLACES:
        raise ValueError(f"place must be one of {MODEL_PLACES}; got {place!r}")

    def register(render):
        _MODEL_SECTIONS.setdefault(kind, {})[place] = render
        return render

    return register


def model_section_for(manifest: dict, place: str):
    """The registered render of this manifest's model kind at ``place``, or None (a Graft's: the defaults)."""
    return _MODEL_SECTIONS.get(MODEL_FORMATS.get(manifest.get("format"), ""), {}).get(place)
