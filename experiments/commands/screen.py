"""``ablate screen MODEL``: attribution-patching screen of every head on few-shot prompts, then the
top heads measured exactly (ablate.intervene.atp.screen_and_verify)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("screen")
@click.argument("model")
@click.option("--task", default="pd_category_letter", show_default=True, help="ICL task whose prompts are scored.")
@click.option("--shots", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--items", default=8, show_default=True, type=click.IntRange(1, 512), help="Prompts (queries).")
@click.option("--operator", type=click.Choice(["zero", "mean"]), default="zero", show_default=True)
@click.option("--top", default=8, show_default=True, type=click.IntRange(1, 4096),
              help="Heads verified exactly (largest |AtP estimate|).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the tidy table (every head) to this new .csv file.")
def screen_command(model, task, shots, items, operator, top, seed, out):
    """Estimate every head's effect on the gold label's log-probability by AtP (one forward + one
    backward), then measure the top heads exactly. Effect = metric(ablated) - metric(clean)."""
    if out is not None and Path(out).exists():
        raise click.ClickException(f"--out {out} exists; give a new file name (screen never overwrites a file)")
    from ablate import load_model
    from ablate.icl.tasks import make_items
    from ablate.intervene.atp import last_token_logprob, screen_and_verify
    from ablate.model.handle import encode_ids

    h = load_model(model)
    its = make_items(task, [shots], items, seed=seed, controls=["clean"])
    batch = h.encode([it.prompt for it in its], padding_side="left")
    gold = [encode_ids(h.tokenizer, " " + it.gold)[0] for it in its]
    import torch

    ref = None
    if operator == "mean":
        ref = h.encode([it.prompt for it in make_items(task, [shots], items, seed=seed + 1, controls=["clean"])],
                       padding_side="left")
    df = screen_and_verify(h, batch, last_token_logprob(torch.tensor(gold)), operator, k=top, reference=ref)
    df.insert(0, "task", task)
    shown = df.dropna(subset=["exact_effect"])
    click.echo(f"{h.locator}: {len(df)} heads screened on {items} {task} prompts ({shots} shots), "
               f"{operator} ablation; top {top} by |AtP| verified exactly (effect on log P(gold)):")
    for r in shown.itertuples():
        click.echo(f"  #{r.rank:<3d} L{r.layer}H{r.head:<3d} AtP {r.atp_effect:+.4f}   exact {r.exact_effect:+.4f}")
    if out is not None:
        df.to_csv(out, index=False)
        click.echo(f"table: {out}")
