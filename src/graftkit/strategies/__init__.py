"""Strategies: one config dataclass each, looked up by name. A strategy decides what is trained."""

from graftkit.strategies import efficient, finetune, gradual, linear_probe, lp_ft, seq2seq  # noqa: F401  (register)
from graftkit.strategies import contrastive, zero_shot  # noqa: F401  (register)
from graftkit.strategies.base import StrategyConfig, get_strategy, strategy_names

__all__ = ["StrategyConfig", "get_strategy", "strategy_names"]
