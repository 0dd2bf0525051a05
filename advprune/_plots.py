"""The figures of ``advprune demo`` and ``advprune prune --hist``.

matplotlib is the optional ``plot`` extra: it is imported only here, when a
figure is asked for. The figures are drawn with matplotlib's object-oriented
API (``Figure``, rendered by Agg), which never touches pyplot's global backend,
so that drawing from a notebook or a server changes nothing around it, and
written atomically like every other output.
"""

import textwrap

import numpy as np

from ._io import replacing

__all__ = []

_INSTALL = 'pip install -e ".[plot]" in a checkout, or pip install matplotlib'


def require_matplotlib(what):
    """matplotlib's ``Figure`` class; ImportError naming ``what`` needs it and
    how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"{what} needs matplotlib, the 'plot' extra of advprune: {_INSTALL}."
        ) from exc
    return Figure


def _save(fig, path):
    with replacing(path) as temporary, open(temporary, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return path


def score_histogram(path, scores, support, *, groups=None, threshold=True, title):
    """Histogram of importance scores, kept against pruned.

    ``groups`` (``{label: mask}``) compares groups of samples instead, as
    densities: the first filled, the others outlined (e.g. direct against
    extrapolated scores, or off-class samples against the rest);
    ``threshold`` marks the lowest kept score, the cut of the 'lowest' rule
    (other rules keep samples across the range and have none).
    """
    Figure = require_matplotlib(f"the histogram {str(path)!r}")
    scores = np.asarray(scores, dtype=np.float64)
    bins = np.linspace(scores.min(), scores.max(), 41)
    if bins[0] == bins[-1]:
        bins = 40
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    if groups is None:
        ax.hist(
            [scores[support], scores[~support]],
            bins=bins,
            stacked=True,
            label=[f"kept ({support.sum()})", f"pruned ({(~support).sum()})"],
        )
        ax.set_ylabel("samples")
    else:
        for index, (label, mask) in enumerate(groups.items()):
            style = (
                {"alpha": 0.6} if index == 0 else {"histtype": "step", "linewidth": 2}
            )
            ax.hist(scores[mask], bins=bins, density=True, label=label, **style)
        ax.set_ylabel("density")
    if threshold and support.any() and not support.all():
        cut = scores[support].min()
        ax.axvline(
            cut,
            color="black",
            linestyle="--",
            label=f"threshold {cut:.3g} (lowest kept score)",
        )
    ax.set_xlabel("importance score (higher = more important = kept)")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def accuracy_bars(path, rows, *, robust_label):
    """Grouped bars of clean and robust accuracy, one group per training set,
    each bar labelled with its value."""
    Figure = require_matplotlib(f"the plot {str(path)!r}")
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(rows))
    width = 0.38
    for offset, key, label in (
        (-width / 2, "clean_accuracy", "clean"),
        (width / 2, "robust_accuracy", robust_label),
    ):
        values = [row[key] for row in rows]
        bars = ax.bar(positions + offset, values, width, label=label)
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=9)
    ax.set_xticks(
        positions,
        [f"{textwrap.fill(r['method'], 14)}\n({r['n_train']} samples)" for r in rows],
    )
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("accuracy on the real test digits")
    ax.set_title("Clean and robust accuracy by training set")
    ax.legend(loc="upper center", ncols=2)
    return _save(fig, path)
