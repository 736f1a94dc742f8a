"""Integration fixtures: ``tiny_series`` lives in tests/conftest.py (shared with tests/reliability)."""
