"""The ``ablate`` console script's commands, one module per command (registered in experiments.cli)."""
