"""Matplotlib figures logged with each run: training curves and the confusion matrix.

Figures are returned, not saved, so the caller decides where they go (MLflow, a report).
"""

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in sweeps with no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def training_curves(history: list[dict]):
    """Loss and accuracy per epoch, train and validation side by side."""
    epochs = np.arange(1, len(history) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [h.get(prefix + metric, np.nan) for h in history]
            ax.plot(epochs, values, style, marker="o", label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str], title: str):
    """Counts with row-normalised colour, so small classes read as clearly as large ones."""
    size = max(4.0, 0.6 * len(class_names) + 2)
    figure, ax = plt.subplots(figsize=(size, size))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in ticks:
        for j in ticks:
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    figure.tight_layout()
    return figure


def close(figure) -> None:
    plt.close(figure)
