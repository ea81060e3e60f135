"""Class descriptions: the text each class is embedded from (zero-shot similarity, label-initialised heads).

A description file maps class -> text, as JSON (``{"spam": "an advertisement or scam"}``) or a two-column CSV
(header ``class,description``, or no header). A ``template`` such as ``"This message is about {}."`` wraps every
description (``{}`` = the description). Without a file the class names themselves are the descriptions, but
only when they mean something (``meaningful_names``).

The rule for a meaningful class name (decided here, documented in ARCHITECTURE.md): every class name must
contain a run of at least two letters and none may be an id — a number (``0``, ``3.0``), a single letter, or
an enumerated placeholder (``LABEL_3``, ``class 2``, ``c7``, ``cat_1``, ``y0``, ``target-4``). One meaningless
name makes all of them unusable (a zero-shot model that can only tell some classes apart is a silently wrong
model). Underscores and hyphens in names read as spaces (``card_arrival`` -> ``card arrival``).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from graftkit.errors import ConfigError, DataError

PLACEHOLDER = re.compile(r"^(label|class|cls|cat|category|target|y|c|l|id|group|type)[\s_\-]*\d+$", re.IGNORECASE)
LETTERS = re.compile(r"[^\W\d_]{2,}")
FLAG = "--label-descriptions"


def meaningless_name(name: str) -> bool:
    """Whether ``name`` is an id rather than words (see the module's rule)."""
    text = str(name).strip()
    return not LETTERS.search(text) or bool(PLACEHOLDER.match(text))


def meaningful_names(classes) -> bool:
    """Whether the class names themselves can serve as descriptions (every one of them meaningful)."""
    classes = list(classes)
    return bool(classes) and not any(meaningless_name(c) for c in classes)


def name_as_text(name: str) -> str:
    return re.sub(r"[_\-]+", " ", str(name)).strip()


def read_descriptions(source) -> dict[str, str]:
    """class -> description from a JSON / CSV file path, or a mapping given directly (library use)."""
    if isinstance(source, dict):
        mapping, where = dict(source), "label_descriptions"
    else:
        path, where = Path(source).expanduser(), str(source)
        if not path.is_file():
            raise DataError(f"{FLAG} {where}: no such file; give a JSON object or a class,description CSV")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{FLAG} {where}: not valid JSON ({exc.msg} at line {exc.lineno}); write an object "
                                'such as {"spam": "an advertisement"}') from None
            if not isinstance(mapping, dict):
                raise DataError(f"{FLAG} {where}: the JSON must be an object class -> description, not a "
                                f"{type(mapping).__name__}")
        else:
            rows = [r for r in csv.reader(text.splitlines()) if any(cell.strip() for cell in r)]
            if rows and [c.strip().lower() for c in rows[0][:2]] in (["class", "description"],
                                                                   ["label", "description"]):
                rows = rows[1:]
            mapping = {}
            for number, row in enumerate(rows, start=1):
                if len(row) != 2:
                    raise DataError(f"{FLAG} {where}: row {number} has {len(row)} cells; each row is "
                                    "class,description (quote a description that holds a comma)")
                if row[0].strip() in mapping:
                    raise DataError(f"{FLAG} {where}: class {row[0].strip()!r} is described twice (row {number})")
                mapping[row[0].strip()] = row[1]
    out = {}
    for name, description in mapping.items():
        if not isinstance(description, str) or not description.strip():
            raise DataError(f"{FLAG} {where}: class {str(name)!r} has an empty or non-text description")
        out[str(name).strip()] = description.strip()
    if not out:
        raise DataError(f"{FLAG} {where}: no class is described")
    return out


def apply_template(template: str | None, description: str) -> str:
    return template.replace("{}", description) if template else description


def check_template(template: str | None) -> None:
    if template is not None and template.count("{}") != 1:
        raise ConfigError(f"--template must hold exactly one {{}} where the description goes; got {template!r}")


def description_texts(classes, source=None, template: str | None = None) -> list[str]:
    """The text to embed for each of ``classes`` (in order): from ``source`` (checked against the classes: a
    missing class and a described class the data do not have both fail, named), else the names themselves
    when they are meaningful."""
    classes = [str(c) for c in classes]
    if source is None:
        if not meaningful_names(classes):
            bad = next(c for c in classes if meaningless_name(c))
            raise ConfigError(f"class {bad!r} is an id, not words, so class names cannot describe the classes; "
                              f"pass {FLAG} FILE (JSON or CSV: class -> description)")
        return [apply_template(template, name_as_text(c)) for c in classes]
    mapping = read_descriptions(source)
    where = "label_descriptions" if isinstance(source, dict) else str(source)
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise DataError(f"{FLAG} {where}: no description for class {missing[0]!r} ({len(missing)} of "
                        f"{len(classes)} classes missing); add a line for each class")
    extra = sorted(set(mapping) - set(classes))
    if extra:
        raise DataError(f"{FLAG} {where}: describes class {extra[0]!r}, which the data do not have "
                        f"({len(extra)} unknown); the classes are: {', '.join(classes[:10])}"
                        f"{' ...' if len(classes) > 10 else ''}")
    return [apply_template(template, mapping[c]) for c in classes]


def described_classes(source) -> list[str]:
    """The classes a description file names (a zero-shot model fitted without labelled rows)."""
    return list(read_descriptions(source))


def zero_shot_rung(task, label_descriptions=None) -> str | None:
    """Why ``auto`` runs zero-shot as rung 0 for ``task`` (descriptions given, or class names that are words),
    or None when it does not apply."""
    if not getattr(task, "zero_shot", False):
        return None
    if label_descriptions is not None:
        where = "given" if isinstance(label_descriptions, dict) else str(label_descriptions)
        return f"rung 0: class descriptions ({where}), no training"
    if meaningful_names(task.labels):
        return f"rung 0: the class names are words (e.g. {task.labels[0]!r}), so they describe the classes"
    return None
