"""ablate: find semantic induction heads and intervene on them (the core of the toolkit).

Main entry points::

    from ablate import load_model, HeadSet, ZeroAblate, MeanAblate, ResampleAblate, Patch, run_conditions
"""

from ablate.errors import AblateError
from ablate.heads import Head, HeadSet
from ablate.interventions import (Condition, MeanAblate, Patch, ResampleAblate, ZeroAblate,
                                  capture_head_outputs, run_conditions, run_intervention)
from ablate.model import ModelHandle, load_model

__all__ = [
    "AblateError", "Head", "HeadSet", "Condition", "MeanAblate", "Patch", "ResampleAblate", "ZeroAblate",
    "capture_head_outputs", "run_conditions", "run_intervention", "ModelHandle", "load_model",
]
