from tests import typecheck  # noqa: F401  (the run-time type checker named in setup.cfg addopts)
