"""Joint (end-to-end) fusion: one encoder trained by graftkit's one engine (``Graft`` -> ``training/``, any trainable
strategy: lora, finetune, lp-ft, ...) with the row's tabular columns concatenated to its pooled embedding before
the task's output layer, so the encoder learns what the numbers and categories do not already say.

- What the encoder reads: the table's text columns, or, without text, its one image / audio column. Several text
  columns are JOINED into one text per row (``"title | review"``, as the two-stage recipe joins them) rather than
  embedded one by one and concatenated: the engine reads one input per row (one forward pass per row, not one per
  column), and the encoder's attention reads the columns together. The joined text is one feature group.
- The side features (``Examples(side=...)``, ``GraftModel(side_size=...)``) are the ``Featurizer``'s dense layout
  over the other columns: numbers with the training mean for a blank, categories one-hot over the training
  categories (one unseen in training reads as all zeros, i.e. missing, and is noted), any other media column (an
  image beside the text) as its frozen backbone's embedding. The engine fits that featurizer on its training split
  only and standardises [pooled, side] together by fixed training statistics (folded into the exported head).
- Calibration, multi-label thresholds and regression residuals are the ``Graft``'s, fitted on the engine's
  validation split (``val_size``); loss and outputs are the task's, so every task kind works by construction.

``JointFeaturizer`` is what ``FusionModel`` reads as its featurizer: ``transform(table)`` gives the fitted head's
input ``[pooled, side]``, ``groups`` its feature groups (importance), ``state`` / ``save_encoders`` its artifact
(the tuned encoder's own ``Graft`` artifact under ``encoders/0``, the side featurizer's arrays and JSON).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from graftkit.data.roles import Roles
from graftkit.errors import ConfigError
from graftkit.fusion.encoders import FrozenEncoder
from graftkit.fusion.featurize import Featurizer
from graftkit.fusion.tuning import joined_text
from graftkit.graft import Graft
from graftkit.strategies.base import strategy_classes

logger = logging.getLogger(__name__)

LAYOUT = "joint"
JOINT_DEFAULTS = {"epochs": 2, "val_size": 0.1}
DEFAULT_STRATEGY = "lora"


def trained_media(roles: Roles) -> tuple[list[str], str]:
    """The media columns the encoder reads, and their modality: every text column, else the one other column."""
    text = [c for c, m in roles.media if m == "text"]
    if text:
        return text, "text"
    if len(roles.media) == 1:
        return [roles.media[0][0]], roles.media[0][1]
    if not roles.media:
        raise ConfigError("joint fusion trains an encoder on a text / image / audio column, and this table has only "
                          "tabular columns; name one (--text / --image / --audio) or drop --joint")
    raise ConfigError(f"joint fusion trains one encoder: on the text columns joined, or on the table's one image / "
                      f"audio column; this one has {', '.join(repr(c) for c, _ in roles.media)} and no text: keep one "
                      "of them, or use --encoder frozen")


def joint_column(table, columns: list[str]) -> str:
    """The name of the column the encoder reads: the column itself, or the joined ones' names joined."""
    if len(columns) == 1:
        return columns[0]
    name = " | ".join(columns)
    while name in table.frame.columns:
        name += " (joined)"
    return name


def joint_table(table, columns: list[str], modality: str, name: str):
    """``table`` as the engine reads it: the encoder's column first (text cleaned: a blank is the empty text;
    several text columns joined into ``name``), the other columns as they are (the side featurizer reads them)."""
    frame = table.frame.copy()
    if modality == "text":
        frame[name] = joined_text(table, columns)
    others = tuple((c, m) for c, m in table.roles.media if c not in columns)
    roles = Roles(media=((name, modality), *others), numeric=table.roles.numeric,
                  categorical=table.roles.categorical)
    return replace(table, frame=frame, modality=modality, input_column=name, roles=roles, explanation=[])


class JointFeaturizer:
    """The fitted joint model's input: the tuned encoder's pooled features of the joined column, then the side
    features, as the ``Graft`` trained them (``Graft.head_features``)."""

    layout = LAYOUT

    def __init__(self, roles: Roles, trained: list[str], modality: str, column: str, graft, side: Featurizer | None):
        self.roles = roles  # the table's own roles (what predict reads)
        self.trained, self.modality, self.column = list(trained), modality, column
        self.graft, self.side = graft, side
        graft.side_ = side

    @property
    def notes(self) -> list[str]:
        return self.side.notes if self.side is not None else []

    @property
    def groups(self) -> dict[str, list[int]]:
        """Each feature group's columns of ``transform``'s matrix: the pooled features of the encoder's column, then
        each side column's (as the side featurizer last laid them out)."""
        width = self.graft.loaded_backbone().hidden_size
        groups = {self.column: list(range(width))}
        if self.side is not None:
            groups.update({c: [width + i for i in idx] for c, idx in self.side.groups.items()})
        return groups

    @property
    def feature_roles(self) -> Roles:
        """The feature groups' roles: the encoder's (joined) column, the frozen media and the tabular columns."""
        others = tuple((c, m) for c, m in self.roles.media if c not in self.trained)
        return Roles(media=((self.column, self.modality), *others), numeric=self.roles.numeric,
                     categorical=self.roles.categorical)

    def transform(self, table) -> np.ndarray:
        return self.graft.head_features(joint_table(table, self.trained, self.modality, self.column))

    def column_embeddings(self, table) -> dict[str, np.ndarray]:
        """Each media column's own pooled features: the side columns' frozen ones and, when the encoder reads one
        column, the trained encoder's; joined text columns have none of their own (absent)."""
        out = {}
        if self.side is not None and self.side.roles.media:
            out.update(self.side.column_embeddings(table))
        if len(self.trained) == 1:
            view = joint_table(table, self.trained, self.modality, self.column)
            out[self.column] = self.graft.features(view, pooled=True)
        return out

    # -- state -------------------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, side_info = self.side.state() if self.side is not None else ({}, None)
        info = {"layout": LAYOUT, "roles": self.roles.to_dict(), "trained": self.trained, "modality": self.modality,
                "column": self.column, "side": side_info,
                "encoder": {"kind": LAYOUT, "spec": self.graft.backbone, "strategy": self.graft.strategy}}
        # the shape every featurizer's state has, for the evaluation record and the report: each column's encoder
        # (the trained columns share the joint one) and the categories kept
        info["encoders"] = {**{c: info["encoder"] for c in self.trained}, **(side_info or {}).get("encoders", {})}
        info["categories"] = (side_info or {}).get("categories", {})
        return {f"side.{k}": v for k, v in arrays.items()}, info

    def save_encoders(self, folder, info: dict) -> None:
        self.graft.save(folder / "encoders" / "0")
        info["encoder"]["dir"] = "encoders/0"

    @classmethod
    def from_state(cls, arrays: dict, info: dict, graft, side_encoders: dict) -> JointFeaturizer:
        side = None
        if info["side"] is not None:
            side = Featurizer.from_state({k[len("side."):]: v for k, v in arrays.items() if k.startswith("side.")},
                                         info["side"], side_encoders)
        return cls(Roles.from_dict(info["roles"]), info["trained"], info["modality"], info["column"], graft, side)


def fit_joint(model, table, task) -> tuple[JointFeaturizer, Graft]:
    """Train ``model``'s (a ``FusionModel``'s) joint encoder and output layer on ``table``; returns the featurizer
    that reads the fitted model's input and the fitted ``Graft``."""
    trained, modality = trained_media(table.roles)
    specs = {model._spec(c, modality) for c in trained}
    if len(specs) > 1:
        raise ConfigError(f"joint fusion trains one encoder on the text columns joined; columns "
                          f"{', '.join(map(repr, trained))} name different backbones ({', '.join(sorted(specs))}); give "
                          "one text backbone (--backbone SPEC)")
    column = joint_column(table, trained)
    engine_table = joint_table(table, trained, modality, column)
    others = tuple((c, m) for c, m in table.roles.media if c not in trained)
    side_roles = Roles(media=others, numeric=table.roles.numeric, categorical=table.roles.categorical)
    side = None
    if side_roles.columns:
        encoders, by_spec = {}, {}
        for c, m in others:  # frozen embeddings of the other media columns, one encoder per backbone
            spec = model._spec(c, m)
            if spec not in by_spec:
                by_spec[spec] = FrozenEncoder(spec, batch_size=model.batch_size, cache_dir=model.cache_dir,
                                              use_cache=model.use_cache, progress=model.progress, device=model.device)
            encoders[c] = by_spec[spec]
        side = Featurizer(side_roles, encoders, layout="dense")
    strategy = model.strategy or DEFAULT_STRATEGY
    known = {c.name: c for c in strategy_classes()}
    if strategy in known and not getattr(known[strategy], "trainable", False):
        raise ConfigError(f"joint fusion trains the encoder with the output layer; strategy {strategy!r} trains none "
                          "(use lora, finetune, lp-ft, ...; or --encoder frozen for a head on frozen embeddings)")
    logger.info("joint fusion: %s trains %s on %s with %s side input(s) before the output layer", strategy,
                specs.pop(), repr(column), side_roles.describe() or "no")
    graft = Graft(backbone=model._spec(trained[0], modality), strategy=strategy, task=task.kind,
                  task_options=model.task_options, seed=model.seed, batch_size=model.batch_size,
                  device=model.device, progress=model.progress, cache_dir=model.cache_dir, use_cache=model.use_cache,
                  **{**JOINT_DEFAULTS, **model.tune_params})
    graft.fit(engine_table, side=side)
    return JointFeaturizer(table.roles, trained, modality, column, graft, side), graft
