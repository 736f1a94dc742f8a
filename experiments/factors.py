"""The ``emergence_factors`` study (issue 17, the paper's open question Q2): which architectural and
training factors set *when* induction heads, semantic induction heads and pattern discovery emerge.

A factors spec (``experiments/emergence_factors/spec.toml``) names a base training preset and a list of
variants, each changing one or two factors (layers, width, batch size x context, the share of few-shot
documents). ``ablate run emergence_factors --out RUN`` then, for every variant:

1. **trains** its series from scratch into ``RUN/series/<variant>/`` (:func:`checkpoints.trainer.train`;
   resumable: a killed run continues from its last checkpoint, a finished one is reused);
2. **measures** every checkpoint through the one runner: a generated spec with the ``[scores]`` and
   ``[levels]`` sections of the study's ``[measure]`` table runs into ``RUN/variants/<variant>/``
   (an ordinary run folder: ``head_scores.parquet``, ``icl_summary.parquet``; resumable cell by cell).

``ablate stats RUN`` (:mod:`stats.factors`) dates each variant's curves (best prefix-matching score,
best relation index above its fake-tail null, PD and FC at the largest shot count) with the toolkit's
sigmoid rule (:func:`stats.emergence.fit_sigmoid`: dated only when a sigmoid beats a constant and a
line; bootstrap CI of the midpoint, in log10 tokens), and tests the law of Aoyama, Wilcox & Schneider
(2025) that induction heads form after about ``10^5.7 * sqrt(B * C)`` training tokens (B sequences per
batch, C tokens of context): predicted vs measured per variant, the fitted exponent of ``B * C`` with
its CI.

Layout of ``RUN``::

    RUN/manifest.json              kind "factors", the study spec and its hash (a run folder of the toolkit)
    RUN/series/<variant>/          the trained checkpoint series (series.json, step_N/)
    RUN/variants/<variant>/        the measurement run of that series (manifest.json, cells/, tables)
    RUN/factors_timings.json       seconds spent training and measuring each variant (this machine)
    RUN/tables/factors_*.{csv,md,tex}, RUN/figures/factors.{pdf,png}   after ``ablate stats`` / ``figures``

Data safety is the runner's: the study folder has one writer (:class:`experiments.store.RunLock`),
is refused when it holds files the toolkit did not write, and ``--new`` moves an old study aside.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from experiments.spec import Spec, SpecError, _suggest, spec_from_dict

__all__ = ["Variant", "FactorsSpec", "is_factors_spec", "load_factors_spec", "factors_from_dict", "run_factors",
           "is_factors_run", "read_factors_manifest", "KIND"]

KIND = "factors"
_TOP = {"name", "seed", "description", "train", "variants", "measure", "law"}
_TRAIN_KEYS = {"preset", "threads", "tokens", "steps", "recipe"}
#: TrainConfig fields a variant (or the [train] base) may change; name/recipe/seed are the study's own
_NOT_OVERRIDABLE = {"name", "recipe", "seed"}
_LAW_KEYS = {"log10_c", "exponent", "curve"}
_MEASURE_KEYS = {"scores", "levels", "steps"}


@dataclass(frozen=True)
class Variant:
    """One trained variant: its name, its TrainConfig overrides and its Recipe overrides."""

    name: str
    overrides: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    tokens: float | None = None


@dataclass(frozen=True)
class FactorsSpec:
    """A validated factors study (see the module docstring; :func:`factors_from_dict` builds it)."""

    name: str
    seed: int
    description: str
    preset: str
    threads: int
    tokens: float | None
    steps: int | None
    base: dict
    base_recipe: dict
    variants: tuple[Variant, ...]
    measure: dict
    law: dict
    source: str = "<dict>"

    def to_dict(self) -> dict:
        d = {"name": self.name, "seed": self.seed, "description": self.description, "preset": self.preset,
             "threads": self.threads, "tokens": self.tokens, "steps": self.steps, "base": self.base,
             "base_recipe": self.base_recipe, "measure": self.measure, "law": self.law,
             "variants": [{"name": v.name, "overrides": v.overrides, "recipe": v.recipe, "tokens": v.tokens}
                          for v in self.variants]}
        return d

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def with_preset(self, preset: str) -> "FactorsSpec":
        """The same study on another preset's shape (``--preset tiny``: a plumbing run in seconds).

        The base shape overrides and the token budgets are dropped (the preset's own shape and steps
        are used); each variant keeps its factor overrides."""
        _preset(preset, self.source)
        return replace(self, preset=preset, tokens=None, steps=None, base={}, base_recipe={},
                       variants=tuple(replace(v, tokens=None) for v in self.variants))

    def train_config(self, v: Variant):
        """The :class:`checkpoints.presets.TrainConfig` of variant ``v``."""
        from checkpoints.presets import get_preset

        cfg = get_preset(self.preset)
        recipe = replace(cfg.recipe, **{**self.base_recipe, **v.recipe})
        over = {**self.base, **v.overrides}
        cfg = replace(cfg, name=f"{self.name}-{v.name}", seed=self.seed, recipe=recipe, **over)
        tokens = v.tokens if v.tokens is not None else self.tokens
        steps = self.steps
        if "steps" in v.overrides:
            steps = int(v.overrides["steps"])
        elif tokens is not None:
            steps = max(1, math.ceil(tokens / (cfg.batch_size * cfg.seq_len)))
        if steps is not None:
            cfg = replace(cfg, steps=int(steps), warmup=min(cfg.warmup, max(1, int(steps) // 10)))
        return cfg

    def measure_spec(self, v: Variant, series_dir: str | Path) -> Spec:
        """The generated scores + levels spec that measures variant ``v``'s series."""
        d: dict[str, Any] = {"name": f"{self.name}-{v.name}", "seed": self.seed,
                             "description": f"measurement of variant {v.name} of the factors study {self.name}",
                             "series": {"path": str(series_dir), "steps": self.measure.get("steps", "all")},
                             "scores": dict(self.measure.get("scores", {})),
                             "levels": dict(self.measure.get("levels", {})),
                             "parts": ["scores", "levels"]}
        return spec_from_dict(d, source=f"{self.source} [measure] (variant {v.name})")


def _err(source: str, msg: str) -> SpecError:
    return SpecError(f"{source}: {msg}")


def _preset(name: Any, source: str) -> str:
    from checkpoints.presets import PRESETS

    if not isinstance(name, str) or name not in PRESETS:
        raise _err(source, f"key train.preset = {name!r} is not a training preset{_suggest(str(name), PRESETS)}")
    return name


def _overrides(d: dict, where: str, source: str) -> tuple[dict, dict, float | None]:
    """Split a table into TrainConfig overrides, recipe overrides and a token budget (validated)."""
    from checkpoints.presets import TrainConfig
    from checkpoints.recipe import Recipe

    known = {f.name for f in fields(TrainConfig)} - _NOT_OVERRIDABLE
    rknown = {f.name for f in fields(Recipe)}
    over, rec, tokens = {}, {}, None
    for k, v in d.items():
        if k in ("name", "preset", "threads"):
            continue
        if k == "tokens":
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 1:
                raise _err(source, f"key {where}.tokens must be a positive number of training tokens, got {v!r}")
            tokens = float(v)
        elif k == "recipe":
            if not isinstance(v, dict):
                raise _err(source, f"key {where}.recipe must be a table of recipe fields, got {v!r}")
            for rk, rv in v.items():
                if rk not in rknown:
                    raise _err(source, f"unknown key {where}.recipe.{rk!r}{_suggest(rk, rknown)}")
                rec[rk] = tuple(rv) if isinstance(rv, list) else rv
        elif k in known:
            over[k] = tuple(v) if isinstance(v, list) else v
        else:
            raise _err(source, f"unknown key {where}.{k!r}{_suggest(k, known | {'tokens', 'recipe'})}")
    return over, rec, tokens


def factors_from_dict(d: dict, source: str = "<dict>") -> FactorsSpec:
    """Build and validate a :class:`FactorsSpec` (errors name ``source`` and the key)."""
    if not isinstance(d, dict):
        raise _err(source, "a spec must be a TOML table")
    for k in d:
        if k not in _TOP:
            raise _err(source, f"unknown key {k!r}{_suggest(k, _TOP)}")
    name = d.get("name", "emergence_factors")
    seed = d.get("seed", 0)
    if not isinstance(name, str) or not isinstance(seed, int) or isinstance(seed, bool):
        raise _err(source, "keys name (a string) and seed (an integer) have the wrong type")
    train = d.get("train", {})
    if not isinstance(train, dict):
        raise _err(source, "[train] must be a table")
    preset = _preset(train.get("preset", "default"), source)
    threads = train.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise _err(source, f"key train.threads must be an integer >= 1, got {threads!r}")
    steps = train.get("steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise _err(source, f"key train.steps must be an integer >= 1, got {steps!r}")
    base, base_recipe, tokens = _overrides({k: v for k, v in train.items() if k != "steps"}, "train", source)
    if steps is not None and tokens is not None:
        raise _err(source, "[train] sets both steps and tokens; give one (tokens: steps = tokens / (batch_size * seq_len))")
    raw = d.get("variants")
    if not isinstance(raw, list) or not raw:
        raise _err(source, "a factors spec needs at least one [[variants]] table (each with a name)")
    variants, seen = [], set()
    for i, v in enumerate(raw):
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not v["name"]:
            raise _err(source, f"[[variants]] number {i + 1} needs a name (a non-empty string)")
        vn = v["name"]
        if vn in seen or not all(c.isalnum() or c in "-_." for c in vn):
            raise _err(source, f"variant name {vn!r} is used twice or has characters other than letters, digits, - _ .")
        seen.add(vn)
        over, rec, vt = _overrides(v, f"variants.{vn}", source)
        variants.append(Variant(vn, over, rec, vt))
    measure = d.get("measure", {})
    if not isinstance(measure, dict):
        raise _err(source, "[measure] must be a table with [measure.scores] and [measure.levels]")
    for k in measure:
        if k not in _MEASURE_KEYS:
            raise _err(source, f"unknown key measure.{k!r}{_suggest(k, _MEASURE_KEYS)}")
    law = {"log10_c": 5.7, "exponent": 0.5, "curve": "induction", **d.get("law", {})}
    for k in law:
        if k not in _LAW_KEYS:
            raise _err(source, f"unknown key law.{k!r}{_suggest(k, _LAW_KEYS)}")
    spec = FactorsSpec(name=name, seed=seed, description=str(d.get("description", "")), preset=preset,
                       threads=threads, tokens=tokens, steps=steps, base=base, base_recipe=base_recipe,
                       variants=tuple(variants), measure=measure, law=law, source=source)
    for v in spec.variants:  # every variant's config and measurement spec must build before anything runs
        try:
            spec.train_config(v)
        except (ValueError, TypeError, KeyError) as e:
            raise _err(source, f"variant {v.name}: {e}") from None
        spec.measure_spec(v, "series")
    return spec


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from e


def _shipped(path: str | Path) -> Path | None:
    p = Path(path)
    if p.exists():
        return p
    shipped = Path(__file__).parent / str(path) / "spec.toml"
    return shipped if shipped.exists() else None


def is_factors_spec(path: str | Path) -> bool:
    """Whether ``path`` (a file or a shipped spec name) is a factors study (it has ``[[variants]]``)."""
    p = _shipped(path)
    if p is None or not p.is_file():
        return False
    try:
        return "variants" in tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def load_factors_spec(path: str | Path) -> FactorsSpec:
    p = _shipped(path)
    if p is None:
        raise SpecError(f"spec file not found: {path}")
    return factors_from_dict(_read_toml(p), source=str(p))


# ---- the run ---------------------------------------------------------------------------------------

def is_factors_run(run: str | Path) -> bool:
    """Whether ``run`` holds a factors study (its manifest says kind "factors")."""
    from experiments.store import MANIFEST

    try:
        return json.loads((Path(run) / MANIFEST).read_text()).get("kind") == KIND
    except (OSError, ValueError):
        return False


def read_factors_manifest(run: str | Path) -> dict:
    from experiments.store import MANIFEST

    return json.loads((Path(run) / MANIFEST).read_text())


@dataclass
class FactorsSummary:
    variants: int = 0
    trained_now: int = 0
    cells_done: int = 0
    cells_failed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"factors study: {self.variants} variants ({self.trained_now} trained in this call), "
                f"{self.cells_done} measurement cells done, {self.cells_failed} failed, {self.seconds:.0f} s")


def _open(spec: FactorsSpec, out: Path, lock, new: bool) -> None:
    from experiments.store import MANIFEST, NEW_HELP, RunMismatchError, atomic_write_bytes, git_commit, package_versions

    mf = out / MANIFEST
    if mf.exists():
        old = json.loads(mf.read_text())
        if old.get("kind") != KIND or old.get("spec_hash") != spec.hash():
            what = "a run of another kind" if old.get("kind") != KIND else f"a factors study of another spec (hash {old.get('spec_hash')} vs {spec.hash()})"
            raise RunMismatchError(f"{out} already holds {what}; pick another --out folder, or "
                                   f"{NEW_HELP.format(root=out)}")
        return
    manifest = {"kind": KIND, "spec": spec.to_dict(), "spec_hash": spec.hash(), "seed": spec.seed,
                "variants": [v.name for v in spec.variants], "versions": package_versions(),
                "git_commit": git_commit(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "grid": []}
    atomic_write_bytes(mf, json.dumps(manifest, indent=2, default=str).encode())


def _timings(out: Path) -> dict:
    try:
        return json.loads((out / "factors_timings.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_timings(out: Path, t: dict) -> None:
    from experiments.store import atomic_write_bytes

    atomic_write_bytes(out / "factors_timings.json", json.dumps(t, indent=1).encode())


def _finished(series_dir: Path, steps: int) -> bool:
    try:
        cps = json.loads((series_dir / "series.json").read_text())["checkpoints"]
        return max(int(c["step"]) for c in cps) >= steps
    except (OSError, ValueError, KeyError):
        return False


def run_factors(spec: FactorsSpec, out: str | Path, *, new: bool = False, progress: bool = True,
                print_fn: Callable[[str], None] = print) -> FactorsSummary:
    """Train and measure every variant of ``spec`` into ``out`` (resumable; see the module docstring)."""
    from checkpoints.trainer import train
    from experiments.runner import run_spec
    from experiments.store import RunLock, check_folder

    out = Path(out)
    check_folder(out, new=new)
    summary = FactorsSummary(variants=len(spec.variants))
    t_start = time.perf_counter()
    with RunLock(out) as lock:
        if new and (out / "manifest.json").exists():
            print_fn(f"note: the old study in {out} was moved to {lock.move_aside()}")
        _open(spec, out, lock, new)
        timings = _timings(out)
        for i, v in enumerate(spec.variants, 1):
            cfg = spec.train_config(v)
            sdir = out / "series" / v.name
            tv = timings.setdefault(v.name, {})
            if not _finished(sdir, cfg.steps):
                print_fn(f"[{i}/{len(spec.variants)}] {v.name}: training {cfg.n_layers} layers x {cfg.n_heads} heads x "
                         f"d {cfg.d_model}, batch {cfg.batch_size} x {cfg.seq_len} tokens, {cfg.steps} steps "
                         f"({cfg.steps * cfg.batch_size * cfg.seq_len / 1e6:.1f}M tokens)")
                t0 = time.perf_counter()
                train(cfg, sdir, threads=spec.threads, progress=progress)
                tv["train_s"] = round(tv.get("train_s", 0.0) + time.perf_counter() - t0, 1)
                tv["tokens"] = cfg.steps * cfg.batch_size * cfg.seq_len
                summary.trained_now += 1
                _save_timings(out, timings)
            print_fn(f"[{i}/{len(spec.variants)}] {v.name}: measuring every checkpoint")
            t0 = time.perf_counter()
            res = run_spec(spec.measure_spec(v, sdir), out / "variants" / v.name, progress=progress)
            tv["measure_s"] = round(tv.get("measure_s", 0.0) + time.perf_counter() - t0, 1)
            _save_timings(out, timings)
            summary.cells_done += res.cells_done + res.cells_skipped
            summary.cells_failed += res.cells_failed
    summary.seconds = time.perf_counter() - t_start
    return summary
