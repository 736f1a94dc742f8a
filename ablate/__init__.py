"""ablate: find semantic induction heads and intervene on them (the core of the toolkit).

Main entry points::

    from ablate import load_model, HeadSet, ZeroAblate, MeanAblate, ResampleAblate, Patch, run_conditions

Sub-packages, by concept (docs/architecture.md): ``model`` (handle, adapters, head sets, errors),
``intervene`` (operators and the batched engine), ``scores`` (relation index, copying, prefix
matching, selection, controls), ``triplets`` (relations, spaCy syntax, knowledge graphs), ``icl``
(tasks, word lists, metrics, loss reduction), ``testing`` (tiny and planted models, literal oracles).

The names below are imported lazily, so ``import ablate.icl.wordlists`` does not load torch.
"""

from importlib import import_module

_EXPORTS = {
    "AblateError": "ablate.model.errors",
    "Head": "ablate.model.heads",
    "HeadSet": "ablate.model.heads",
    "Condition": "ablate.intervene.operators",
    "MeanAblate": "ablate.intervene.operators",
    "Patch": "ablate.intervene.operators",
    "ResampleAblate": "ablate.intervene.operators",
    "ZeroAblate": "ablate.intervene.operators",
    "capture_head_outputs": "ablate.intervene.engine",
    "run_conditions": "ablate.intervene.engine",
    "run_intervention": "ablate.intervene.engine",
    "ModelHandle": "ablate.model.handle",
    "load_model": "ablate.model.handle",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ablate' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
