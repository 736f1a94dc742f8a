"""ablate package."""
