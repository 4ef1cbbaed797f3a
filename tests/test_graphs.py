"""Our functions become graphs as written, never through AutoGraph (alexnet_exp.graphs): in the
pipeline's maps, the pack reader's interleave and our tf.functions, and in every console script
as a user runs it."""

import json

import pytest
import tensorflow as tf
from helpers import TINY_MODEL, cli, make_image_folder
from helpers.autograph import SPYING, install, sitecustomize

from alexnet_exp import graphs


def test_maps_and_functions_are_traced_as_written_without_autograph():
    """A Python ``if`` on a tensor fails at tracing instead of becoming a tf.cond (AutoGraph's
    rewrite), and tf.cond works as written."""
    numbers = tf.data.Dataset.range(4)
    as_written = graphs.mapped(numbers, lambda x: tf.cond(x % 2 == 0, lambda: x, lambda: -x))
    assert list(as_written.as_numpy_iterator()) == [0, -1, 2, -3]
    with pytest.raises(TypeError, match="tf.Tensor"):
        graphs.mapped(numbers, lambda x: x if x % 2 == 0 else -x)
    with pytest.raises(TypeError, match="tf.Tensor"):
        graphs.interleaved(numbers, lambda x: tf.data.Dataset.range(x) if x > 1 else None, 2)
    with pytest.raises(TypeError, match="tf.Tensor"):
        graphs.traced(lambda x: x if x > 0 else -x)(tf.constant(1))


def test_interleaved_reads_in_a_fixed_order():
    """A seeded run reads a pack's shards in the same order every time: parallel reads, taken
    in turn."""
    shards = tf.data.Dataset.range(3)
    read = graphs.interleaved(shards, lambda s: tf.data.Dataset.range(s * 10, s * 10 + 2), 3)
    assert list(read.as_numpy_iterator()) == [0, 10, 20, 1, 11, 21]


@pytest.mark.autograph
def test_the_spy_sees_autograph_convert_a_function_of_ours():
    """conftest's fixture and the test below rely on the spy: it sees a plain ``map`` convert
    a function of the package, and it leaves alone what graphs traces as written."""
    def plus_one(x):
        return x + 1

    plus_one.__module__ = "alexnet_exp.example"
    converted = []
    uninstall = install(converted.append)
    try:
        list(graphs.mapped(tf.data.Dataset.range(2), plus_one))
        assert converted == []
        list(tf.data.Dataset.range(2).map(plus_one))
    finally:
        uninstall()
    assert converted == [f"alexnet_exp.example:{plus_one.__qualname__}"]


@pytest.mark.slow
def test_no_console_script_has_autograph_convert_our_code(tmp_path):
    """AutoGraph reads a function's source from its file when it converts it, so a job whose
    source changed while it trained (a git pull, an editable install) converted the wrong
    lambda at its end: a stop-28 benchmark fed its model the dataset's keys as images after 200
    epochs. Every map and function on the user's paths is traced as written: a pack written
    (its check pass) and trained on without a cache, with progressive resizing, mixup, the
    weights' average and flip-averaged validation; a packed test set evaluated with ten crops;
    a folder predicted; the model exported and checked."""
    log = tmp_path / "converted.txt"
    env = {**sitecustomize(tmp_path / "spy", log),
           "ALEXNET_EXP_CACHE_DIR": str(tmp_path / "cache")}
    classes = {"apple": 12, "kiwi": 12, "plum": 12}
    data = make_image_folder(tmp_path / "data", classes=classes, size=(48, 40))
    test = make_image_folder(tmp_path / "test", classes={c: 3 for c in classes}, size=(48, 40),
                             seed=7)
    steps = [
        ("alexnet-exp-pack", [f"data.dir={data}", "output=pack"]),
        ("alexnet-exp-pack", [f"data.dir={test}", "output=test-pack", "data.val_split=0"]),
        ("alexnet-exp", ["data=records", f"data.dir={tmp_path / 'pack'}", *TINY_MODEL,
                         "model.input_size=96", "model.head=gap", "trainer.epochs=2",
                         "trainer.progressive.start_size=80", "data.cache=none",
                         "augment=flip", "augment.mixup.alpha=0.2", "optimizer.ema=0.9",
                         "trainer.val_tta=flip"]),
    ]
    for program, args in steps:
        result = cli(tmp_path, *args, program=program, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads((tmp_path / "outputs" / "run" / "summary.json").read_text())["run_id"]
    tools = [
        ("alexnet-exp-eval", [f"data.dir={tmp_path / 'test-pack'}", "tta=ten_crop"]),
        ("alexnet-exp-predict", [f"images={test / 'kiwi'}"]),
        ("alexnet-exp-export", ["format=tflite", f"data_dir={data}",
                                "min_top1_agreement=0.5"]),
    ]
    for program, args in tools:
        result = cli(tmp_path, f"run_id={run_id}", *args, program=program, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    lines = log.read_text().splitlines()
    assert lines.count(SPYING) == len(steps) + len(tools)  # the spy ran in every process
    converted = sorted({line for line in lines if line != SPYING})
    assert not converted, f"AutoGraph converted our code: {converted}"
