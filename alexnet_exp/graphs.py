"""How our Python functions become TensorFlow graphs: traced as written, never rewritten by
AutoGraph. Every ``Dataset.map`` / ``interleave`` and every ``tf.function`` of the package goes
through here.

Why not AutoGraph: it rewrites a function from its *source*, which it reads from the file again
when the graph is traced, and tf.data traces a map when the map is made, the end-of-run
validation report included, hours after the job started. A job whose source files changed
meanwhile (a ``git pull``, an editable ``pip install``, an editor's save) then converts
whatever now sits at the function's old line: a stop-28 benchmark trained 200 epochs and then
fed its model the dataset's keys in place of its images. Our functions branch with
``tf.cond`` / ``tf.switch_case``, never with a Python ``if`` on a tensor, so the rewrite buys
nothing; skipping it also saved 0.7 s of every run's start (measured on a tiny run). A function
that did need it fails when it is traced, never silently.
"""

from collections.abc import Callable

import tensorflow as tf


def mapped(ds: tf.data.Dataset, fn: Callable) -> tf.data.Dataset:
    """``ds.map(fn)`` in parallel, in order, ``fn`` traced as written."""
    return ds.map(tf.autograph.experimental.do_not_convert(fn),
                  num_parallel_calls=tf.data.AUTOTUNE)


def interleaved(ds: tf.data.Dataset, fn: Callable, cycle_length: int) -> tf.data.Dataset:
    """``ds.interleave(fn)``: ``cycle_length`` of ``fn``'s datasets read in parallel, in a
    fixed order (a seeded run reads the same examples in the same order), traced as written."""
    return ds.interleave(tf.autograph.experimental.do_not_convert(fn), cycle_length=cycle_length,
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def traced(fn: Callable):
    """``tf.function(fn)``, traced as written."""
    return tf.function(fn, autograph=False)
