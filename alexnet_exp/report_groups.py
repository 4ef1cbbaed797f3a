"""The numbers of ``alexnet-exp-report``: runs grouped by the params that differ between them,
seeds pooled, each group's mean ± sample std and its effect against the baseline.

Apart from :mod:`alexnet_exp.report` (which writes the tables and logs them) so the statistics
can be checked, and reused from a notebook, on plain run records: no files, no store.
"""

import math
import statistics
from dataclasses import dataclass, field

from alexnet_exp.keys import DATA_ROOT_TAG

# Params that differ between runs without making them different experiments: the seed (pooled
# over), where things are logged, sweep bookkeeping, console verbosity. data.dir is compared by
# the resolved data folder (tag data_root) instead, so "~/x" and "/home/me/x" are one group.
IGNORED_PARAMS = {"seed", "dry_run", "data.dir", "data.cache_path", "trainer.verbose"}
IGNORED_PREFIXES = ("tracking.", "sweep.", "hydra.")
VARIANT = "variant"  # a label set by experiment=six_ideas: when it differs, it alone groups
COLUMNS = ("best_val_loss", "epochs_run", "train_seconds", "parameters")


@dataclass
class Stat:
    """Mean and sample std (ddof=1) of the values present; std is None for a single value."""

    n: int
    mean: float
    std: float | None


@dataclass
class Group:
    """One configuration over its seeds: a row of the table, a line and a bar of the plots."""

    label: str
    runs: list  # tracking.TrainingRun
    stats: dict[str, Stat] = field(default_factory=dict)
    effect: float | None = None  # mean metric minus the baseline's mean metric
    effect_se: float | None = None  # sqrt(s1²/n1 + s0²/n0); None when either n is 1


def describe(values: list[float]) -> Stat:
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return Stat(0, math.nan, None)
    std = statistics.stdev(present) if len(present) > 1 else None
    return Stat(len(present), statistics.fmean(present), std)


def comparable_params(run) -> dict[str, str]:
    """The params that can tell two configurations apart, plus the resolved data folder."""
    params = {k: v for k, v in run.params.items()
              if k not in IGNORED_PARAMS and not k.startswith(IGNORED_PREFIXES)}
    if DATA_ROOT_TAG in run.tags:
        params[DATA_ROOT_TAG] = run.tags[DATA_ROOT_TAG]
    return params


def swept_keys(runs: list) -> list[str]:
    """Params whose values differ between runs; only ``variant`` when it is one of them."""
    params = [comparable_params(r) for r in runs]
    keys = sorted(set().union(*params))
    differing = [k for k in keys if len({p.get(k) for p in params}) > 1]
    return [VARIANT] if VARIANT in differing else differing


def label_of(run, keys: list[str]) -> str:
    params = comparable_params(run)
    if keys == [VARIANT]:
        return params.get(VARIANT, "(unset)")
    return ", ".join(f"{k}={params.get(k, '(unset)')}" for k in keys) or "all runs"


def run_values(run, metric: str) -> dict[str, float | None]:
    """One run's numbers; best_val_loss is the minimum of its per-epoch val_loss history."""
    losses = run.history.get("val_loss") or []
    epochs = run.metrics.get("epochs_run")
    if epochs is None:  # older runs: count the epochs of the history
        epochs = len(run.history.get("val_accuracy") or []) or None
    return {metric: run.metrics.get(metric),
            "best_val_loss": min(losses) if losses else run.metrics.get("best_val_loss"),
            "epochs_run": epochs,
            "train_seconds": run.metrics.get("train_seconds"),
            "parameters": run.metrics.get("parameters")}


def make_groups(runs: list, metric: str, baseline: str) -> tuple[list[Group], list[str]]:
    """Runs grouped by the swept params, with stats, effects and the order of the table:
    the baseline first, then best metric first."""
    keys = swept_keys(runs)
    by_label: dict[str, list] = {}
    for run in runs:
        by_label.setdefault(label_of(run, keys), []).append(run)
    groups = []
    for label, members in by_label.items():
        values = [run_values(r, metric) for r in members]
        stats = {c: describe([v[c] for v in values]) for c in (metric, *COLUMNS)}
        groups.append(Group(label, members, stats))
    sign = 1 if "loss" in metric or "seconds" in metric else -1  # lower is better for those
    groups.sort(key=lambda g: (g.label != baseline, sign * g.stats[metric].mean, g.label))
    base = next((g for g in groups if g.label == baseline), None)
    for group in groups:
        if base is not None and group is not base:
            group.effect, group.effect_se = effect(group.stats[metric], base.stats[metric])
    return groups, keys


def effect(group: Stat, base: Stat) -> tuple[float, float | None]:
    """Difference of means and its standard error (Welch: sqrt(s1²/n1 + s0²/n0))."""
    if group.std is None or base.std is None:
        return group.mean - base.mean, None
    return group.mean - base.mean, math.sqrt(group.std**2 / group.n + base.std**2 / base.n)
