"""PyG datasets over the model zoos of :mod:`nngraph.zoo`."""
from nngraph.data.zoo_dataset import ZooDataset, default_target, example_inputs_for_spec

__all__ = ["ZooDataset", "default_target", "example_inputs_for_spec"]
