"""Test helpers that ship with the package: tiny random models, planted-weight models, literal oracles."""
