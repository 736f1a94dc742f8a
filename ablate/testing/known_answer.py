"""A model whose answer is known by construction: the known-answer check of the whole pipeline.

Hand-set GPT-2 weights (2 layers x 4 heads, d_model 128, d_head 32, untied unembedding, MLPs
zero) and a word-level tokenizer that covers every ICL word list, the label symbols and the scan
sentences :data:`SCAN_SENTENCES`. The mechanism (docs/science.md §8):

* **Embeddings.** Each category word carries a one-hot code of its category
  (:func:`ablate.icl.wordlists.category_of`); each label symbol (20 letters, 10 digits) a one-hot
  label code plus an ``is-label`` feature; the scan nouns (:data:`SCAN_NOUNS`) a noun-class
  feature. Positions carry 12 cos/sin planes (frequencies picked so that the peak of
  ``sum_f cos(w_f d)`` at d = 0 beats every other d in 1..127 by 8.9). Two balance dims per part
  make every token and every position zero-mean with a constant norm, so LayerNorm is a known
  constant rescaling.
* **Layer 0: four offset heads** ``L0Hk`` (k = 0..3) attend to the token ``k+1`` positions back
  (query = the position code rotated by ``(k+1) w_f``) and copy its category code into their own
  residual slot ``A[k+1]`` (a category word costs 5 units, so where no token k+1 back exists, in
  the first line, the head lands on punctuation and copies nothing). So at a label token
  (``w1 , w2 : L``) ``A2 = cat(w2)`` and ``A4 = cat(w1)``; at a query colon ``A1 = cat(w2)`` and
  ``A3 = cat(w1)``.
* **L1H0, the planted semantic induction head (PD).** Query ``(A1, A3)``, key ``(A2, A4)`` plus a
  gate on ``is-label``: from the query's colon it attends to the demonstration labels whose
  line has the query's (first, second) categories, and its OV copies the attended label
  (label code -> that label's unembedding row). This is pattern discovery: the category -> label
  mapping is read from the demonstrations only. The colons are its sink (6 nats below a full
  match, 6 above a half match): with no matching line it answers nothing. The same head's query
  and key also read the scan-noun feature (so on a scan sentence ending ``... the old house`` the
  noun attends to itself, and on natural text the part is silent) and its OV maps a noun class to
  its adjective (house -> old, tower -> tall): a relation index near 1 for ``mod``
  (noun <- amod), fake-tail baseline near 0.
* **L1H1, the format head (FC).** Attends uniformly to every label token of the context and
  copies it: it raises the demonstrated labels without reading the mapping.
* L1H2 and L1H3 are zero (inert).

**Negative twin** (``variant="negative"``): the same weights, but the relation part (noun key,
noun -> adjective OV) sits on the inert L1H2 instead of L1H0. RI selection then picks L1H2, whose
ablation changes nothing, while PD is still carried by L1H0 (no relation index).

**Format twin** (``variant="format"``): the relation part sits on the format head L1H1, and L1H0's
output is scaled by 0.1, too weak to beat the default answer "." alone. Ablating the selected
L1H1 removes every answer (FC 1 -> 0, PD 1 -> 0): a format head, which must not pass as a PD head.

Known answers (checked directly by ``tests/integration/test_known_answer.py``): clean PD = 1 and
FC = 1 on the :data:`TASKS` at 8 and 12 shots; zeroing the PD head leaves FC = 1 and drops PD to
chance; zeroing the FC head leaves PD and FC at 1; the positive model's scan selects L1H0, the
twin's L1H2.

:func:`write_series` saves checkpoints (the same circuit plus small seeded weight noise per step)
as a checkpoint-series folder with ``series.json`` and the scan sentences; :func:`spec_dict`
gives the ``ablate run`` spec that runs the whole pipeline on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ablate.icl.tasks import DIGITS, LETTERS

__all__ = ["VARIANTS", "TASKS", "SCAN_SENTENCES", "SCAN_NOUNS", "PD_HEAD", "FC_HEAD", "DECOY_HEAD", "LABELS",
           "known_answer_tokenizer", "known_answer_model", "known_answer_handle", "write_series", "spec_dict",
           "spec_toml"]

#: the ICL tasks the construction solves by (first, second)-category matching (7 tasks, so the
#: exact sign-flip over tasks can reach p = 1/128; Holm over 3 checkpoints then 3/128 < .05)
TASKS: tuple[str, ...] = ("pd_category_letter", "pd_order_letter", "pd_first_category_3way",
                          "pd_second_category_digit", "binary_fruit_month", "binary_furniture_profession",
                          "four_fruit_month")
#: every label symbol of those tasks
LABELS: tuple[str, ...] = tuple(LETTERS) + tuple(str(i) for i in range(10))
#: noun -> adjective class of the scan sentences (0: "old", 1: "tall")
SCAN_NOUNS: dict[str, int] = {"house": 0, "castle": 0, "church": 0, "bridge": 0, "barn": 0, "mill": 0,
                              "tower": 1, "mountain": 1, "tree": 1, "building": 1, "wall": 1, "mast": 1}
ADJECTIVES: tuple[str, ...] = ("old", "tall")
#: scan sentences: each ends with "the <adjective> <noun>" (spaCy: noun <- amod adjective), no word
#: of an ICL category, >= 10 tokens so the fake-tail baseline (10th token) is defined
SCAN_SENTENCES: tuple[str, ...] = (
    "yesterday my friend and I walked along the road and noticed the old house",
    "after the long walk we finally stopped in front of the old castle",
    "every morning the children run past the gate toward the old church",
    "last week a man pushed his heavy load slowly across the old bridge",
    "in the evening the quiet villagers often gathered near the old barn",
    "during the storm the workers waited for hours inside the old mill",
    "from the window of the hotel we could see the tall tower",
    "at the end of the valley the travellers climbed the tall mountain",
    "on sunny days the birds like to sing in the tall tree",
    "in the middle of the city they built a very tall building",
    "for many years the soldiers guarded the town behind the tall wall",
    "near the harbour the sailors tied their ropes to the tall mast",
)
PD_HEAD, FC_HEAD, DECOY_HEAD = (1, 0), (1, 1), (1, 2)
#: "positive": L1H0 has the RI and carries PD; "negative": the RI on the inert L1H2; "format": the RI
#: on the format head L1H1, and L1H0's output too weak to answer alone (ablating L1H1 removes every
#: answer: a format head, not a PD head)
VARIANTS: tuple[str, ...] = ("positive", "negative", "format")

# ---- residual layout ---------------------------------------------------------------------------
D, H, DH, N_POS = 128, 4, 32, 128
N_CAT = 12
CAT = 0                      # 12 category dims
LAB = CAT + N_CAT            # 30 label dims
ISLAB = LAB + len(LABELS)    # 42
NOUN = ISLAB + 1             # 43, 44: noun class
ADJ = NOUN + 2               # 45, 46: adjective read-out dims
TOK_BAL = ADJ + 2            # 47, 48
FREQS = (6, 8, 13, 15, 18, 19, 22, 39, 41, 42, 57, 62)  # searched: max sidelobe 3.14 of peak 12
POS = TOK_BAL + 2            # 49 .. 72: cos/sin planes
POS_BAL = POS + 2 * len(FREQS)  # 73, 74
SLOT = POS_BAL + 2           # 75 + 12 * k: slot A[k+1] of offset head k
SLOT_BAL = SLOT + 4 * N_CAT  # 123
DEFAULT = SLOT_BAL + 1       # 124: constant in every position code, read by the "." row of the unembedding
COLON = DEFAULT + 1          # 125: token feature of ":" (the PD head's sink)
N_TOK, N_P = 4.0, 4.0        # norms of the token and position parts
#: squared size of one position plane: the planes' sum can reach sqrt(2) F c, which the two balance
#: dims can cancel only while F c^2 <= N_P^2 / (F + 1)
PLANE_SQ = N_P ** 2 / (len(FREQS) + 2) / len(FREQS)
LN0 = math.sqrt(D) / math.hypot(N_TOK, N_P)  # layer-0 LayerNorm scale (exact: constant norms, zero mean)

# ---- strengths (logit units are checked by the tests, not assumed) ----------------------------
OFFSET_SHARPNESS = 3.0       # attention logit per unit of sum_f cos: gap 3 * 8.86 = 27 nats
CATEGORY_PENALTY = 5.0       # offset heads: a category word costs 5 units (the gap left: 3.86 units)
SLOT_GAIN = 1.0              # size of a copied category code in its slot (pre layer-1 LN)
MATCH = 12.0                 # PD head: attention logit per matched category
LABEL_GATE = 2 * MATCH       # PD head: attention logit of any label token
SINK_GATE = LABEL_GATE + 1.5 * MATCH  # PD head: a ":" lies 6 nats below a full match, 6 above a half one
NOUN_GATE = 16.0             # relation part: attention logit of a scan noun
FC_GATE = 10.0               # FC head: attention logit of any label token
DEFAULT_SIZE = 0.5           # with no label in context the greedy answer is "." (not a label, not a tie)


def known_answer_tokenizer():
    """Word-level tokenizer: specials, every category word, labels, punctuation, scan words."""
    from ablate.icl.wordlists import CATEGORIES
    from ablate.testing.tiny import tiny_tokenizer

    words: list[str] = [w for ws in CATEGORIES.values() for w in ws] + list(LABELS) + [",", ":", ".", ";"]
    for s in SCAN_SENTENCES:
        words += s.split()
    return tiny_tokenizer(tuple(dict.fromkeys(words)))


def _balanced(feat: torch.Tensor, norm: float, extra_sum: float = 0.0) -> tuple[float, float]:
    """Two balance values (a, b) so that feat + (a, b) has squared norm ``norm**2`` and, with
    ``extra_sum`` more elsewhere, zero sum."""
    s, r = -float(feat.sum()) - extra_sum, norm ** 2 - float(feat.pow(2).sum())
    disc = r / 2 - s * s / 4
    if disc < 0:
        raise ValueError("known_answer: feature too large for its norm")
    return s / 2 + math.sqrt(disc), s / 2 - math.sqrt(disc)


def _embeddings(tok) -> torch.Tensor:
    from ablate.icl.wordlists import CATEGORIES

    cats = list(CATEGORIES)
    vocab = tok.get_vocab()
    E = torch.zeros(len(vocab), D, dtype=torch.float64)
    for w, i in vocab.items():
        f = torch.zeros(D, dtype=torch.float64)
        for c, ws in CATEGORIES.items():
            if w in ws:
                f[CAT + cats.index(c)] = 1.0
        if w in LABELS:
            f[LAB + LABELS.index(w)] = 1.0
            f[ISLAB] = 1.0
        if w in SCAN_NOUNS:
            f[NOUN + SCAN_NOUNS[w]] = 1.0
        if w == ":":
            f[COLON] = 1.0
        a, b = _balanced(f, N_TOK)
        f[TOK_BAL], f[TOK_BAL + 1] = a, b
        E[i] = f
    return E


def _positions() -> torch.Tensor:
    P = torch.zeros(N_POS, D, dtype=torch.float64)
    c = PLANE_SQ ** 0.5  # the balance dims take the rest of the position norm
    for i in range(N_POS):
        for f, w in enumerate(FREQS):
            ang = 2 * math.pi * w * i / N_POS
            P[i, POS + 2 * f], P[i, POS + 2 * f + 1] = c * math.cos(ang), c * math.sin(ang)
        P[i, DEFAULT] = DEFAULT_SIZE
        a, b = _balanced(P[i, POS:POS_BAL], math.sqrt(N_P ** 2 - DEFAULT_SIZE ** 2), extra_sum=DEFAULT_SIZE)
        P[i, POS_BAL], P[i, POS_BAL + 1] = a, b
    return P


def known_answer_model(variant: str = "positive", *, noise: float = 0.0, seed: int = 0):
    """The hand-set ``GPT2LMHeadModel`` (eval mode, eager attention).

    Args:
        variant: ``"positive"`` (L1H0 carries both the relation index and PD) or ``"negative"``
            (the relation part moved to the inert L1H2; PD stays on L1H0).
        noise: standard deviation of seeded Gaussian noise added to every weight matrix (the
            checkpoints of :func:`write_series` differ by it).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if variant not in VARIANTS:
        raise ValueError(f"known_answer_model: variant must be one of {VARIANTS}, got {variant!r}")
    tok = known_answer_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=D, n_layer=2, n_head=H, n_positions=N_POS, n_inner=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    m = GPT2LMHeadModel(cfg).eval()
    dd = torch.float64
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for ln in [m.transformer.ln_f] + [b.ln_1 for b in m.transformer.h] + [b.ln_2 for b in m.transformer.h]:
            ln.weight.fill_(1.0)
        m.transformer.wte.weight.copy_(_embeddings(tok))
        m.transformer.wpe.weight.copy_(_positions())
        sq = math.sqrt(DH)
        # ---- layer 0: offset heads ----------------------------------------------------------
        a0 = m.transformer.h[0].attn
        W, O, b0 = torch.zeros(D, 3 * D, dtype=dd), torch.zeros(D, D, dtype=dd), torch.zeros(3 * D, dtype=dd)
        c2 = PLANE_SQ
        beta = math.sqrt(OFFSET_SHARPNESS * sq / (LN0 ** 2 * c2))
        for k in range(4):
            q0, k0, v0 = k * DH, D + k * DH, 2 * D + k * DH
            for f, w in enumerate(FREQS):
                b = 2 * math.pi * w * (k + 1) / N_POS
                x, y = POS + 2 * f, POS + 2 * f + 1
                # q = rotate (cos, sin) of position j by -b: (x cos b + y sin b, -x sin b + y cos b)
                W[x, q0 + 2 * f], W[y, q0 + 2 * f] = beta * math.cos(b), beta * math.sin(b)
                W[x, q0 + 2 * f + 1], W[y, q0 + 2 * f + 1] = -beta * math.sin(b), beta * math.cos(b)
                W[x, k0 + 2 * f], W[y, k0 + 2 * f + 1] = beta, beta
            # a category word is 5 units less attractive: where no token k+1 back exists (the
            # prompt's first line), the head lands on punctuation and copies nothing
            b0[q0 + 2 * len(FREQS)] = 1.0
            for c in range(N_CAT):
                W[CAT + c, k0 + 2 * len(FREQS)] = -CATEGORY_PENALTY * OFFSET_SHARPNESS * sq / LN0
                W[CAT + c, v0 + c] = SLOT_GAIN / LN0
                O[k * DH + c, SLOT + k * N_CAT + c] = 1.0
                O[k * DH + c, SLOT_BAL] = -1.0
        a0.c_attn.weight.copy_(W)
        a0.c_attn.bias.copy_(b0)
        a0.c_proj.weight.copy_(O)
        # ---- layer 1 ---------------------------------------------------------------------------
        # LayerNorm scale at the positions that matter (token + position + two filled slots)
        slot_sq = 2 * SLOT_GAIN ** 2 + (2 * SLOT_GAIN) ** 2
        ln1 = math.sqrt(D) / math.sqrt(N_TOK ** 2 + N_P ** 2 + slot_sq)
        a1 = m.transformer.h[1].attn
        W, O, bq = torch.zeros(D, 3 * D, dtype=dd), torch.zeros(D, D, dtype=dd), torch.zeros(3 * D, dtype=dd)
        qk = math.sqrt(MATCH * sq) / (ln1 * SLOT_GAIN)  # (ln1 g qk)^2 / sqrt(dh) = MATCH per match
        gate_q = 4.0
        # PD head L1H0: query (A1, A3), key (A2, A4), label gate; value label code -> label dims
        h0 = 0
        for c in range(N_CAT):
            W[SLOT + 0 * N_CAT + c, h0 * DH + c] = qk          # q: A1 = cat(w2)
            W[SLOT + 2 * N_CAT + c, h0 * DH + N_CAT + c] = qk  # q: A3 = cat(w1)
            W[SLOT + 1 * N_CAT + c, D + h0 * DH + c] = qk      # k: A2 = cat(w2 of the label's line)
            W[SLOT + 3 * N_CAT + c, D + h0 * DH + N_CAT + c] = qk  # k: A4 = cat(w1 of the label's line)
        g = h0 * DH + 2 * N_CAT  # the gate dim of the head
        bq[g] = gate_q
        W[ISLAB, D + g] = LABEL_GATE * sq / (gate_q * ln1)
        W[COLON, D + g] = SINK_GATE * sq / (gate_q * ln1)  # no full match: the colons take the attention
        pd_gain = 0.1 if variant == "format" else 1.0  # "format": PD alone cannot beat the default "."
        for i in range(len(LABELS)):
            W[LAB + i, 2 * D + h0 * DH + i] = 1.0
            O[h0 * DH + i, LAB + i] = pd_gain
        # FC head L1H1: attends to every label token, copies it
        h1 = 1
        bq[h1 * DH] = gate_q
        W[ISLAB, D + h1 * DH] = FC_GATE * sq / (gate_q * ln1)
        for i in range(len(LABELS)):
            W[LAB + i, 2 * D + h1 * DH + i] = 1.0
            O[h1 * DH + i, LAB + i] = 1.5
        # relation part: on L1H0 (positive) or on the inert L1H2 (negative twin)
        # (query and key both read the noun feature: only a noun attends to a noun, so on natural
        # text the part is silent except at scan nouns, and a mean ablation's mean stays ~0)
        hr = {"positive": 0, "negative": 2, "format": 1}[variant]
        gr = hr * DH + {0: 2 * N_CAT + 1, 1: 1, 2: 0}[hr]
        w = math.sqrt(NOUN_GATE * sq) / LN0
        for j in range(2):
            W[NOUN + j, gr] = W[NOUN + j, D + gr] = w
        for j in range(2):
            W[NOUN + j, 2 * D + hr * DH + 30 + j] = 1.0
            O[hr * DH + 30 + j, ADJ + j] = 1.0
        a1.c_attn.weight.copy_(W)
        a1.c_attn.bias.copy_(bq)
        a1.c_proj.weight.copy_(O)
        # ---- unembedding (untied): labels read their label dim, adjectives their adjective dim
        U = torch.zeros(len(tok), D, dtype=dd)
        vocab = tok.get_vocab()
        for i, lab in enumerate(LABELS):
            U[vocab[lab], LAB + i] = 6.0
        for j, adj in enumerate(ADJECTIVES):
            U[vocab[adj], ADJ + j] = 12.0
        U[vocab["."], DEFAULT] = 3.0
        m.lm_head.weight.copy_(U)
        if noise:
            gen = torch.Generator().manual_seed(seed)
            for name, p in m.named_parameters():
                if p.dim() == 2 and "wpe" not in name and "wte" not in name:
                    p.add_(torch.randn(p.shape, generator=gen, dtype=dd).to(p.dtype) * noise)
    return m


def known_answer_handle(variant: str = "positive", **kw):
    """:class:`~ablate.model.handle.ModelHandle` around :func:`known_answer_model`."""
    from ablate.model.handle import ModelHandle

    return ModelHandle.from_hf(known_answer_model(variant, **kw), known_answer_tokenizer(),
                               locator=f"known-answer-{variant}")


def write_series(out: str | Path, variant: str = "positive", steps: tuple[int, ...] = (1000, 2000, 3000),
                 noise: float = 1e-3) -> Path:
    """Save the model as a checkpoint series (one folder per step, series.json with hashes) and the
    scan sentences (``OUT/scan_sentences.txt``). Step ``s`` gets the noise seed ``s``."""
    from checkpoints.series import Checkpoint, CheckpointSeries, hash_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = known_answer_tokenizer()
    cps = []
    for st in steps:
        folder = out / f"step_{st}"
        known_answer_model(variant, noise=noise, seed=st).save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        cps.append(Checkpoint(st, st * 1000, str(folder), hash_checkpoint(folder, st), {"variant": variant}))
    CheckpointSeries(cps, root=out, source=f"local:{out}").save_manifest(out)
    (out / "scan_sentences.txt").write_text("\n".join(SCAN_SENTENCES) + "\n")
    return out


def spec_dict(series: str | Path, *, random_sets: int = 19, items: int = 12, shots: tuple[int, ...] = (8,),
              rule: str = "topk", steps: str | list[int] = "all") -> dict:
    """The ``ablate run`` spec of the known-answer check (k = 1 SIH by the spec's rule, mean ablation,
    ``random_sets`` matched random sets, the :data:`TASKS`)."""
    series = Path(series)
    return {
        "name": "known_answer", "seed": 0,
        "series": {"path": str(series), "steps": steps},
        "scores": {"sentences": str(series / "scan_sentences.txt"), "relations": ["mod"],
                   "directions": ["forward"], "tau": 2.0, "nulls": ["baseline"], "copying": False,
                   "prefix_matching": False},
        "heads": {"select": "sih", "rule": rule, "k": 1, "min_events": 10, "induction": False,
                  "alpha": 0.05, "min_effect": 0.1},
        "controls": {"random_sets": random_sets},
        "operators": {"primary": "mean", "robustness": []},
        "icl": {"tasks": list(TASKS), "shots": list(shots), "items": items, "lr_documents": 2,
                "controls": ["clean", "nolabel"]},
    }


def spec_toml(series: str | Path, path: str | Path, **kw) -> Path:
    """Write :func:`spec_dict` as a spec file for ``ablate run`` (flat sections of scalars and lists)."""
    import json

    def val(v):
        return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")

    d = spec_dict(series, **kw)
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for sec, body in d.items():
        if isinstance(body, dict):
            lines += ["", f"[{sec}]"] + [f"{k} = {val(v)}" for k, v in body.items()]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
