"""The run-time type checker the test suite applies to every annotated function under ablate/
(setup.cfg: ``--jaxtyping-packages=ablate,tests.typecheck.checker``): beartype with PEP 484's
numeric tower, so an ``int`` passes where a ``float`` is annotated, as Python's typing intends."""

from beartype import BeartypeConf, beartype

checker = beartype(conf=BeartypeConf(is_pep484_tower=True))
