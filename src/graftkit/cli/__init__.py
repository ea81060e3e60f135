"""The ``graftkit`` command line: one module per command group, all sharing ``options``."""
