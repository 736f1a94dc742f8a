"""Fixtures for the data-safety tests: a private hash cache, folder fingerprints, a small spec."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path, monkeypatch):
    """The checkpoint-hash cache goes to the test's own folder, never to the user's home."""
    monkeypatch.setenv("SIH_ABLATE_CACHE", str(tmp_path / "hash-cache"))


def folder_digest(root: Path) -> str:
    """SHA-256 over every file's relative path, size and bytes under ``root`` (what 'unchanged' means)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def series_copy(tiny_series, tmp_path):
    """A private copy of the tiny series (tests may overwrite its weights)."""
    dst = tmp_path / "series"
    shutil.copytree(tiny_series, dst)
    return dst


def small_spec(tmp_path: Path, series: Path, name: str = "safe", **over) -> Path:
    d = {"steps": "[30]", "random_sets": 1, "explicit": None}
    d.update(over)
    heads = (['select = "explicit"', f'explicit = {json.dumps(d["explicit"])}', "induction = false"]
             if d["explicit"] else ['select = "sih"', 'rule = "topk"', "k = 1", "min_events = 1", "induction = false"])
    lines = [f'name = "{name}"', "seed = 0", "[series]", f'path = "{series}"', f'steps = {d["steps"]}',
             "[scores]", "n_sentences = 12", "tau = 0.0", "n_random = 4",
             "[heads]", *heads, "[controls]", f'random_sets = {d["random_sets"]}',
             "[operators]", 'primary = "mean"', "robustness = []",
             "[icl]", 'tasks = ["pd_category_letter"]', f'shots = {json.dumps(d.get("shots", [0, 2]))}',
             "items = 2", "lr_documents = 1"]
    p = tmp_path / f"{name}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p
