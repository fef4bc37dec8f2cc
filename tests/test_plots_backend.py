"""plots.py leaves matplotlib's global state alone: a notebook user's backend and open figures survive
importing neuronxa_callback and drawing every figure. Run in a fresh interpreter: the backend is process-global."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    import matplotlib
    matplotlib.use("svg")                      # stands in for a notebook's inline / GUI backend
    import matplotlib.pyplot as plt

    mine = plt.figure()                        # the user's open figure
    import neuronxa_callback                   # noqa: F401
    from neuronxa_callback.sinks import figures as plots  # noqa: F401
    from neuronxa_callback.offline import report  # noqa: F401

    out = sys.argv[1]
    paths = [
        plots.plot_layer_heatmap([0, 2], [[0.1, 0.2], [0.2, 0.3]], out + "/heat.png", pair="p"),
        plots.plot_alignment_and_quality([0, 2, 4], [0.1, 0.2, 0.3], {"chrf": [10.0, None, 12.0]}, out + "/trend.png",
                                         pair="p", chance=0.01),
        plots.plot_alignment_vs_quality([0.1, 0.2, 0.3], [10.0, 11.0, 13.0], out + "/scatter.png", pair="p",
                                        quality_metric="chrf", steps=[0, 2, 4]),
        plots.plot_layer_correlations([0.5, None, -0.2], out + "/layers.png", pair="p", quality_metric="chrf",
                                      best_layer=0),
        plots.plot_layer_profile({"pairs": {"p": {"nasca": [0.1, 0.3], "nasca_mean": 0.2}}}, out + "/profile.png"),
    ]
    assert all(open(p, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n" for p in paths), paths
    print("backend:", matplotlib.get_backend())
    print("user figure open:", plt.fignum_exists(mine.number))
    print("pyplot figures:", len(plt.get_fignums()))
    """
)


def test_drawing_keeps_the_users_backend_and_figures(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert lines["backend"] == "svg"
    assert lines["user figure open"] == "True"
    assert lines["pyplot figures"] == "1"  # ours never entered pyplot's registry
