"""Checks that run before any cell does: a bad value fails the command at once, with one message
(what, where, how to fix), and nothing is written (README "Your data is safe").

* :func:`check_spec` -- what the spec alone decides and :func:`experiments.spec.validate` does not
  (``series.steps = {log_spaced = N}`` with ``N >= 1``);
* :func:`check_model` -- what needs the model: explicit heads inside its layers and heads, and every
  prompt the cells will run (ICL items at the largest shot count, scan sentences and random
  sequences) measured with its tokenizer against its context length;
* :func:`check_formats`, :func:`check_stats_options` -- command options of ``figures`` and ``stats``.

The spec's own validation (relations, tasks, tau in range, ...) is in :mod:`experiments.spec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ablate.model.errors import AblateError

if TYPE_CHECKING:
    from ablate.model.handle import ModelHandle
    from experiments.spec import Spec


class ValidationError(AblateError):
    """A value is out of range for the model, the run folder or the command."""


def check_spec(spec: "Spec") -> None:
    """Checks of the spec that need no model (raises :class:`ValidationError`)."""
    st = spec.series.steps
    if isinstance(st, dict) and int(st.get("log_spaced", 1)) < 1:
        raise ValidationError(f"{spec.source}: key series.steps: log_spaced = {st['log_spaced']} must be >= 1 "
                              "(the number of log-spaced checkpoints to run)")
    if isinstance(st, (list, tuple)) and not st:
        raise ValidationError(f"{spec.source}: key series.steps is an empty list; list steps, or write \"all\"")
    if spec.needs_scores and spec.scores.sentences:
        check_text_file(spec.scores.sentences, f"{spec.source}: key scores.sentences")


def check_text_file(source: str, where: str) -> None:
    """A local sentence / document file must be UTF-8 text (``kjv`` and ``hf:...`` are not files)."""
    from pathlib import Path

    if source == "kjv" or str(source).startswith("hf:"):
        return
    p = Path(source)
    if not p.exists():
        raise ValidationError(f"{where}: {p} does not exist; give a text file (one sentence per line), "
                              "'kjv', or 'hf:NAME[:CONFIG][:SPLIT][:COLUMN]'")
    if p.is_file():
        data = p.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValidationError(f"{where}: {p} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                                  "it looks like a binary file. Give a plain-text file, one sentence per line") from None
        if "\x00" in text:
            raise ValidationError(f"{where}: {p} holds NUL bytes, so it is not a text file; give a plain-text "
                                  "file, one sentence per line")
        if not text.strip():
            raise ValidationError(f"{where}: {p} is empty; give a text file with one sentence per line")


def context_length(handle: "ModelHandle") -> int:
    from ablate.icl.loss_reduction import model_context_length

    return model_context_length(handle)


def _longest_prompt(handle: "ModelHandle", items, add_bos: bool) -> tuple[int, object]:
    """The largest number of positions one forward row of ``items`` needs (prompt + answer tokens)."""
    from ablate.icl.metrics import prepare_prompt

    best, which = 0, None
    for it in items:
        pp = prepare_prompt(handle.tokenizer, it.prompt, it.labels, it.gold, label_spans=it.label_spans,
                            add_bos=add_bos)
        n = len(pp.prompt_ids) + max((len(c) for c in pp.cand_ids), default=0)  # the longest row scored
        if n > best:
            best, which = n, it
    return best, which


def _check_prompts(handle: "ModelHandle", where: str, task: str, shots: Iterable[int], make, add_bos: bool,
                   n_ctx: int) -> None:
    shots = sorted(set(shots))
    top = shots[-1]
    try:
        items = make(task, [top])
    except AblateError as e:
        raise ValidationError(f"{where}: task {task} at {top} shots: {e}; lower the shot count") from e
    n, _ = _longest_prompt(handle, items, add_bos)
    if n > n_ctx:
        per_shot = n / max(top, 1)
        fit = max(0, int(n_ctx / per_shot) - 1) if top else 0
        raise ValidationError(
            f"{where}: task {task} at {top} shots needs {n} positions (its longest prompt and answer, "
            f"measured with the model's tokenizer), but the model {handle.locator} has {n_ctx} "
            f"(max_position_embeddings); lower the largest shot count (about {fit} fit) or use a model "
            "with a longer context")


def check_model(spec: "Spec", handle: "ModelHandle", tasks: list[str]) -> None:
    """Checks that need the model (its heads, tokenizer and context). Raises :class:`ValidationError`."""
    from ablate.model.heads import HeadSet

    src = spec.source
    n_ctx = context_length(handle)
    if spec.ablation and spec.heads.select == "explicit":
        for e in spec.heads.explicit:
            try:
                HeadSet.parse(e).validate(handle.n_layers, handle.n_heads)
            except AblateError as err:
                raise ValidationError(f"{src}: key heads.explicit: head set {e!r}: {err} (the model "
                                      f"{handle.locator} has layers 0-{handle.n_layers - 1} and heads "
                                      f"0-{handle.n_heads - 1} per layer)") from err
    if spec.needs_scores:
        sc = spec.scores
        need = {"scores.max_tokens": sc.max_tokens, "scores.random_length": 1 + 2 * sc.random_length}
        for key, n in need.items():
            if n > n_ctx:
                raise ValidationError(f"{src}: key {key}: sequences of {n} positions do not fit the model "
                                      f"{handle.locator}'s {n_ctx}; lower it")
    if spec.levels is not None and "levels" in spec.parts:
        from ablate.icl.tasks import make_items
        from experiments.spec import resolve_tasks

        lv = spec.levels
        for t in resolve_tasks(lv.tasks):
            _check_prompts(handle, f"{src}: key levels.shots", t, lv.shots,
                           lambda task, sh: make_items(task, sh, lv.n_items, seed=spec.seed,
                                                       controls=list(lv.controls), part=lv.part),
                           lv.add_bos, n_ctx)
    if spec.ablation:
        from ablate.icl.tasks import make_items

        i = spec.icl
        for t in tasks:
            _check_prompts(handle, f"{src}: key icl.shots", t, i.shots,
                           lambda task, sh: make_items(task, sh, i.items, seed=spec.seed, controls=list(i.controls)),
                           False, n_ctx)


#: figure formats matplotlib writes without extra backends
FIGURE_FORMATS = ("pdf", "png", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "pgf", "raw", "rgba")


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The figure formats of ``--format``, each one matplotlib can write."""
    fmts = tuple(f.strip().lstrip(".").lower() for f in formats if f.strip())
    if not fmts:
        raise ValidationError("--format: give at least one file format, e.g. --format pdf,png")
    try:
        from matplotlib.figure import Figure

        known = set(Figure().canvas.get_supported_filetypes())
    except Exception:  # pragma: no cover - matplotlib is a dependency
        known = set(FIGURE_FORMATS)
    bad = [f for f in fmts if f not in known]
    if bad:
        import difflib

        near = difflib.get_close_matches(bad[0], sorted(known), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValidationError(f"--format: {bad[0]!r} is not a figure format{hint}; known: {', '.join(sorted(known))}")
    return fmts


def check_stats_options(alpha: float, prereg: list[int] | None, steps: Iterable[int], run: str) -> None:
    """``--alpha`` in (0, 1); every ``--prereg`` step among the run's steps."""
    if not 0 < alpha < 1:
        raise ValidationError(f"--alpha {alpha}: the significance level must lie strictly between 0 and 1 "
                              "(e.g. 0.05)")
    steps = sorted(set(int(s) for s in steps))
    if prereg is not None:
        if not prereg:
            raise ValidationError("--prereg is empty; list pre-registered steps, e.g. --prereg 10,30")
        missing = [s for s in prereg if s not in steps]
        if missing:
            raise ValidationError(f"--prereg: step(s) {missing} are not steps of the run {run} (its steps: "
                                  f"{steps}); pre-register steps the run has")
