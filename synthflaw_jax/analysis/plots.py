"""Matplotlib figures drawn off-screen (Agg canvas, no pyplot global state) and saved as PNG."""
from __future__ import annotations

import pathlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SYNTHETIC_COLOR = "#d62728"
REFERENCE_COLOR = "#1f77b4"


def new_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    """A Figure bound to an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path) -> str:
    """Save `fig` as a PNG at `path`; returns the path as a string."""
    path = pathlib.Path(path)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return str(path)
