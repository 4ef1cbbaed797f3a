"""``alexnet-exp-report``: the runs of an experiment (or of one sweep) compared across groups.

Runs are grouped by the params that differ between them (the swept ones), seeds pooled, so a
row is "this configuration, over its seeds": mean ± sample std (ddof=1; "–" for a single run).
Reading runs and logging the report go through :mod:`alexnet_exp.tracking`; the grouping and
its statistics are :mod:`alexnet_exp.report_groups`, the figures :mod:`alexnet_exp.report_plots`;
this module writes the tables (Markdown, CSV) and runs the tool.
"""

import csv
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from alexnet_exp.errors import UserError
from alexnet_exp.report_groups import COLUMNS, Group, Stat, make_groups

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What ``run_report`` produced, for a caller (a notebook, a test) to use further."""

    groups: list[Group]
    keys: list[str]
    output_dir: Path
    files: list[Path]
    markdown: str
    run_id: str | None = None


def scale_of(metric: str) -> float:
    """Accuracies read as percent (and their differences as percentage points)."""
    return 100.0 if "accuracy" in metric else 1.0


def fmt(value: float | None, digits: int, scale: float = 1.0) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * scale:,.{digits}f}"


def cell(stat: Stat, digits: int, scale: float = 1.0, count: bool = False) -> str:
    """"mean ± std", "–" for the std of a single run. A count that is the same for every run
    (the parameters of one configuration) is shown once, without "± 0"."""
    if count and not stat.std:
        return fmt(stat.mean, 0)
    return f"{fmt(stat.mean, digits, scale)} ± {fmt(stat.std, digits, scale)}"


def escape(label: str) -> str:
    return label.replace("|", "\\|")  # a "|" in a param value would split the table's cell


def table_markdown(groups: list[Group], metric: str) -> str:
    scale = scale_of(metric)
    unit = " (%)" if scale == 100 else ""
    lines = [f"| group | n | {metric}{unit} | best val_loss | epochs | train s | parameters |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for g in groups:
        s = g.stats
        lines.append(f"| {escape(g.label)} | {len(g.runs)} | {cell(s[metric], 2, scale)}"
                     f" | {cell(s['best_val_loss'], 4)} | {cell(s['epochs_run'], 1)}"
                     f" | {cell(s['train_seconds'], 1)} | {cell(s['parameters'], 0, count=True)} |")
    return "\n".join(lines)


def effects_markdown(groups: list[Group], metric: str, baseline: str) -> str:
    scale = scale_of(metric)
    unit = "pp" if scale == 100 else "units"
    base = groups[0]
    lines = [f"## Effect vs baseline ({baseline}, n={len(base.runs)})", "",
             f"Group mean minus baseline mean of {metric}, in {unit}; SE is the standard error"
             " of the difference, sqrt(s1²/n1 + s0²/n0) (Welch), – when a side has one run.",
             "", f"| group | n | Δ {metric} ({unit}) | SE ({unit}) | Δ/SE |",
             "|---|--:|--:|--:|--:|"]
    for g in groups[1:]:
        ratio = g.effect / g.effect_se if g.effect_se else None
        lines.append(f"| {escape(g.label)} | {len(g.runs)} | {fmt(g.effect, 2, scale)}"
                     f" | {fmt(g.effect_se, 2, scale)} | {fmt(ratio, 1)} |")
    return "\n".join(lines)


def render_markdown(title: str, groups: list[Group], keys: list[str], metric: str,
                    baseline: str, notes: list[str], plot_names: list[str],
                    link=lambda name: name) -> str:
    """The report; each plot inline where ``link(name)`` says it is (beside report.md)."""
    parts = [f"# {title}", "",
             f"{sum(len(g.runs) for g in groups)} FINISHED training runs in {len(groups)}"
             f" groups, grouped by {', '.join(keys) or '(nothing differs)'}; seeds pooled.",
             *notes, "", table_markdown(groups, metric), "",
             "Cells are mean ± sample std (ddof=1) over the group's runs, – for a single run;"
             " best val_loss is the minimum of each run's per-epoch val_loss; train s is"
             " train_seconds (wall time of fit).", ""]
    if groups and groups[0].label == baseline and len(groups) > 1:
        parts += [effects_markdown(groups, metric, baseline), ""]
    parts += [f"![{name}]({link(name)})" for name in plot_names]
    return "\n".join(parts) + "\n"


def write_csv(path: Path, groups: list[Group], metric: str) -> None:
    """The table's numbers unrounded, in the metric's own units (fractions, not percent)."""
    columns = (metric, *COLUMNS)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "n", *[f"{c}_{s}" for c in columns for s in ("mean", "std")],
                         "effect_vs_baseline", "effect_se", "run_ids"])
        for g in groups:
            numbers = [x for c in columns for x in (g.stats[c].mean, g.stats[c].std)]
            writer.writerow([g.label, len(g.runs), *["" if x is None else repr(x)
                                                     for x in (*numbers, g.effect, g.effect_se)],
                             " ".join(r.run_id for r in g.runs)])


def output_dir(cfg, launch_dir: Path) -> Path:
    """``output_dir``, or ``reports/<experiment>[-<parent id[:8]>]``, relative to the launch dir."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.experiment_name)
    default = f"reports/{name}" + (f"-{cfg.parent_run_id[:8]}" if cfg.parent_run_id else "")
    out = (launch_dir / Path(cfg.output_dir or default).expanduser()).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output_dir={out} cannot be created: {exc}") from exc
    return out


def usable_runs(runs: list, metric: str, notes: list[str]) -> list:
    """The runs that logged the metric; a metric no run has is a typo to point out."""
    have = [r for r in runs if r.metrics.get(metric) is not None]
    if not have:
        known = sorted(set().union(*(r.metrics for r in runs)))
        raise UserError(f"metric={metric}: no run logged it (they have {', '.join(known)})")
    if len(have) < len(runs):
        notes.append(f"Left out: {len(runs) - len(have)} run(s) without {metric}.")
    return have


def run_report(cfg, launch_dir: Path) -> Report:
    """Read the runs, group them, write report.md / report.csv / PNGs, log them to MLflow."""
    from alexnet_exp import report_plots, tracking
    from alexnet_exp.tool_config import validate_report

    validate_report(cfg)
    store = tracking.open_store(cfg.tracking, launch_dir, create=False)
    if cfg.parent_run_id:  # a prefix, as the sweep's summary shows it, becomes the whole id
        cfg = replace(cfg, parent_run_id=tracking.require_run(store, cfg.parent_run_id,
                                                              "parent_run_id"))
    if not cfg.experiment_name:  # the sweep's parent run says which experiment
        cfg = replace(cfg, experiment_name=tracking.parent_experiment(store, cfg.parent_run_id))
    selection = tracking.find_training_runs(store, cfg.experiment_name, cfg.parent_run_id)
    notes = [f"Left out: {n} {status} run{'s' * (n != 1)} (not FINISHED)." for status, n in
             sorted(selection.not_finished.items())]
    groups, keys = make_groups(usable_runs(selection.runs, cfg.metric, notes), cfg.metric,
                               cfg.baseline)
    out = output_dir(cfg, launch_dir)
    plots = report_plots.write_plots(out, groups, cfg.metric, scale_of(cfg.metric))
    title = f"Report: experiment {cfg.experiment_name}" + (
        f", sweep {cfg.parent_run_id}" if cfg.parent_run_id else "")
    page = (title, groups, keys, cfg.metric, cfg.baseline, notes, [p.name for p in plots])
    markdown = render_markdown(*page)
    (out / "report.md").write_text(markdown)
    write_csv(out / "report.csv", groups, cfg.metric)
    files = [out / "report.md", out / "report.csv", *plots]
    log.info(markdown.split("\n![")[0].rstrip())  # the tables, without the image links
    log.info("\nwritten: " + ", ".join(str(f) for f in files))
    report = Report(groups, keys, out, files, markdown)
    if cfg.log:
        # MLflow's preview resolves image links against its page: the run's copy links there.
        report.run_id = tracking.log_report(
            store, selection.experiment_id, files, cfg.parent_run_id,
            texts=lambda link: {"report.md": render_markdown(*page, link=link)})
        log.info(f"logged to MLflow run {report.run_id} under report/")
    return report
