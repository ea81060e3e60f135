"""Strategies: one config dataclass each, looked up by name. A strategy decides what is trained."""

from graftkit.strategies import linear_probe  # noqa: F401  (registers the strategy)
from graftkit.strategies.base import StrategyConfig, get_strategy, strategy_names

__all__ = ["StrategyConfig", "get_strategy", "strategy_names"]
