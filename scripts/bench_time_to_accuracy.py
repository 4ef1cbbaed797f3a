"""Time to accuracy, the headline: ``alexnet-exp experiment=flowers_fast`` (or
``--experiment flowers_best``) from scratch on flower_photos_224 (seeded, stratified 80/20
split), timed from launching the command, once per ``--seeds``.

Wall time on a shared machine is not stable (the same run took 10 s per epoch one day and 19 s
another), so minutes are also *normalised*: a wall minute times the machine's 4096² float32
matmul GFLOP/s over the reference 480, measured right before and right after each run (their
mean). A slow day gets a longer wall budget, a fast day a shorter one. The result is judged in
normalised minutes: the best val accuracy reached within the experiment's budget (10 for
flowers_fast, target 85%; 60 for flowers_best, target 90%), as mean ± std over the seeds.

Writes ``bench/<name>.json`` and ``bench/<name>.png`` (val accuracy against normalised
minutes, one curve per seed, the target and the budget drawn in); each run's own output, a
line per epoch, goes to ``bench/<name>_seed<seed>.log`` as it trains (an hour-long run is
followed with ``tail -f``). Extra arguments are overrides for trying variants, e.g.
``scripts/bench_time_to_accuracy.py --seeds 1 2 3 optimizer.ema=0.999``.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

REFERENCE_GFLOPS = 480.0  # the 4096² float32 matmul of this machine on a fast day
TARGETS = {"flowers_fast": (10.0, 0.85), "flowers_best": (60.0, 0.90)}  # budget, target


def build_parser() -> argparse.ArgumentParser:
    parser = benchlib.parser(__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="extra alexnet-exp overrides")
    parser.add_argument("--experiment", choices=sorted(TARGETS), default="flowers_fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42],
                        help="one run per seed; a seed also draws its own 80/20 split, so"
                        " the spread includes the validation set's")
    parser.add_argument("--name", help="file name in bench/ (default time_to_accuracy for"
                        " flowers_fast, time_to_accuracy_best for flowers_best)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args(overrides_first(parser, sys.argv[1:]))
    root = benchlib.require_data(args.data)
    budget, target = TARGETS[args.experiment]
    name = args.name or ("time_to_accuracy" if args.experiment == "flowers_fast"
                         else "time_to_accuracy_best")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = [one_run(args.experiment, root, seed, args.overrides, budget, target,
                    out / f"{name}_seed{seed}.log") for seed in args.seeds]
    within = [r["best_within_budget"] for r in runs]
    mean = statistics.mean(within)
    spread = statistics.stdev(within) if len(within) > 1 else 0.0
    reached = [r["normalised_minutes_to_target"] for r in runs]
    result = {"experiment": args.experiment, "overrides": args.overrides, "seeds": args.seeds,
              "budget_normalised_minutes": budget, "target_val_accuracy": target,
              "reference_gflops": REFERENCE_GFLOPS, "best_within_budget_mean": mean,
              "best_within_budget_std": spread, "met": mean >= target, "runs": runs}
    plot(runs, budget, target, args.experiment, out / f"{name}.png")
    extra = f" {' '.join(args.overrides)}" if args.overrides else ""
    walls = ", ".join(f"{r['wall_minutes']:.1f}" for r in runs)
    speeds = ", ".join(f"{r['matmul_gflops']:.0f}" for r in runs)
    summary = (f"bench_time_to_accuracy {args.experiment}: best val acc within {budget:.0f}"
               f" normalised min {mean:.4f} ± {spread:.4f} over {len(runs)} seed(s) (target"
               f" {target:.2f}: {'met' if mean >= target else 'not met'}); reached by"
               f" {sum(m is not None for m in reached)}/{len(runs)}; wall"
               f" {walls} min at {speeds} GFLOP/s{extra}")
    benchlib.write(name, result, summary, out)


def overrides_first(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with the overrides moved to the front: after ``--seeds`` (nargs="+") argparse
    would take them for seeds, and ``--seeds 1 2 3 model.head=gap`` is the natural way to type a
    comparison. An override is a word with ``=`` that is not an option's own value, so
    ``--data /photos/a=b`` stays the data folder."""
    takes_one_value = {option for action in parser._actions if action.nargs is None
                       and action.option_strings for option in action.option_strings}
    overrides, rest = [], []
    for index, arg in enumerate(argv):
        is_value = index > 0 and argv[index - 1] in takes_one_value
        (overrides if "=" in arg and not arg.startswith("-") and not is_value
         else rest).append(arg)
    return overrides + rest


def one_run(experiment: str, root: Path, seed: int, overrides: list[str], budget: float,
            target: float, log: Path) -> dict:
    """One training run from launch to exit, with the machine's speed before and after; its
    output (a line per epoch) in ``log``."""
    exe = Path(sys.executable).with_name("alexnet-exp")
    before = benchlib.matmul_flops_per_second() / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(exe), f"experiment={experiment}", f"data.dir={root}", f"seed={seed}",
                   "trainer.verbose=2", "tracking.log_model=false",
                   f"tracking.store_dir={tmp}/mlruns", f"hydra.run.dir={tmp}/run", *overrides]
        # a server in the shell would outrank the scratch store: never send it bench runs
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        print(f"seed {seed}: training, a line per epoch in {log}", flush=True)
        launched = time.time()
        with log.open("w") as output:
            done = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        wall = time.time() - launched
        if done.returncode:
            sys.exit(f"alexnet-exp failed (exit {done.returncode}):\n"
                     f"{log.read_text()[-3000:]}")
        import mlflow

        client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        history = sorted(client.get_metric_history(run.info.run_id, "val_accuracy"),
                         key=lambda m: m.step)
    after = benchlib.matmul_flops_per_second() / 1e9
    speed = (before + after) / 2 / REFERENCE_GFLOPS
    curve = [{"epoch": m.step, "wall_minutes": (m.timestamp / 1000 - launched) / 60,
              "normalised_minutes": (m.timestamp / 1000 - launched) / 60 * speed,
              "val_accuracy": m.value} for m in history]
    within = max((p["val_accuracy"] for p in curve if p["normalised_minutes"] <= budget),
                 default=0.0)
    to_target = next((p for p in curve if p["val_accuracy"] >= target), None)
    best = max(curve, key=lambda p: p["val_accuracy"])
    line = (f"seed {seed}: best {best['val_accuracy']:.4f} at"
            f" {best['normalised_minutes']:.1f} normalised min (epoch {best['epoch']}); within"
            f" {budget:.0f}: {within:.4f};"
            f" wall {wall / 60:.1f} min, matmul {before:.0f}/{after:.0f} GFLOP/s")
    print(line, flush=True)
    return {"seed": seed, "command": " ".join(command[1:]), "wall_minutes": wall / 60,
            "matmul_gflops": (before + after) / 2, "matmul_gflops_before": before,
            "matmul_gflops_after": after, "normalised_minutes": wall / 60 * speed,
            "best_val_accuracy": best["val_accuracy"],
            "best_within_budget": within,
            "normalised_minutes_to_target": to_target["normalised_minutes"] if to_target
            else None, "final_val_accuracy": curve[-1]["val_accuracy"], "curve": curve,
            "run_params": dict(run.data.params)}


def plot(runs: list[dict], budget: float, target: float, experiment: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        ax.plot([p["normalised_minutes"] for p in run["curve"]],
                [p["val_accuracy"] for p in run["curve"]], label=f"seed {run['seed']}")
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.axvline(budget, color="grey", linestyle=":", linewidth=1,
               label=f"budget {budget:.0f} min")
    ax.set_xlabel("normalised minutes from launch (wall x matmul GFLOP/s / 480)")
    ax.set_ylabel("val accuracy")
    ax.set_ylim(top=min(1.0, target + 0.05))
    ax.set_title(f"experiment={experiment}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
