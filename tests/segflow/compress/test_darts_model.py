"""The `darts` registry model without NNI: every space rebuilds from an architecture as plain torch,
loads from a weights_only state dict, runs channels_last; foreign architectures and empty spaces fail clearly."""

import io

import pytest
import torch

from segflow.config.recipe import ClassSpec
from segflow.errors import ConfigError, ModelError
from segflow.models import ModelConfig, create_model
from segflow.models.darts import OPS, SPACES, SpaceSize, space_for

SIZE = SpaceSize(cells=3, width=8, nodes=3)


def architecture(space, size=SIZE, pick=0):
    """A valid architecture: the `pick`-th option of every op choice, the first two predecessors of every node."""
    return {label: options[:2] if label.endswith("_inputs") else options[pick % len(options)]
            for label, options in SPACES[space].choices(size).items()}


def config(space, task, arch, channels=3, size=(32, 32), **params):
    return ModelConfig(name="darts", task=task, classes=[ClassSpec(name=f"c{i}") for i in range(4)],
                       in_channels=channels, input_size=size, mean=[0.5] * channels, std=[0.2] * channels,
                       params={"space": space, "architecture": arch, **SIZE.as_params(), **params})


@pytest.mark.parametrize("space,task,channels,shape,out", [
    ("darts-seg", "segmentation", 3, (37, 53), (2, 4, 37, 53)),
    ("darts-cls", "classification", 1, (28, 28), (2, 4)),
])
@pytest.mark.parametrize("pick", range(len(OPS)))
def test_every_op_rebuilds_as_plain_torch_and_runs_channels_last(space, task, channels, shape, out, pick):
    model = create_model(config(space, task, architecture(space, pick=pick), channels, shape)).eval()
    assert not any("nni" in type(m).__module__ for m in model.modules())
    x = torch.randn(2, channels, *shape)
    with torch.no_grad():
        plain = model(x)
        fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert plain.shape == out and torch.allclose(plain, fast, atol=1e-4)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    create_model(config(space, task, architecture(space, pick=pick), channels, shape)).load_state_dict(
        torch.load(buffer, weights_only=True))


def test_an_architecture_from_another_space_is_refused():
    seg_arch, cls_arch = architecture("darts-seg"), architecture("darts-cls")
    with pytest.raises(ModelError, match="does not fit space 'darts-seg' v1 .*unexpected, e.g. 'normal_node0_edge0'"):
        create_model(config("darts-seg", "segmentation", cls_arch))
    with pytest.raises(ModelError, match="'darts-cls' builds classification models but the data is a segmentation"):
        create_model(config("darts-cls", "segmentation", cls_arch))
    with pytest.raises(ModelError, match="does not fit .*cells=2.*missing, e.g. 'decoder_node0_edge0'"):
        create_model(config("darts-seg", "segmentation", architecture("darts-seg", SpaceSize(cells=1)), cells=2))
    with pytest.raises(ModelError, match="darts params name space 'darts-rnn'; known spaces: darts-seg, darts-cls"):
        create_model(config("darts-rnn", "segmentation", seg_arch))
    with pytest.raises(ModelError, match="v2; this segflow builds v1"):
        create_model(config("darts-seg", "segmentation", seg_arch, space_version=2))
    with pytest.raises(ModelError, match="encoder_node2_inputs=\\[0, 0\\] is not 2 distinct predecessors"):
        create_model(config("darts-seg", "segmentation", seg_arch | {"encoder_node2_inputs": [0, 0]}))
    with pytest.raises(ModelError, match="encoder_node0_edge0='conv_7x7' is not one of"):
        create_model(config("darts-seg", "segmentation", seg_arch | {"encoder_node0_edge0": "conv_7x7"}))


def test_a_space_with_no_candidate_ops_is_refused():
    with pytest.raises(ConfigError, match=r"no candidate ops \(ops=\[\]\); give at least one of: sep_conv_3x3"):
        create_model(config("darts-seg", "segmentation", architecture("darts-seg"), ops=[]))
    with pytest.raises(ConfigError, match="unknown candidate op.*'conv_7x7'.*choose among"):
        SpaceSize.from_params({"ops": ["conv_7x7"]})
    with pytest.raises(ConfigError, match="ops='zero' must be a list"):
        SpaceSize.from_params({"ops": "zero"})
    with pytest.raises(ConfigError, match="cells=0 must be an integer from 1 to 6"):
        SpaceSize.from_params({"cells": 0})
    with pytest.raises(ConfigError, match="has nothing to choose"):
        space_for("segmentation", SpaceSize(nodes=1, ops=("skip_connect",)))
    assert space_for("classification", SpaceSize(ops=("skip_connect",))) == "darts-cls"  # node inputs still chosen
