import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def tiny_series(tmp_path_factory):
    """The ``tiny`` preset's checkpoint series (7 checkpoints, 2 layers x 2 heads), trained once."""
    out = tmp_path_factory.mktemp("series") / "tiny"
    subprocess.run([sys.executable, "-m", "experiments.commands.train", "--preset", "tiny", "--out", str(out),
                    "--no-progress"], check=True, capture_output=True)
    return out
