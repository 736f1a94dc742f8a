"""``ablate stats RUN``: significance and emergence tables for a finished run.

One module per command (experiments/commands/); registered by experiments/cli.py.

The tables cover the cells that finished. Checkpoints with failed or pending cells are listed in the
tables' notes (``RUN/tables/summary.md`` and ``significance.md``) and on the terminal, and the
command exits non-zero when a pre-registered checkpoint (``--prereg``; default: every step of the
run) is incomplete, unless ``--allow-partial`` is given.
"""

from __future__ import annotations

from pathlib import Path

import click


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise click.BadParameter(f"comma-separated integer steps, e.g. 10,30 (got {text!r})",
                                 param_hint="--prereg") from None


def incomplete_steps(run: Path) -> tuple[dict[int, list[str]], list[str]]:
    """Per step, the failed or pending cells of the run folder's grid (and the lines describing them)."""
    from experiments.cells import CellKey
    from experiments.store import RunStore

    st = RunStore(run).status()
    by_step: dict[int, list[str]] = {}
    lines = []
    for k, err in st.failed.items():
        by_step.setdefault(CellKey.parse(k).step, []).append(k)
        lines.append(f"failed: {k}: {err}")
    for k in st.pending:
        by_step.setdefault(CellKey.parse(k).step, []).append(k)
        lines.append(f"not run: {k}")
    return by_step, lines


def _append_note(path: Path, text: str) -> None:
    if path.exists():
        path.write_text(path.read_text().rstrip("\n") + "\n\n" + text + "\n")


@click.command("stats")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--prereg", "prereg", default=None,
              help="Comma-separated pre-registered steps (Holm family); default: all steps.")
@click.option("--basis", type=click.Choice(["auto", "specific", "target"]), default="auto", show_default=True)
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level, in (0, 1).")
@click.option("--n-boot", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap replicates for CIs.")
@click.option("--no-mixed-model", is_flag=True, help="Skip the crossed mixed model (slow on big runs).")
@click.option("--allow-partial", is_flag=True,
              help="Exit 0 even when cells of pre-registered checkpoints failed or did not run (they are "
                   "still listed in the notes).")
@click.option("--p-resolution", type=float, default=None,
              help="Smallest p the comparison against matched random head sets must be able to reach "
                   "(needs R >= 1/p - 1 random sets; a row whose R is too small says so). Default: the "
                   "run spec's controls.p_resolution, else --alpha.")
@click.option("--seed", type=int, default=0, show_default=True)
def stats_command(run, prereg, basis, alpha, n_boot, no_mixed_model, allow_partial, p_resolution, seed):
    """Write RUN/tables/significance.{csv,md,tex}, emergence.{csv,md,tex} and summary.md."""
    import pandas as pd

    from experiments.store import MANIFEST, RunStore
    from experiments.validate import ValidationError, check_stats_options

    root = Path(run)
    steps = _ints(prereg)
    if not 0 < alpha < 1:  # before reading anything
        check_stats_options(alpha, None, [], run)
    if p_resolution is not None and not 0 < p_resolution < 1:
        raise click.BadParameter(f"{p_resolution} must lie in (0, 1), e.g. 0.05 (needs R >= 19 random sets) "
                                 "or 0.01 (R >= 99)", param_hint="--p-resolution")
    from experiments.factors import is_factors_run

    if is_factors_run(root):  # a factors study: onsets per variant and the induction-formation law
        _factors_stats(root, n_boot=n_boot, seed=seed)
        return
    path = root / "results.parquet"
    has_manifest = (root / MANIFEST).is_file()
    if not has_manifest and not path.exists():
        raise ValidationError(f"{run} is not a run folder (no {MANIFEST}, no results.parquet); point at the --out "
                              "folder of `ablate run SPEC`")
    by_step, lines = incomplete_steps(root) if has_manifest else ({}, [])
    results = pd.read_parquet(path) if path.exists() else None
    no_ablation = results is None or len(results) == 0 or "condition" not in results.columns
    # ablation cells that ran with nothing to ablate (no head set non-empty at any checkpoint)
    nothing_ablated = not no_ablation and not (results["condition"].astype(str) != "clean").any()
    n_failed = sum(ln.startswith("failed") for ln in lines)
    if (no_ablation or nothing_ablated) and has_manifest and not n_failed and _relations_scores_only(root, seed):
        if nothing_ablated:
            click.echo("no ablated rows: no head passed the selection rule at any checkpoint (see "
                       f"{run}/head_sets.csv); the relation tables above are from the scores alone", err=True)
        return
    if nothing_ablated:
        raise ValidationError(f"{run} has no ablated rows: no head set was non-empty at any checkpoint (nothing passed "
                              f"the selection rule; see {run}/head_sets.csv). Lower heads.min_events, score more "
                              "sentences ([scores] n_sentences) or name heads with heads.select = \"explicit\"")
    if no_ablation:
        why = (f"{n_failed} cell(s) failed, first: {next((ln for ln in lines if ln.startswith('failed')), '')[8:]}"
               if n_failed else "its ablation cells have not run (scan / icl folders hold no ablation results)")
        raise ValidationError(f"{run} has no ablation results to analyse ({why}); see `ablate status {run}`, "
                              "fix the cause and re-run `ablate run` into the same folder (finished cells are kept)")
    manifest = RunStore(root).manifest() if has_manifest else {}
    run_steps = sorted(set(int(s) for s in (manifest.get("steps") or results["step"].dropna().unique())))
    check_stats_options(alpha, steps, run_steps, run)
    family = steps if steps is not None else run_steps
    if not (results["condition"].astype(str) == "clean").any():
        raise ValidationError(f"{run}: no clean (op=none) cell finished, so no drop can be computed "
                              f"({len(lines)} cell(s) failed or not run); see `ablate status {run}` and re-run")
    from stats.api import run_stats

    res = run_stats(run, preregistered_steps=steps, basis=basis, alpha=alpha, n_boot=n_boot,
                    mixed_model=not no_mixed_model, seed=seed, p_resolution=p_resolution)
    click.echo(res.summary())
    incomplete = sorted(s for s in by_step if s in family)
    if by_step:
        note = ["## Missing from the analysis", "",
                f"Checkpoints with failed or unfinished cells: {sorted(by_step)} "
                f"(pre-registered among them: {incomplete or 'none'}); their rows are absent from the tables.", ""]
        note += [f"- {ln}" for ln in lines[:50]] + ([f"- ... {len(lines) - 50} more"] if len(lines) > 50 else [])
        text = "\n".join(note)
        for name in ("summary.md", "significance.md"):
            _append_note(root / "tables" / name, text)
        click.echo(text, err=True)
    click.echo(f"tables written to {run}/tables/")
    if incomplete and not allow_partial:
        raise click.ClickException(
            f"the pre-registered family is incomplete: checkpoint(s) {incomplete} have failed or unfinished cells "
            f"({sum(len(by_step[s]) for s in incomplete)} cells; see `ablate status {run}`). Re-run `ablate run` "
            "into the same folder to finish them, or pass --allow-partial to accept the partial tables")


def _relations_scores_only(root: Path, seed: int) -> bool:
    """A relations run without ablation cells: write its relation tables from the scores; True if done."""
    from experiments.store import RunStore
    from stats.relations import is_relations_spec, write_relations_tables

    spec = RunStore(root).manifest().get("spec", {}) or {}
    if not is_relations_spec(spec):
        return False
    res = write_relations_tables(root, spec, seed=seed)
    if res is None:
        return False
    click.echo(res.ri.to_string(index=False))
    click.echo(f"tables written to {root}/tables/ (relations_ri, relations_overlap, relations_multi, relations.md)")
    return True


def _factors_stats(root: Path, *, n_boot: int, seed: int) -> None:
    from experiments.factors import read_factors_manifest
    from experiments.validate import ValidationError
    from stats.factors import write_factors_tables
    from stats.tables import to_markdown

    names = read_factors_manifest(root).get("variants", [])
    missing = [v for v in names if not (root / "variants" / v / "head_scores.parquet").exists()]
    if len(missing) == len(names):
        raise ValidationError(f"{root}: no variant of the factors study has been measured yet; run "
                              f"`ablate run SPEC --out {root}` to train and measure them (finished work is kept)")
    paths = write_factors_tables(root, n_boot=min(n_boot, 500), seed=seed)
    for name in ("law", "fit"):
        click.echo(paths[name].with_suffix(".md").read_text())
    if missing:
        click.echo(f"not yet measured (left out of the tables): {', '.join(missing)}", err=True)
    click.echo(f"tables written to {root}/tables/ (factors_variants, factors_onsets, factors_law, factors_fit, "
               "factors_curves)")
