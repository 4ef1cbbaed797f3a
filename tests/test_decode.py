"""decode: how a file becomes pixels. What each decode gives is held against the cached
stream in test_data.py (PNGs, turned and scaled JPEGs, plain JPEGs' fused crops); here, what the
per-image graph of the uncached training crop costs."""

import tensorflow as tf
from helpers.configs import augment_config

from alexnet_exp import graphs
from alexnet_exp.decode import cropping_decoder


def test_the_uncached_training_crop_picks_its_decode_with_one_branch():
    """Every tf.cond in a tf.data map is a function call per image: the nested pair that chose
    between the fused crop and the whole decode (is it a plain JPEG, then is it small enough)
    cost 5% of the pipeline's CPU. One test picks the decode now."""
    decode = cropping_decoder(augment_config("paper", pca_std=0.0), 64, from_bytes=True)
    graph = graphs.traced(decode).get_concrete_function(
        tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([2], tf.int64)).graph
    branches = [op for op in graph.get_operations() if op.type in ("If", "StatelessIf")]
    assert len(branches) == 1, [op.name for op in branches]
