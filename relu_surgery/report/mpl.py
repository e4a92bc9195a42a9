"""Matplotlib without global state: figures on their own Agg canvas, saved with local settings.

No ``matplotlib.use`` and no pyplot: the caller's backend, open figures and rc settings are never
touched, and a figure is freed when it goes out of scope.

Example:
    >>> import io
    >>> fig = new_figure(figsize=(2, 1))
    >>> ax = fig.subplots()
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> buffer = io.BytesIO()
    >>> save_figure(fig, buffer, format="svg")
    >>> buffer.getvalue()[:5]
    b'<?xml'
"""

from __future__ import annotations

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure"]


def new_figure(**kwargs) -> Figure:
    """A :class:`matplotlib.figure.Figure` (``figsize=``, ...) with its own Agg canvas.

    Example:
        >>> new_figure(figsize=(3, 2)).get_size_inches().tolist()
        [3.0, 2.0]
    """
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, target, **kwargs) -> None:
    """``fig.savefig(target, **kwargs)`` with SVG text kept as text (a local rc setting).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "f.png")
        >>> save_figure(new_figure(figsize=(1, 1)), path)
        >>> os.path.getsize(path) > 0
        True
    """
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(target, **kwargs)
