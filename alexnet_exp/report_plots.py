"""The two figures of ``alexnet-exp-report``: validation curves and the metric, per group.

Kept apart from :mod:`alexnet_exp.plots` (the figures of one run); same headless backend.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers with no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def epoch_mean_std(histories: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and sample std per epoch over the runs that reached that epoch.

    Runs that stopped early simply drop out of the later epochs rather than being padded;
    the std is NaN where fewer than two runs remain.
    """
    length = max((len(h) for h in histories), default=0)
    grid = np.full((len(histories), length), np.nan)
    for i, history in enumerate(histories):
        grid[i, : len(history)] = history
    counts = np.sum(~np.isnan(grid), axis=0)
    mean = np.nanmean(grid, axis=0) if length else np.array([])
    std = np.full(length, np.nan)
    several = counts >= 2
    std[several] = np.nanstd(grid[:, several], axis=0, ddof=1)
    return np.arange(1, length + 1), mean, std


def curves_figure(groups: list[tuple[str, list[list[float]]]], metric: str, scale: float = 1.0):
    """One line per group (the mean over its runs) with a ±1 std band: the spread over seeds
    shows at a glance whether two groups' curves really differ."""
    figure, ax = plt.subplots(figsize=(8, 5))
    for label, histories in groups:
        epochs, mean, std = epoch_mean_std(histories)
        if not len(epochs):
            continue
        (line,) = ax.plot(epochs, mean * scale, marker="o", markersize=3,
                          label=f"{label} (n={len(histories)})")
        ax.fill_between(epochs, (mean - std) * scale, (mean + std) * scale,
                        color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric + (" (%)" if scale == 100 else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{metric} per epoch: group mean, band = ±1 std over runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def by_group_figure(labels: list[str], means: list[float], stds: list[float | None],
                    metric: str, scale: float = 1.0):
    """The headline metric per group: a point at the mean with ±1 std whiskers (none for a
    single run, whose spread is unknown: a zero-length whisker would claim it is exact).

    Points, not bars: the axis fits the data (98.3 % and 97.5 % must look different), and a
    bar whose axis does not start at 0 would draw lengths that lie about the ratio.
    """
    figure, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 5))
    positions = np.arange(len(labels))
    centres = np.asarray(means, float) * scale
    spread = np.asarray([s if s is not None else 0.0 for s in stds], float) * scale
    ax.errorbar(positions, centres, yerr=np.where(np.isnan(spread), 0.0, spread), fmt="o",
                color="tab:blue", ecolor="black", capsize=4, markersize=7)
    ax.set_ylim(*value_limits(centres, spread))
    ax.set_xticks(positions, labels, rotation=30, ha="right")
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel(metric + (" (%)" if scale == 100 else ""))
    ax.set_title(f"{metric} by group (mean, whiskers = ±1 std)")
    ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def value_limits(centres: np.ndarray, spread: np.ndarray) -> tuple[float, float]:
    """The y range of the by-group plot: every whisker inside, with a margin of 15 % of the
    range (or of the value itself when all groups are equal)."""
    finite = np.isfinite(centres)
    if not finite.any():
        return 0.0, 1.0
    spread = np.where(np.isfinite(spread), spread, 0.0)
    low = float(np.min((centres - spread)[finite]))
    high = float(np.max((centres + spread)[finite]))
    margin = 0.15 * (high - low) or 0.05 * abs(high) or 0.5
    return low - margin, high + margin


def write_plots(out: Path, groups: list, metric: str, scale: float) -> list[Path]:
    """The report's PNGs in ``out``: val_accuracy curves and the metric, per group."""
    curves = out / "val_accuracy_curves.png"
    save(curves_figure([(g.label, [r.history.get("val_accuracy") or [] for r in g.runs])
                        for g in groups], "val_accuracy", scale=100.0), curves)
    by_group = out / f"{metric}_by_group.png"
    save(by_group_figure([f"{g.label} (n={len(g.runs)})" for g in groups],
                         [g.stats[metric].mean for g in groups],
                         [g.stats[metric].std for g in groups], metric, scale=scale), by_group)
    return [curves, by_group]


def save(figure, path) -> None:
    """Write a PNG and free the figure (a report may draw many in one process)."""
    figure.savefig(path, dpi=120)
    plt.close(figure)
