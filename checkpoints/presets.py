"""Training presets: ``tiny`` (tests), ``default`` (the demo's offline series), ``paper`` (GPU).

``default`` (since issue 14) is a 3-layer x 4-head x d 64 Llama (vocab 2048, context 128, batch 16,
lr 5e-3, 8,000 steps, 16.4M tokens) whose series is **shipped inside the package**
(``checkpoints/data/default_series``, 13 fp32 checkpoints, 18.7 MB; :mod:`checkpoints.embedded`), so
``ablate demo`` trains nothing. ``ablate train --preset default --threads 1`` reproduces it: a retrain
of steps 0-1,000 with 1 torch thread on the machine that made it gave bitwise-identical weights at
every shipped step <= 1,000 (same sha256); with 2 threads float reductions are ordered differently
(not measured here: only one core was free). **Pattern discovery on held-out words is not reached by
this preset or by any recipe tried for it** (table below); the series shows an induction head, loss
reduction and format compliance, not PD.

The issue-14 recipe search (2026-12-03, 1 torch thread on one core of this 2-core machine while other
work ran on the other, ~18k tokens/s). Every attempt: 3 layers, 4 heads, d 64, d_mlp 256, seq 128,
batch 16, lr 5e-3, warmup 100, ``lines=(12, 40)``, ``text_window=(32, 128)``, copy share .20.
Measured with ``python -m ablate.icl.probe RUN --tasks ... --items 120`` (10 shots, held-out words,
the gold must beat the prompt's other labels; one-sided binomial p vs chance 1/2, or 1/3 for 3way);
PM = best prefix-matching score, "2nd" = loss on the second copy of a repeated 30-token random
segment (~7.7 nats before induction), PDst = the probe's ``"word: d"`` task on *training* words.

======  ==========================================================  =======  ===============================  ====================================================
attempt recipe (token shares) and other changes                      train s  induction (PM / 2nd-copy loss)   final checkpoint, held-out words, 120 items each
======  ==========================================================  =======  ===============================  ====================================================
A1      text .10, templates .25, pair_rules .10, single_labels .35,   969      .07 / 7.6 at 4k; .15 at 5k;      category_letter .41, second_digit .45,
        ``distinct_words`` (no word repeats in a labelled doc),                .96 / 1.09 at 6k; .95 / 0.18     order_letter .47, first_3way .28, same_diff .46,
        ``pair_lines`` .5, ``order_rules`` (1, .5, 1, .5); 8,000 st            at 8k                            binary_fruit_month .55 (p .16), furniture .50;
                                                                                                                PDst .31-.53 after induction: the mapping is not
                                                                                                                read even on training words. (binary_fruit_month
                                                                                                                .78 at step 2k, p 6e-10, gone by 3k: a prior.)
A2      as A1 without ``distinct_words``; templates .30,               908      .07 / 7.6 at 4k; .85 / 3.18      .48, .47, .43, first_3way .47 (p 9e-4 vs 1/3;
        single_labels .30; 8,000 steps  **(shipped as default)**                at 5k; .96 / 0.14-0.27 at 6-8k   .46, p 3e-3 at 7k), same_diff .53,
                                                                                                                binary_fruit_month .50, furniture .56 (p .12);
                                                                                                                PDst .39-.47
A3      text .10, templates .25, pair_rules 0, single_labels .45,      1,087    .06-.10 up to 7k; .81 / 4.72     .55, .52, .50, first_3way .23, .47,
        ``pair_lines`` .25 (NOTES.md's PD variant + 25% two-word              at 8k; .90 / 2.36 at 9k          binary_fruit_month .48 (.66, p 3e-4, at 8k;
        lines); 9,000 steps, 9 linear checkpoints                                                                .62 at 3k), furniture .44; PDst .41
A4      text .10, templates .25, pair_rules 0, single_labels .35,      339      .06-.07 up to 3.6k; .86 / 2.87   PDs .53, PDo .45, PDst .52 (``checkpoints.probe``,
        copy .30, **batch 8** (Aoyama: fewer tokens to induction for  (2 thr, at 4.8k (4.9M tokens); .95 / 0.06    64 prompts): at chance at every checkpoint, on
        smaller B x C); 12,000 steps, 2 threads on idle cores         36.8k    at 12k                           training words too
                                                                      tok/s)
A5      A4's batch 8 with A1's mix (text .10, templates .25,          1,619    .22 / 7.41 at 8k; .94 / 0.65     .55 (p .16), first_3way .34, second_digit .48,
        pair_rules .10, single_labels .35, copy .20, ``pair_lines``    (1 thr,  at 10k; stays formed to 30k      same_diff .52, binary_fruit_month .43; best of any
        .3), **30,000 steps** (20k steps after induction for a         19.0k                                     step: category_letter .60 at 16k (p .018, not
        label-reading circuit), 6 log + 15 linear checkpoints          tok/s)                                    < .001); training words at 30k .55/.34/.50/.52
======  ==========================================================  =======  ===============================  ====================================================

A5 (2026-12-05, session 8) tested the "too few steps after induction" reading directly: 20,000 steps
after the induction head formed, and still no label reading on held-out or training words (all
tasks at chance at steps 8k, 16k, 22k, 26k, 30k; 120 items each). So the missing circuit is not a
matter of steps after induction at this size and mix. A5 took the search to 84 of its 60 minutes
(A1-A4 57.4 min + A5 27.0 min): the budget is exceeded, and the series part of issue 14 is not reached.

A4 (2026-12-03, session 6) brought induction forward in tokens (4.9M vs 10-16M for A1-A3 at batch 16;
the Aoyama law predicts 10^5.7 * sqrt(8 * 128) = 16M) but, like A1-A3, no label-reading circuit
followed in the 7,200 steps after it. With A4 the search used 57.4 of its 60 training minutes.

The shipped A2 series measured by the toolkit itself (``ablate icl``, 120 items, 10 shots, greedy exact
label, held-out words): at step 8,000 every task at chance (pd_category_letter .50,
pd_second_category_digit .49, pd_order_letter .38, pd_same_different .57, binary_fruit_month .51,
binary_furniture_profession .53) except pd_first_category_3way 56/120 = .47 vs 1/3 (p = .0009); at
step 0 all at chance; format compliance 0 at 0 shots, .94-.98 from 2 shots. On *training* words
(``python -m ablate.icl.probe ... --part train``) the same tasks are at chance at steps 4,000-8,000
too: the series has no label-reading circuit at all, so the gap is not held-out generalisation.

Training total for A1-A3 2,964 s (49.4 min) plus the 141 s reproduction check, and A4's 339 s. Reading: in all three, the
induction head forms late (steps 5,000-8,000; NOTES.md's 2-thread run of the A3-like variant formed
it at 3,000-4,500 and then read the mapping on training words, PDst 1.00, held-out .64-.72) and
leaves too few steps after it for a label-reading circuit; no attempt reads the mapping from context
on held-out words, so the series shows no PD. What was not tried for lack of budget: a copy share
high enough to bring induction before ~3,000 steps, longer runs (12-20k steps), 4 layers, smaller
batches (the Aoyama et al. law predicts fewer tokens for smaller B x C).

Older measurements (2-layer default of 2026-11-24, 10k steps, 653 s on 2 idle cores): induction
between steps 3.4k and 4.5k, PD at chance at every checkpoint; ``python -m checkpoints.probe OUT``
re-measures all of this.

``paper`` is the paper's 20 layers x 16 heads x d 2048 Llama; it is meant for GPU users and is
never trained by the tests (only its config is built, on the meta device).

**Families.** Every preset trains as a Llama by default; ``family="gpt2"`` or ``"gpt_neox"``
(``get_preset("tiny", family="gpt2")``, ``ablate train --family gpt2``) maps the same shape onto
GPT-2 (learned absolute positions, LayerNorm, GELU MLP, biases) or GPT-NeoX/Pythia (rotary on a
quarter of each head as in Pythia, parallel residual, LayerNorm, biases), so the ``cross_arch``
experiment can compare families trained on identical data. The measurements above are for Llama.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from checkpoints.recipe import Recipe

__all__ = ["TrainConfig", "PRESETS", "FAMILIES", "get_preset"]

#: Trainable families -> the ``transformers`` causal-LM class the trainer builds.
FAMILIES: dict[str, str] = {
    "llama": "LlamaForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (its hash names a resumable run).

    Attributes:
        name: Preset name.
        n_layers, n_heads, d_model, d_mlp: Model shape (``d_mlp`` is the MLP's hidden width:
            Llama ``intermediate_size``, GPT-2 ``n_inner``, NeoX ``intermediate_size``).
        n_kv_heads: Llama only: key/value heads for grouped-query attention (None = MHA).
        vocab_size: BPE vocabulary size.
        seq_len: Tokens per row.
        batch_size: Rows per step.
        steps: Optimiser steps.
        lr: Peak learning rate (AdamW).
        warmup: Linear warm-up steps.
        min_lr_ratio: Cosine decays to ``lr * min_lr_ratio``.
        weight_decay, betas, grad_clip: AdamW / clipping.
        tie_embeddings: Share input embedding and unembedding.
        n_log_checkpoints: Log-spaced checkpoints before the linear part (step 0 is extra).
        n_linear_checkpoints: Evenly spaced checkpoints up to ``steps``.
        text_max_chars: Characters of natural text to read (None: all).
        single_token_words: Make every category word one BPE token.
        recipe: The data mixture.
        seed: Seed for init and data.
        family: Architecture: "llama" (default), "gpt2" or "gpt_neox" (see :data:`FAMILIES`).
        max_positions: The model's context (``max_position_embeddings``); None: ``max(2 * seq_len, 256)``.
            ``tiny`` sets 512 so the shipped specs' 20-shot prompts fit its 384-token vocabulary's
            longer tokenisation.
    """

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    vocab_size: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    tie_embeddings: bool = True
    n_kv_heads: int | None = None
    n_log_checkpoints: int = 8
    n_linear_checkpoints: int = 16
    text_max_chars: int | None = None
    single_token_words: bool = True
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0
    family: str = "llama"
    max_positions: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"TrainConfig {self.name!r}: unknown family {self.family!r}; "
                             f"allowed families: {', '.join(FAMILIES)}")
        if self.n_kv_heads is not None and self.family != "llama":
            raise ValueError(f"TrainConfig {self.name!r}: n_kv_heads (grouped-query attention) is "
                             f"only supported for family 'llama', not {self.family!r}; leave it None")
        if self.d_model % self.n_heads:
            raise ValueError(f"TrainConfig {self.name!r}: d_model={self.d_model} is not a multiple "
                             f"of n_heads={self.n_heads}")

    def to_dict(self) -> dict:
        """JSON-serialisable form.

        ``family`` is left out when it is "llama": this dict is hashed into the trainer's run
        identity (``run.json``) and the demo's series cache key, and both existed before the field
        did, so a Llama run must keep the hash it had (or every cached series would retrain).
        """
        d = asdict(self)
        d["recipe"] = self.recipe.to_dict()
        if d["family"] == "llama":
            del d["family"]
        if d["max_positions"] is None:  # same reason: configs from before the field keep their hash
            del d["max_positions"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (a dict without ``family`` is a Llama run)."""
        d = dict(d)
        d["recipe"] = Recipe.from_dict(d["recipe"])
        d["betas"] = tuple(d["betas"])
        d.setdefault("family", "llama")
        return cls(**d)

    @property
    def architecture(self) -> str:
        """The ``transformers`` class name (what ``config.architectures`` records)."""
        return FAMILIES[self.family]

    def model_class(self):
        """The ``transformers`` causal-LM class of :attr:`family`."""
        import transformers

        return getattr(transformers, self.architecture)

    def model_config(self, tokenizer=None):
        """The ``transformers`` config of this run's family (dropout 0, ``architectures`` set).

        The shape fields map onto each family's names; GPT-2 learns absolute positions, so its
        ``n_positions`` is ``max(2 * seq_len, 256)`` like Llama's ``max_position_embeddings``
        (positions past ``seq_len`` exist but are never trained). GPT-NeoX keeps Pythia's
        defaults (rotary on 25% of each head, parallel residual).

        Args:
            tokenizer: When given, its bos/eos/pad ids are written into the config.
        """
        if self.family == "llama":
            cfg = self.llama_config(tokenizer)
        else:
            import transformers

            # without a tokenizer: no special ids (GPT-2's default 50256 lies outside small vocabularies)
            ids = self._token_ids(tokenizer) or dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
            common = dict(vocab_size=self.vocab_size, tie_word_embeddings=self.tie_embeddings,
                          initializer_range=0.02, **ids)
            if self.family == "gpt2":
                cfg = transformers.GPT2Config(
                    n_embd=self.d_model, n_layer=self.n_layers, n_head=self.n_heads,
                    n_inner=self.d_mlp, n_positions=self._max_positions(),
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                    layer_norm_epsilon=1e-5, **common)
            else:  # gpt_neox
                cfg = transformers.GPTNeoXConfig(
                    hidden_size=self.d_model, num_hidden_layers=self.n_layers,
                    num_attention_heads=self.n_heads, intermediate_size=self.d_mlp,
                    max_position_embeddings=self._max_positions(),
                    hidden_dropout=0.0, attention_dropout=0.0, layer_norm_eps=1e-5, **common)
        cfg.architectures = [self.architecture]
        return cfg

    def _max_positions(self) -> int:
        return self.max_positions or max(2 * self.seq_len, 256)

    @staticmethod
    def _token_ids(tokenizer) -> dict:
        if tokenizer is None:
            return {}
        return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id)

    def llama_config(self, tokenizer=None):
        """The ``transformers.LlamaConfig`` of this run (the ``llama`` case of :meth:`model_config`).

        Args:
            tokenizer: When given, its bos/eos/pad ids are written into the config.

        Raises:
            ValueError: :attr:`family` is not "llama" (use :meth:`model_config`).
        """
        from transformers import LlamaConfig

        if self.family != "llama":
            raise ValueError(f"llama_config() on a {self.family!r} config; use model_config()")
        ids = self._token_ids(tokenizer)
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_mlp,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_kv_heads or self.n_heads,
            head_dim=self.d_model // self.n_heads,
            max_position_embeddings=self._max_positions(),
            tie_word_embeddings=self.tie_embeddings,
            rms_norm_eps=1e-5,
            initializer_range=0.02,
            **ids,
        )


PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(
        name="tiny", n_layers=2, n_heads=2, d_model=32, d_mlp=64, vocab_size=384,
        seq_len=32, batch_size=4, steps=30, lr=3e-3, warmup=5,
        n_log_checkpoints=3, n_linear_checkpoints=3, text_max_chars=60_000,
        single_token_words=False, max_positions=512,
        recipe=Recipe(text_window=(16, 64)),
    ),
    "default": TrainConfig(
        name="default", n_layers=3, n_heads=4, d_model=64, d_mlp=256, vocab_size=2048,
        seq_len=128, batch_size=16, steps=8_000, lr=5e-3, warmup=100,
        n_log_checkpoints=6, n_linear_checkpoints=8,
        recipe=Recipe(text=0.10, templates=0.30, pair_rules=0.10, single_labels=0.30, copy=0.20,
                      lines=(12, 40), text_window=(32, 128), pair_lines=0.5,
                      order_rules=(1, 0.5, 1, 0.5)),  # ints, as trained (the hash sees "1", not "1.0")
    ),
    "paper": TrainConfig(
        name="paper", n_layers=20, n_heads=16, d_model=2048, d_mlp=5504, vocab_size=32_000,
        seq_len=2048, batch_size=32, steps=20_000, lr=3e-4, warmup=2000,
        n_log_checkpoints=10, n_linear_checkpoints=100, tie_embeddings=False,
        recipe=Recipe(text=0.80, templates=0.05, pair_rules=0.05, single_labels=0.05, copy=0.05,
                      text_window=(256, 2048)),
    ),
}


def get_preset(name: str, **overrides) -> TrainConfig:
    """A preset by name, with field overrides (``steps=``, ``seed=``, ``family=``).

    ``None`` overrides are ignored (so CLI options left unset keep the preset's values).

    Raises:
        KeyError: Unknown preset (lists the known ones) or unknown override field.
        ValueError: Unknown ``family`` (lists the allowed ones) or a shape it cannot take.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    cfg = PRESETS[name]
    bad = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if bad:
        raise KeyError(f"get_preset: unknown fields {sorted(bad)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
