"""Interventions on heads: the operator dataclasses and their registry, and the batched engine."""
