"""How long the everyday commands take to start, against the libraries' own start.

A user types ``alexnet-exp --help``, ``--cfg job``, a dry run and ``experiment=demo
debug=fast`` many times a day; each should cost about what importing its libraries costs, not
a multiple of it. Each command is timed as a subprocess (median of ``--repeats``) beside two
bare references measured in the same run: ``python -c 'import hydra, omegaconf'`` (what
``--help`` and ``--cfg job`` cannot avoid) and ``python -c 'import tensorflow'`` (what a dry
run and a debug run cannot avoid). Targets: ``--help`` and ``--cfg job`` within 4x the Hydra
import; the dry run and ``debug=fast`` a small multiple of TensorFlow's import.
"""

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib

BIN = Path(sys.executable).parent
TARGET_HYDRA_RATIO = 4.0


def commands(data: Path | None) -> dict[str, list[str]]:
    cli = str(BIN / "alexnet-exp")
    dry = ([cli, f"data.dir={data}", "data=folder"] if data else [cli, "data=digits"])
    return {
        "import hydra, omegaconf": [sys.executable, "-c", "import hydra, omegaconf"],
        "import tensorflow": [sys.executable, "-c", "import tensorflow"],
        "--help": [cli, "--help"],
        "--cfg job": [cli, "--cfg", "job"],
        "dry_run=true": [*dry, "dry_run=true", "tracking=none"],
        "experiment=demo debug=fast": [cli, "experiment=demo", "debug=fast"],
    }


def run_once(argv: list[str], cwd: Path) -> float:
    def work():
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")

    return benchlib.timed(work)


def main() -> None:
    args = benchlib.parser(__doc__.splitlines()[0])
    args.add_argument("--repeats", type=int, default=3, help="runs of each command (median)")
    opts = args.parse_args()
    data = opts.data if opts.data.is_dir() else None
    argvs = commands(data)
    seconds: dict[str, list[float]] = {name: [] for name in argvs}
    with tempfile.TemporaryDirectory() as cwd:  # job folders and stores land here
        for _ in range(opts.repeats):  # interleaved, so a burst of load hits every command
            for name, argv in argvs.items():
                seconds[name].append(run_once(argv, Path(cwd)))
    median = {name: statistics.median(times) for name, times in seconds.items()}
    hydra, tf = median["import hydra, omegaconf"], median["import tensorflow"]
    ratios = {"--help / import hydra": median["--help"] / hydra,
              "--cfg job / import hydra": median["--cfg job"] / hydra,
              "dry_run / import tensorflow": median["dry_run=true"] / tf,
              "debug=fast / import tensorflow": median["experiment=demo debug=fast"] / tf}
    met = (ratios["--help / import hydra"] <= TARGET_HYDRA_RATIO
           and ratios["--cfg job / import hydra"] <= TARGET_HYDRA_RATIO)
    summary = ("bench_startup: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items())
               + f" (import hydra {hydra:.2f} s, import tensorflow {tf:.2f} s, dry run on "
               + f"{data or 'digits'}; target --help and --cfg job <= {TARGET_HYDRA_RATIO:g}x:"
               + f" {'met' if met else 'not met'})")
    benchlib.write("startup", {"seconds": seconds, "median_seconds": median, "ratios": ratios,
                               "data": str(data) if data else "digits", "met": met,
                               "repeats": opts.repeats}, summary, opts.out)


if __name__ == "__main__":
    main()
