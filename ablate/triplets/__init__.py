"""Relation triplets: token alignment, spaCy syntactic relations, knowledge graphs, shipped sentences."""
