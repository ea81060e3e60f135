"""The task registry: kinds by name, inference from the target column, and the saved form."""

from __future__ import annotations

from graftkit.errors import ConfigError

_REGISTRY: dict = {}
# Named from the start so that a request for one of them gets a clear answer until its module exists.
PLANNED_KINDS: tuple[str, ...] = ()
ALIASES = {"asr": "speech-recognition", "ner": "token-classification", "token": "token-classification", "multilabel": "multilabel-classification", "multi-label": "multilabel-classification",
           "multi-label-classification": "multilabel-classification"}


def register_task(cls):
    _REGISTRY[cls.kind] = cls
    return cls


def task_kinds() -> list[str]:
    return list(_REGISTRY)


def task_class(kind: str):
    kind = ALIASES.get(kind, kind)
    if kind in _REGISTRY:
        return _REGISTRY[kind]
    if kind in PLANNED_KINDS:
        raise ConfigError(f"task {kind!r} is not available yet; graftkit builds {', '.join(_REGISTRY)} (--task)")
    raise ConfigError(f"task must be one of {', '.join(_REGISTRY)}; got {kind!r} (--task)")


def infer_task(table, kind: str | None = None, **options):
    """The task of ``table``'s target: ``kind`` when given (``--task``), else the first registered kind that
    claims the target (multi-label for several label columns or delimited label lists, regression for a float
    column with many distinct values), else single-label classification. ``task.reason`` says why."""
    if kind is not None:
        return _check_options(task_class(kind), options).infer(table, **options)
    for cls in _REGISTRY.values():
        reason = cls.claims(table, **options)
        if reason:
            task = _check_options(cls, options).infer(table, **options)
            object.__setattr__(task, "reason", reason)
            return task
    return _check_options(task_class("classification"), options).infer(table, **options)


FLAGS = {"label_sep": "--label-sep", "allow_empty": "--no-empty-labels", "interval": "--interval",
         "loss_function": "--regression-loss", "tag_scheme": "--tag-scheme"}


def _check_options(cls, options: dict):
    """A task option the chosen kind does not take is an error, not silently ignored (a typo, or a setting meant
    for another kind of target)."""
    foreign = sorted(set(options) - set(cls.options))
    if foreign:
        names = ", ".join(f"{name} ({FLAGS.get(name, name)})" for name in foreign)
        owners = sorted({kind for kind, other in _REGISTRY.items() for name in foreign if name in other.options})
        raise ConfigError(f"task option(s) {names} do not apply to a {cls.kind} target"
                          + (f"; they are for {', '.join(owners)}" if owners else "; unknown option")
                          + " (set --task, or drop the option)")
    return cls


def task_from_dict(data, source: str = "manifest.json") -> object:
    """The task saved in a manifest (``source`` names the file); a damaged entry fails as an ``ArtifactError``
    naming the key."""
    from graftkit.errors import ArtifactError

    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise ArtifactError(f"{source}: 'task' must be an object with a 'kind'; got {str(data)[:80]}; refit the model")
    labels = data.get("labels", [])
    if (not isinstance(labels, list) or not all(isinstance(label, str) for label in labels)
            or len(set(labels)) < len(labels)):
        raise ArtifactError(f"{source}: the field 'task.labels' must be a list of distinct strings; got "
                            f"{str(labels)[:80]}; restore the manifest or refit the model")
    try:
        return task_class(data["kind"]).from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: the 'task' entry is damaged ({type(exc).__name__}: {exc}); refit the "
                            "model") from None
