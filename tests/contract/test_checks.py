"""contract.checks: what every backend holds a model and its answers to."""

import numpy as np
import pytest
from google.protobuf import json_format

from contract.checks import probability_problem, signature_problems


def test_an_exported_model_fits_the_signature_contract(tiny_model_base):
    import tensorflow as tf

    loaded = tf.compat.v1.saved_model.loader
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = loaded.load(session, ["serve"], str(tiny_model_base / "mnist" / "1"))
    signatures = {
        name: json_format.MessageToDict(signature, preserving_proto_field_name=True)
        for name, signature in meta_graph.signature_def.items()
    }
    assert signature_problems({"signature_def": signatures}) == []


def _signature(input_dtype="DT_FLOAT", input_dims=(-1, 28, 28, 1), output_key="probabilities"):
    def tensor(dtype, dims):
        return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in dims]}}

    return {
        "signature_def": {
            "serving_default": {
                "inputs": {"image": tensor(input_dtype, input_dims)},
                "outputs": {output_key: tensor("DT_FLOAT", (-1, 10))},
            }
        }
    }


def test_every_difference_from_the_signature_contract_is_named():
    assert signature_problems(_signature()) == []
    assert signature_problems({"signature_def": {}}) == ["no signature 'serving_default'"]
    assert signature_problems(_signature(input_dtype="DT_UINT8", input_dims=(-1, 784))) == [
        "'image' is DT_UINT8, not DT_FLOAT",
        "'image' has shape [-1, 784], not [-1, 28, 28, 1]",
    ]
    assert signature_problems(_signature(output_key="output_0")) == [
        "outputs has no 'probabilities' (it has ['output_0'])"
    ]


def test_a_softmax_answer_fits_the_probability_contract():
    logits = np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32) * 8
    rows = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert probability_problem(rows, 5) is None


@pytest.mark.parametrize(
    ("rows", "batch_size", "problem"),
    [
        (np.full((3, 10), 0.1, np.float32), 4, "shape [3, 10] for 4 images, not [4, 10]"),
        (np.full((2, 9), 1 / 9, np.float32), 2, "shape [2, 9] for 2 images, not [2, 10]"),
        (np.array([[np.nan] + [0.1] * 9], np.float32), 1, "a probability is not finite"),
        (np.array([[np.inf] + [0.0] * 9], np.float32), 1, "a probability is not finite"),
        (np.full((1, 10), 0.2, np.float32), 1, "a row is not a probability distribution"),
        (np.array([[1.5, -0.5] + [0.0] * 8], np.float32), 1, "a row is not a probability"),
    ],
)
def test_an_answer_outside_the_contract_is_named(rows, batch_size, problem):
    assert probability_problem(rows, batch_size).startswith(problem)
