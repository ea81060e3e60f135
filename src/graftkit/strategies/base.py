"""Strategy configs: a dataclass each, validated in ``__post_init__``, JSON round-trip, registry by name.

The CLI builds its flags from these same dataclass fields (``field(metadata={"help": ...})``),
so there is never a second schema to keep in step.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from graftkit.errors import ConfigError

_REGISTRY: dict[str, type[StrategyConfig]] = {}


def register_strategy(cls):
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def strategy_classes() -> list[type[StrategyConfig]]:
    return [_REGISTRY[name] for name in strategy_names()]


@dataclasses.dataclass
class StrategyConfig:
    name: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    def prepare(self, backbone, task) -> None:
        """What the strategy needs from the loaded backbone before its head is fitted (zero-shot and the
        label-initialised probe embed the class descriptions here); nothing by default."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def get_strategy(name: str | StrategyConfig, **params) -> StrategyConfig:
    """Build a strategy config by name; unknown names and parameters fail with the valid choices."""
    if isinstance(name, StrategyConfig):
        return dataclasses.replace(name, **params) if params else name
    if name not in _REGISTRY:
        raise ConfigError(f"unknown strategy {name!r}; choose one of: {', '.join(strategy_names())}")
    cls = _REGISTRY[name]
    unknown = sorted(set(params) - set(cls.field_names()))
    if unknown:
        raise ConfigError(f"strategy {name!r} has no parameter {unknown[0]!r}; its parameters are: "
                          f"{', '.join(cls.field_names())}")
    return cls(**params)


def strategy_from_dict(data: dict) -> StrategyConfig:
    data = dict(data)
    return get_strategy(data.pop("name"), **data)
