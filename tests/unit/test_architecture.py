"""The layout rules of docs/architecture.md, checked on the source (every import, also inside
functions): packages import only packages earlier in the flow
checkpoints -> ablate -> experiments -> stats -> paper_figures, with the two documented exceptions,
and every module of the core sits in a sub-package named for its concept."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOW = ["checkpoints", "ablate", "experiments", "stats", "paper_figures"]
#: the command layer runs whole pipelines (train -> scan -> run -> stats -> figures -> report)
APPLICATION = ("experiments.commands", "experiments.demo", "experiments.report")
#: the trainer teaches the ICL tasks' categories, so it reads their vocabulary (a data module)
TRAINER_READS = ("ablate.icl.wordlists",)
CORE_PACKAGES = {"model", "intervene", "scores", "triplets", "icl", "testing"}


def _modules():
    for pkg in FLOW:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            yield ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), p


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.module


def _allowed(importer: str, imported: str) -> bool:
    src, dst = importer.split(".")[0], imported.split(".")[0]
    if dst not in FLOW or FLOW.index(dst) <= FLOW.index(src):
        return True
    if importer.startswith(APPLICATION):
        return True
    return src == "checkpoints" and imported.startswith(TRAINER_READS)


def test_imports_flow_one_way():
    bad = sorted({f"{m} imports {i}" for m, p in _modules() for i in _imports(p, m) if not _allowed(m, i)})
    assert not bad, "imports against the flow (docs/architecture.md):\n" + "\n".join(bad)


def test_the_rule_catches_a_backward_import():
    assert not _allowed("ablate.scores.scan", "experiments.run_files")
    assert not _allowed("stats.api", "paper_figures.render")
    assert not _allowed("checkpoints.trainer", "ablate.model.handle")
    assert _allowed("experiments.commands.stats", "stats.api") and _allowed("stats.api", "experiments.tidy")


def test_core_modules_sit_in_concept_subpackages():
    loose = [p.name for p in (ROOT / "ablate").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules directly under ablate/: {loose}"
    subs = {p.name for p in (ROOT / "ablate").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subs == CORE_PACKAGES


def test_every_command_is_one_module():
    from experiments.cli import COMMANDS

    for name, (mod, attr) in COMMANDS.items():
        assert mod == f"experiments.commands.{name}" and (ROOT / "experiments" / "commands" / f"{name}.py").exists()
    stray = [p for pkg in FLOW for p in (ROOT / pkg).rglob("cli.py") if pkg != "experiments"]
    assert not stray, stray


def test_docstrings_cite_documents_that_exist_in_the_repository():
    import re

    cited, missing = set(), []
    for _, p in _modules():
        text = p.read_text()
        assert "PAPER.md" not in text and "DESIGN.md" not in text, f"{p} cites a document outside the repository"
        for name in re.findall(r"docs/[\w/.-]+?\.md", text):
            cited.add(name)
            if not (ROOT / name).exists():
                missing.append(f"{p.relative_to(ROOT)} cites {name}")
    assert cited and not missing, missing
