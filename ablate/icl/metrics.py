"""Per-item ICL metrics under any batch of intervention conditions.

Entry points::

    from ablate.icl.metrics import evaluate_items, score_prompts
    df = evaluate_items(handle, items, conditions=[None, target_cond, *random_conds],
                        reference=ref_batch)       # one row per (condition, item)

How an item is scored
---------------------
The answer to a prompt is the continuation ``" " + label``. Tokenisers differ in how they cut it:
a word-level tokeniser gives one token ``"0"``; SmolLM2's byte-level BPE gives two, ``" "`` and
``"0"``; ``" true"`` may be one token or several. Every candidate label is therefore scored on its
**whole token sequence** by teacher forcing, as lm-evaluation-harness scores multiple choice:
``log P(label) = sum_j log p(c_j | prompt, c_<j)``. The candidate tokens are
``tok(prompt + " " + label)`` minus the tokens of ``tok(prompt)`` (the harness's rule; if the
tokeniser merges across the boundary, ``tok(" " + label)`` is appended instead). A shared leading
space token is thus never taken for the label: it is one factor of every candidate's probability.

**Greedy decision without a decoding loop.** Greedy decoding emits candidate ``c`` (as its first
``len(c)`` tokens) iff every token of ``c`` is the arg-max of the logits at its teacher-forced prefix.
Those logits are exactly the ones used to score ``c``, so the greedy decision over as many tokens as
the longest label needs comes from the same forward pass: no generation, no per-token Python loop
over the model. The candidates' token sequences form a prefix tree; the prompt is run once per
*maximal internal node* of that tree (``prompt + node``), which gives the logits at every internal
node. For single-token labels and for SmolLM2's ``" " + digit`` labels that is **one row per prompt**.
The greedy output is the longest candidate that the greedy path follows (so with labels ``1`` and
``10`` the output is ``10`` only if the path continues to ``0``), **provided the label ends there**:
the greedy token after it must not continue the label's text (a letter or digit right after it;
EOS, a space, a newline or punctuation end it). So with labels ``1`` and ``10`` a greedy ``15`` is not
a label and scores FC = 0, as the paper defines FC. The output is empty when the greedy path leaves
the label set. The logits after a whole label come free for the gold label (its row is extended by
its last token) and for labels that other labels extend; for any other label the greedy path
follows, a second pass runs ``prompt + label`` (one row per such item, under the same conditions).

Metrics (one value per condition x item)
----------------------------------------
=================  =========================================================================
``fc``             1 if the greedy output is in the prompt's label set and ends there (format compliance)
``pd``             1 if the greedy output is the gold label (exact, over the whole vocabulary)
``fc_cont``        probability mass on the label set, ``sum_c P(c)``
``pd_cont``        gold probability renormalised within the label set, ``P(gold) / sum_c P(c)``
``gold_logprob``   ``log P(gold)`` (whole token sequence)
``rank_in_labels`` rank of the gold among the candidates by ``log P`` (0 = best)
``greedy_first``   the arg-max next token after the prompt, decoded (for inspection)
``output``         the greedy output label, or ``""``
``demo_loss_first`` mean answer loss ``-log P(" " + shown label)`` of the first ``k`` demonstrations
``demo_loss_last``  same for the last ``k`` demonstrations, ``k = max(1, shots // 4)``
``lr_prompt``      ``demo_loss_first - demo_loss_last`` (loss reduction inside the prompt; > 0 =
                   later demonstrations are predicted better); NaN with fewer than 2 demonstrations
=================  =========================================================================

The label set is the prompt's full label set (the task's classes, i.e. the demonstrated set
whenever ``shots >= classes``; at lower shots a label of the same kind also counts as format).

Conditions
----------
Every forward pass goes through :func:`ablate.intervene.engine.run_conditions`: ``K`` conditions x ``B``
rows per pass, rows left-padded (position ids from the attention mask). Conditions act on the rows
as run, i.e. ``prompt + node`` (for SmolLM2's digit labels ``prompt + " "``): ``positions="last"``
is the last token of that row. A reducer gathers, at the needed positions only, the log-sum-exp, the
arg-max and the logits of the candidate / demonstration tokens, so memory stays small.

Activation patching (clean -> corrupted)
----------------------------------------
``evaluate_items(handle, corrupted_items, conditions, patch_from=clean_items)`` scores the
corrupted prompts (e.g. the ``shuffled``-label control) while every :class:`~ablate.intervene.engine.Patch`
in ``conditions`` writes the patched heads' outputs from the *clean* prompt of the same item. The
two prompts may tokenise to different lengths (shuffled labels can have other token counts), so the
patch acts at one aligned position: the **query's final prompt token** (the ``":"`` after which the
answer is read), in every forward row of the item. Each source row is ``clean prompt + the same
candidate node`` as its target row, both left-padded to a common length, and rows are grouped by
node length so that position is one explicit index per batch. Conditions without a ``Patch`` (the
corrupted baseline ``None``, mean/zero ablations) run on the same corrupted rows unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from ablate.model.errors import AblateError
from ablate.intervene.engine import capture_operator_inputs, run_conditions
from ablate.intervene.operators import Condition, Patch
from ablate.model.handle import ModelHandle, encode_ids, encode_many, pad_batch

__all__ = ["IclMetricError", "PreparedPrompt", "prepare_prompt", "score_prompts", "evaluate_items",
           "prompt_batch", "METRIC_COLUMNS"]

METRIC_COLUMNS = ("fc", "pd", "fc_cont", "pd_cont", "gold_logprob", "rank_in_labels",
                  "demo_loss_first", "demo_loss_last", "lr_prompt")


class IclMetricError(AblateError, ValueError):
    """A prompt or label cannot be scored (empty prompt, label with no tokens, duplicate labels)."""


@dataclass
class PreparedPrompt:
    """Token-level plan for one prompt.

    Attributes:
        prompt_ids: the prompt's tokens (with BOS if requested).
        labels: candidate label strings; ``gold`` indexes into them.
        cand_ids: token sequence of each candidate continuation ``" " + label``.
        rows: suffix (trie node) appended to the prompt for each forward row.
        node_loc: trie node -> (row index, index in that row whose logits predict the next token).
        demo_tokens: per shown demonstration, ``[(index of token in prompt_ids, token id), ...]``
            of its answer ``" " + label`` (empty when the prompt's tokenisation does not align).
    """

    prompt_ids: list[int]
    labels: tuple[str, ...]
    gold: int
    cand_ids: list[tuple[int, ...]]
    rows: list[tuple[int, ...]]
    node_loc: dict[tuple[int, ...], tuple[int, int]]
    demo_tokens: list[list[tuple[int, int]]] = field(default_factory=list)

    def row_positions(self, r: int) -> list[int]:
        """Positions (in the unpadded row) whose logits are needed from row ``r``."""
        pos = sorted({p for node, (rr, p) in self.node_loc.items() if rr == r})
        if r == 0:
            pos = sorted(set(pos) | {i - 1 for d in self.demo_tokens for i, _ in d})
        return pos


def prepare_prompt(tokenizer: Any, prompt: str, labels: Sequence[str], gold: str | int, *,
                   label_spans: Sequence[tuple[int, int]] = (), add_bos: bool = False) -> PreparedPrompt:
    """Tokenise a prompt and its candidate answers ``" " + label`` and plan the forward rows.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: the prompt text (ends with the query's ``":"``).
        labels: the candidate labels (distinct).
        gold: the gold label (string) or its index in ``labels``.
        label_spans: character spans of the shown demonstration answers (for ``lr_prompt``).
        add_bos: prepend the tokenizer's BOS token.

    Raises:
        IclMetricError: empty prompt or label set, gold not a candidate, a label with no tokens,
            two labels with the same token sequence.
    """
    labels = tuple(labels)
    if not labels:
        raise IclMetricError("prepare_prompt: empty label set")
    if len(set(labels)) != len(labels):
        raise IclMetricError(f"prepare_prompt: duplicate labels {labels}")
    if isinstance(gold, str):
        if gold not in labels:
            raise IclMetricError(f"gold label {gold!r} is not among the candidates {labels}")
        gold = labels.index(gold)
    # every encoding this prompt needs, in one tokenizer call (prompt, prompt + label, span prefixes)
    texts = [prompt] + [prompt + " " + lab for lab in labels] + [prompt[:x] for s, e in label_spans for x in (s, e)]
    enc = encode_many(tokenizer, texts)
    P, wholes, spans = enc[0], enc[1:1 + len(labels)], enc[1 + len(labels):]
    bos: list[int] = []
    if add_bos:
        if tokenizer.bos_token_id is None:
            raise IclMetricError("add_bos=True but the tokenizer has no BOS token")
        bos = [tokenizer.bos_token_id]
    if not P and not bos:
        raise IclMetricError("prepare_prompt: the prompt has no tokens (and no BOS was requested)")
    cands = []
    for lab, whole in zip(labels, wholes):
        c = whole[len(P):] if whole[:len(P)] == P else encode_ids(tokenizer, " " + lab)
        if not c:
            raise IclMetricError(
                f"label {lab!r} tokenises to nothing after the prompt (the tokenizer drops it?); "
                "use labels the tokenizer can represent"
            )
        cands.append(tuple(c))
    if len(set(cands)) != len(cands):
        raise IclMetricError(f"labels {labels} are not distinguishable after tokenisation: {cands}")
    internal = {c[:j] for c in cands for j in range(len(c))}
    maximal = sorted(n for n in internal if not any(len(m) > len(n) and m[:len(n)] == n for m in internal))
    maximal.sort(key=lambda n: (-len(n), n))
    ids = bos + P
    node_loc = {}
    for n in internal:
        r = next(i for i, m in enumerate(maximal) if m[:len(n)] == n)
        node_loc[n] = (r, len(ids) + len(n) - 1)
    # "the label ends there" needs the logits after a whole label: the gold's comes free by extending
    # the row that ends one token short of it (the other labels' come from a second pass, only when
    # the greedy path follows them; see score_prompts)
    g = cands[int(gold)]
    if g not in node_loc:
        r = next((i for i, m in enumerate(maximal) if g[:len(m)] == m and len(m) == len(g) - 1), None)
        if r is not None:
            maximal[r] = g
            node_loc[g] = (r, len(ids) + len(g) - 1)
    demo_tokens = []
    for n in range(len(label_spans)):
        a, b = spans[2 * n], spans[2 * n + 1]
        if P[:len(a)] == a and P[:len(b)] == b and len(b) > len(a) and len(a) + len(bos) >= 1:
            demo_tokens.append([(len(bos) + i, P[i]) for i in range(len(a), len(b))])
        else:
            demo_tokens.append([])
    return PreparedPrompt(ids, labels, int(gold), cands, maximal, node_loc, demo_tokens)


def prompt_batch(handle: ModelHandle, prompts: Sequence[str], *, add_bos: bool = False
                 ) -> dict[str, torch.Tensor]:
    """A left-padded batch of prompts (e.g. a ``reference`` batch for mean ablation)."""
    tok = handle.tokenizer
    pre = [tok.bos_token_id] if add_bos else []
    return pad_batch([pre + encode_ids(tok, p) for p in prompts], tok.pad_token_id, padding_side="left",
                     device=handle.device)


def _first_last(losses: list[float]) -> tuple[float, float]:
    n = len(losses)
    if n < 2:
        return math.nan, math.nan
    k = max(1, n // 4)
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


def _check_patching(conds: Sequence[Condition], patch_from: Sequence[PreparedPrompt] | None, N: int,
                    source: dict | None) -> bool:
    has_patch = any(isinstance(iv, Patch) for c in conds for iv in c.interventions)
    if patch_from is None:
        if has_patch:
            raise IclMetricError(
                "a Patch condition needs the clean prompt of every item: pass patch_from= (clean items "
                "for evaluate_items, prepared clean prompts for score_prompts)")
        return False
    if len(patch_from) != N:
        raise IclMetricError(f"patch_from has {len(patch_from)} prompts but {N} are scored; "
                             "give one clean prompt per corrupted prompt, in the same order")
    if source is not None:
        raise IclMetricError("give either source= (resample ablation) or patch_from= (patching), not both")
    bad = [str(iv) for c in conds for iv in c.interventions if isinstance(iv, Patch) and iv.positions != "last"]
    if bad:
        raise IclMetricError(f"patching ICL prompts acts at the query's final prompt token: use "
                             f"positions='last' (got {bad})")
    return True


def _patch_at(c: Condition, pos: int) -> Condition:
    """``c`` with its Patch interventions moved to the explicit position ``pos``."""
    ivs = tuple(replace(iv, positions=(pos,)) if isinstance(iv, Patch) else iv for iv in c.interventions)
    return Condition(c.name, ivs)


def _by_length(pp: PreparedPrompt, followed: list[bool]) -> list[int]:
    """Indices of the candidates the greedy path follows, longest first."""
    return sorted((c for c, ok in enumerate(followed) if ok), key=lambda c: -len(pp.cand_ids[c]))


class _LabelEnd:
    """Does the greedy token ``t`` after a label's tokens ``c`` end the label?

    Yes when ``t`` is EOS, or when decoding ``c + [t]`` adds, after the label's own text, nothing or a
    character that is not a letter or digit (a space, newline or punctuation). So with labels 1 and
    10 a greedy "15" is no label, and " A" followed by "pple" is not the label A. Word-level
    tokenizers, whose decoding separates tokens by spaces, always end a label.
    """

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        self.eos = getattr(tok, "eos_token_id", None)
        self.cache: dict[tuple[tuple[int, ...], int], bool] = {}

    def __call__(self, c: tuple[int, ...], t: int) -> bool:
        key = (c, int(t))
        if key not in self.cache:
            if t == self.eos:
                self.cache[key] = True
            else:
                a, b = self.tok.decode(list(c)), self.tok.decode(list(c) + [int(t)])
                nxt = b[len(a):] if b.startswith(a) else " "
                self.cache[key] = not nxt or not nxt[0].isalnum()
        return self.cache[key]


def _forward_rows(handle: ModelHandle, prepared: Sequence[PreparedPrompt], rows: list, conds: list, *,
                  reference: dict | None, source: dict | None, batch_size: int,
                  patch_from: Sequence[PreparedPrompt] | None, progress: bool, desc: str,
                  reused: dict[str, dict] | None = None) -> dict:
    """Run ``rows`` = [(prompt index, suffix, ids, positions)] under every condition.

    Returns ``{(prompt index, suffix): [per condition {position: (lse, argmax, logits of U, column map)}]}``.
    """
    K = len(conds)
    tok = handle.tokenizer
    patching = patch_from is not None
    if patching:  # one suffix length per batch, so the query token is one explicit position
        order = sorted(range(len(rows)), key=lambda j: (len(rows[j][1]), len(rows[j][2]), j))
        batches = []
        for j in order:
            L = len(rows[j][1])
            if batches and len(batches[-1]) < batch_size and batches[-1][-1][0] == L:
                batches[-1].append((L, j))
            else:
                batches.append([(L, j)])
        batches = [[j for _, j in b] for b in batches]
    else:
        order = sorted(range(len(rows)), key=lambda j: (len(rows[j][2]), j))
        batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:  # a lone last row has no other row to resample from
            last = batches.pop()
            batches[-1] = batches[-1] + last
    reused = {} if reused is None else reused  # the mean-ablation reference's capture, shared by every pass
    # gathered[(i, r)][k] -> {pos: (lse, argmax, {tok: logit})}
    gathered: dict[tuple[int, int], list[dict[int, tuple[float, int, dict[int, float]]]]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(order), desc=desc, unit="row", leave=False)
    for bidx in batches:
        B = len(bidx)
        ids = [rows[j][2] for j in bidx]
        bconds, bsource = conds, source
        if patching:
            L = len(rows[bidx[0]][1])
            src_ids = [patch_from[rows[j][0]].prompt_ids + list(rows[j][1]) for j in bidx]
            both = pad_batch(ids + src_ids, tok.pad_token_id, padding_side="left", device=handle.device)
            batch = {k: v[:B] for k, v in both.items()}
            bsource = {k: v[B:] for k, v in both.items()}
            bconds = [_patch_at(c, -(L + 1)) for c in conds]
        else:
            batch = pad_batch(ids, tok.pad_token_id, padding_side="left", device=handle.device)
        T = batch["input_ids"].shape[1]
        Pmax = max(len(rows[j][3]) for j in bidx)
        pos = torch.zeros(B, Pmax, dtype=torch.long)
        for b, j in enumerate(bidx):
            p = [T - len(rows[j][2]) + q for q in rows[j][3]]
            pos[b] = torch.tensor(p + [p[-1]] * (Pmax - len(p)))
        vocab_ids = sorted({t for j in bidx for c in prepared[rows[j][0]].cand_ids for t in c}
                           | {t for j in bidx if tuple(rows[j][1]) == tuple(prepared[rows[j][0]].rows[0]) for d in prepared[rows[j][0]].demo_tokens
                              for _, t in d})
        U = torch.tensor(vocab_ids, dtype=torch.long)

        def reducer(logits: torch.Tensor, rs: slice, U=U) -> torch.Tensor:
            sel = logits.float()  # [n, Pmax, V]: gathered at pos before the unembedding (gather=)
            lse = torch.logsumexp(sel, -1, keepdim=True)
            am = sel.argmax(-1, keepdim=True).float()
            return torch.cat([lse, am, sel[:, :, U.to(logits.device)]], -1).cpu()

        # the mean-ablation reference is the same for every batch: capture its head outputs once
        captured = capture_operator_inputs(handle, batch, bconds, reference=reference, source=bsource, reuse=reused)
        reused.update(captured)
        out = run_conditions(handle, batch, bconds, reference=reference, source=bsource, reduce=reducer,
                             captured=captured, gather=pos)
        out = out.double().numpy()  # [K, B, Pmax, 2+|U|]
        col = {t: 2 + n for n, t in enumerate(vocab_ids)}
        for b, j in enumerate(bidx):
            i, r, _, plist = rows[j]
            per_k = []
            for k in range(K):
                d = {}
                for n, q in enumerate(plist):
                    v = out[k, b, n]
                    d[q] = (float(v[0]), int(v[1]), v, col)
                per_k.append(d)
            gathered[(i, r)] = per_k  # r: the suffix
        if bar is not None:
            bar.update(B)
    if bar is not None:
        bar.close()
    return gathered


def score_prompts(handle: ModelHandle, prepared: Sequence[PreparedPrompt], conditions: Sequence[Any] = (None,),
                  *, reference: dict | None = None, source: dict | None = None, batch_size: int = 16,
                  patch_from: Sequence[PreparedPrompt] | None = None,
                  progress: bool = False, desc: str = "icl") -> dict[str, np.ndarray]:
    """Score prepared prompts under ``K`` conditions; arrays ``[K, N]`` per metric.

    Args:
        handle: the model.
        prepared: from :func:`prepare_prompt`.
        conditions: anything :func:`~ablate.intervene.engine.run_conditions` accepts (``None`` = clean).
        reference: batch for mean ablation (e.g. :func:`prompt_batch` of other prompts).
        source: passed to ``run_conditions`` for every forward batch (ResampleAblate; rows are
            regrouped into batches here, so use ``patch_from`` for row-aligned patching).
        batch_size: forward rows per condition per pass (a pass runs ``K * batch_size`` rows).
        patch_from: the clean prompt of every prompt (same length as ``prepared``): each ``Patch``
            condition writes its heads' outputs from it at the query's final prompt token (module
            docstring, "Activation patching"). Patches must use ``positions="last"``.
        progress: show a tqdm bar.

    Returns:
        ``{metric: float array [K, N]}`` for :data:`METRIC_COLUMNS`, plus ``"output"`` and
        ``"greedy_first"`` (object arrays of strings).
    """
    conds = [Condition.coerce(c) for c in conditions]
    if not conds:
        raise IclMetricError("score_prompts: no conditions (use [None] for the clean run)")
    K, N = len(conds), len(prepared)
    tok = handle.tokenizer
    patching = _check_patching(conds, patch_from, N, source)
    # all forward rows (prompt index, suffix, ids, positions to gather)
    rows = [(i, tuple(node), pp.prompt_ids + list(node), pp.row_positions(r))
            for i, pp in enumerate(prepared) for r, node in enumerate(pp.rows)]
    reused: dict[str, dict] = {}
    gathered = _forward_rows(handle, prepared, rows, conds, reference=reference, source=source,
                             batch_size=batch_size, patch_from=patch_from if patching else None,
                             progress=progress, desc=desc, reused=reused)

    def at(i, k, node):
        pp = prepared[i]
        if node in pp.node_loc:
            r, q = pp.node_loc[node]
            return gathered[(i, tuple(pp.rows[r]))][k][q]
        return gathered[(i, node)][k][len(pp.prompt_ids) + len(node) - 1]

    # the greedy path: which candidates it follows; the longest one is the output if the label ends there
    followed = [[[all(at(i, k, c[:j])[1] == t for j, t in enumerate(c)) for c in pp.cand_ids]
                 for i, pp in enumerate(prepared)] for k in range(K)]
    leaves = sorted({(i, pp.cand_ids[c]) for k in range(K) for i, pp in enumerate(prepared)
                     for c in _by_length(pp, followed[k][i])[:1]
                     if pp.cand_ids[c] not in pp.node_loc})
    if leaves:  # second pass: the logits after a followed label nobody else extends
        rows2 = [(i, c, prepared[i].prompt_ids + list(c), [len(prepared[i].prompt_ids) + len(c) - 1])
                 for i, c in leaves]
        if len(rows2) == 1:  # resample ablation needs >= 2 rows in a batch: score the row twice
            rows2 = rows2 * 2
        gathered.update(_forward_rows(handle, prepared, rows2, conds, reference=reference, source=source,
                                      batch_size=batch_size, patch_from=patch_from if patching else None,
                                      progress=False, desc=desc, reused=reused))
    ends = _LabelEnd(tok)

    res = {m: np.full((K, N), np.nan) for m in METRIC_COLUMNS}
    res["output"] = np.full((K, N), "", dtype=object)
    res["greedy_first"] = np.full((K, N), "", dtype=object)
    for i, pp in enumerate(prepared):
        for k in range(K):
            logp = []
            for c in pp.cand_ids:
                lp = 0.0
                for j, t in enumerate(c):
                    lse, am, v, col = at(i, k, c[:j])
                    lp += v[col[t]] - lse
                logp.append(lp)
            logp = np.array(logp)
            order = _by_length(pp, followed[k][i])
            out_idx = order[0] if order and ends(pp.cand_ids[order[0]], at(i, k, pp.cand_ids[order[0]])[1]) else None
            lse_all = np.logaddexp.reduce(logp)
            g = pp.gold
            res["fc"][k, i] = float(out_idx is not None)
            res["pd"][k, i] = float(out_idx == g)
            res["fc_cont"][k, i] = float(np.exp(lse_all))
            res["pd_cont"][k, i] = float(np.exp(logp[g] - lse_all))
            res["gold_logprob"][k, i] = float(logp[g])
            res["rank_in_labels"][k, i] = float((logp > logp[g]).sum())
            res["output"][k, i] = pp.labels[out_idx] if out_idx is not None else ""
            res["greedy_first"][k, i] = tok.decode([at(i, k, ())[1]])
            # loss on the shown answers inside the prompt (row 0 holds the whole prompt)
            losses = []
            for dtoks in pp.demo_tokens:
                if not dtoks:
                    continue
                l = 0.0
                for q, t in dtoks:
                    lse, am, v, col = gathered[(i, tuple(pp.rows[0]))][k][q - 1]
                    l -= v[col[t]] - lse
                losses.append(l)
            if len(pp.demo_tokens) >= 2 and len(losses) == len(pp.demo_tokens):
                f, la = _first_last(losses)
                res["demo_loss_first"][k, i], res["demo_loss_last"][k, i] = f, la
                res["lr_prompt"][k, i] = f - la
    return res


def evaluate_items(handle: ModelHandle, items: Sequence[Any], conditions: Sequence[Any] = (None,), *,
                   reference: dict | None = None, source: dict | None = None, batch_size: int = 16,
                   add_bos: bool = False, progress: bool = False, desc: str = "icl",
                   patch_from: Sequence[Any] | None = None):
    """Per-item ICL metrics of :class:`~ablate.icl.tasks.IclItem` s under ``K`` conditions.

    All ``K`` conditions of a batch run in one traced forward pass (``K x batch_size`` rows) via
    :func:`~ablate.intervene.engine.run_conditions`.

    Args:
        handle: the model.
        items: prompt items (``ablate.icl.tasks.make_items``).
        conditions: e.g. ``[None, target_condition, *random_conditions]``; ``None`` is the clean run.
        reference: batch for mean-ablation means (see :func:`prompt_batch`).
        source: batch for resample ablation (optional).
        batch_size: rows per condition per forward pass.
        add_bos: prepend BOS to every prompt.
        progress: show a progress bar.
        patch_from: the clean item of every item (same order), for ``Patch`` conditions: see
            "Activation patching" in the module docstring.

    Returns:
        A ``pandas.DataFrame`` with one row per (condition, item): ``condition`` (name),
        ``condition_index``, the item key (``task, shots, item, control``), ``n_classes``,
        ``chance`` (= 1/n_classes), ``gold``, ``output``, ``greedy_first`` and the metrics of
        :data:`METRIC_COLUMNS` (see the module docstring).

    Raises:
        IclMetricError: empty ``items``, or a label cannot be scored.
    """
    import pandas as pd

    items = list(items)
    if not items:
        raise IclMetricError("evaluate_items: no items given (did make_items get n_items=0?)")
    conds = [Condition.coerce(c) for c in conditions]
    if patch_from is not None:
        patch_from = list(patch_from)
        if len(patch_from) != len(items):
            raise IclMetricError(f"patch_from has {len(patch_from)} items but {len(items)} are scored; "
                                 "give one clean item per corrupted item, in the same order")
        off = [(a.key(), b.key()) for a, b in zip(items, patch_from)
               if (a.task, a.shots, a.item) != (b.task, b.shots, b.item) or a.gold != b.gold]
        if off:
            raise IclMetricError(f"patch_from is not aligned with the items: first mismatch {off[0]}")
    # identical prompts (e.g. the three controls at 0 shots) are scored once
    uniq: dict[tuple, int] = {}
    where = [uniq.setdefault((it.prompt, tuple(it.labels), it.gold,
                              None if patch_from is None else patch_from[i].prompt), len(uniq))
             for i, it in enumerate(items)]
    firsts = {u: i for i, u in reversed(list(enumerate(where)))}

    def prep(it):
        return prepare_prompt(handle.tokenizer, it.prompt, it.labels, it.gold, label_spans=it.label_spans,
                              add_bos=add_bos)

    prepared_u = [prep(items[firsts[u]]) for u in range(len(uniq))]
    sources_u = None if patch_from is None else [prep(patch_from[firsts[u]]) for u in range(len(uniq))]
    res_u = score_prompts(handle, prepared_u, conds, reference=reference, source=source,
                          batch_size=batch_size, patch_from=sources_u, progress=progress, desc=desc)
    res = {m: v[:, where] for m, v in res_u.items()}
    prepared = [prepared_u[u] for u in where]
    recs = []
    for k, c in enumerate(conds):
        for i, it in enumerate(items):
            r = {"condition": c.name, "condition_index": k, **it.key(), "n_classes": it.n_classes,
                 "chance": 1.0 / it.n_classes, "gold": it.gold, "output": res["output"][k, i],
                 "greedy_first": res["greedy_first"][k, i], "n_tokens": len(prepared[i].prompt_ids)}
            for m in METRIC_COLUMNS:
                r[m] = float(res[m][k, i])
            recs.append(r)
    return pd.DataFrame.from_records(recs)
