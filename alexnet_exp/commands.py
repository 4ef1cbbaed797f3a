"""The console scripts (``alexnet-exp``, ``alexnet-exp-eval`` ...): :mod:`alexnet_exp.cli`'s
mains, each ended without the garbage collection Python runs over every object at exit.

That last collection walks TensorFlow's whole object graph: 1.1 s after ``import tensorflow``
alone and 2.2 s after a small training run, on every command, once the work is done and
printed. :func:`gc.freeze` takes the objects the process holds out of it (0.15 s then). Nothing
is lost: every run is ended, every file of ours closed and every ``atexit`` handler (log
handlers, temporary folders, MLflow's queues) still runs; Python never promised ``__del__``
for objects alive at exit. The mains stay importable as they are, so a test or notebook that
calls one in its own process keeps its collector.
"""

import gc
from collections.abc import Callable

from alexnet_exp import cli


def _command(main: Callable[[], None]) -> Callable[[], None]:
    def command() -> None:
        try:
            main()
        finally:  # SystemExit too: fail() and sys.exit end most commands
            gc.freeze()

    command.__doc__, command.__name__ = main.__doc__, main.__name__
    return command


train = _command(cli.train_main)
evaluate = _command(cli.eval_main)
predict = _command(cli.predict_main)
export = _command(cli.export_main)
report = _command(cli.report_main)
sync = _command(cli.sync_main)
pack = _command(cli.pack_main)
