"""The transfer-learning playbook as one call: ``graftkit.auto`` (``graftkit auto`` on the command line)."""

from graftkit.playbook.core import LADDER, STEPS, AutoResult, auto
from graftkit.playbook.budget import parse_budget
from graftkit.playbook.leaderboard import choose, format_markdown, format_text

__all__ = ["LADDER", "STEPS", "AutoResult", "auto", "choose", "format_markdown", "format_text", "parse_budget"]
