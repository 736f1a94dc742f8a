"""``ablate demo --out RUN``: the end-to-end demo (experiments.demo) as a command."""

from __future__ import annotations

import click

from experiments.demo import CONFIGS, run_demo


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Run folder (re-run to resume).")
@click.option("--preset", type=click.Choice(sorted(CONFIGS)), default="default", show_default=True,
              help="'default': the demo series + SmolLM2-135M (about 30 min on 2 cores); 'tiny': seconds, for tests.")
@click.option("--skip-pretrained", is_flag=True, help="Only part A (the training series).")
@click.option("--skip-training", is_flag=True, help="Only part B (the pretrained model).")
@click.option("--train", "train", is_flag=True,
              help="Train the preset's series (1 torch thread, cached by config hash) instead of using the "
                   "series embedded in the package (the default preset ships one; ~15 min to train).")
@click.option("--no-progress", is_flag=True)
def demo_command(out, preset, skip_pretrained, skip_training, train, no_progress):
    """End-to-end demo: scan/ICL/ablate/stats/figures across training (the embedded series), then on SmolLM2-135M."""

    run_demo(out, preset, progress=not no_progress, skip_pretrained=skip_pretrained,
             skip_training=skip_training, train=train)
