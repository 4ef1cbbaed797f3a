"""decode: how a file becomes pixels. What each decode gives is held against the cached
stream in test_data.py (PNGs, turned and scaled JPEGs, plain JPEGs' fused crops); here, what the
per-image graph of the uncached training crop costs."""

import pytest
import tensorflow as tf
from helpers.configs import augment_config

from alexnet_exp import graphs
from alexnet_exp.decode import crop_decode_for, cropping_decoder
from alexnet_exp.scan import JpegSides


def branches(sides: JpegSides | None) -> list[str]:
    """The tf.conds of the uncached crop's per-image graph (a 64 crop of a 72 image)."""
    decode = cropping_decoder(augment_config("paper", pca_std=0.0), 64, True, sides)
    graph = graphs.traced(decode).get_concrete_function(
        tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([2], tf.int64)).graph
    return [op.name for op in graph.get_operations() if op.type in ("If", "StatelessIf")]


def test_the_uncached_training_crop_picks_its_decode_with_one_branch():
    """Every tf.cond in a tf.data map is a function call per image: the nested pair that chose
    between the fused crop and the whole decode (is it a plain JPEG, then is it small enough)
    cost 5% of the pipeline's CPU. One test picks the decode now."""
    assert len(branches(None)) == 1, branches(None)


def test_a_set_of_small_upright_jpegs_has_its_crops_decoded_with_no_branch():
    """The last branch cost 6% of the pipeline's CPU (0.832 against 0.777 ms per image,
    measured): a set the scan found to be all small upright JPEGs needs none."""
    assert branches(JpegSides(jpegs=10, smallest=60, largest=100)) == []


@pytest.mark.parametrize(("sides", "way"), [
    (None, "either"),  # not known (a pack written before the scan counted them)
    (JpegSides(jpegs=10, smallest=60, largest=143), "fused"),  # all under twice the stored 72
    (JpegSides(jpegs=10, smallest=60, largest=144), "either"),  # one is decoded scaled down
    (JpegSides(jpegs=10, smallest=144, largest=900), "whole"),  # all are
    (JpegSides(jpegs=9, others=1, smallest=60, largest=100), "either"),  # a PNG or a turned one
    (JpegSides(jpegs=0, others=10), "whole"),  # no upright JPEG at all
    (JpegSides(jpegs=5, others=5, smallest=200, largest=300), "whole"),
])
def test_the_crops_decode_is_chosen_for_the_whole_set_when_every_image_needs_the_same(
        sides, way):
    assert crop_decode_for(sides, 72) == way
