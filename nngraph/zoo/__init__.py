"""Model zoos generated here: INRs of images, mixed-architecture classifiers and recurrent classifiers.

Build one from Python (:func:`build_inr_zoo`, :func:`build_classifier_zoo`, :func:`build_recurrent_zoo`) or the
command line (``python -m nngraph.zoo inr --out DIR``), import models trained elsewhere (:func:`import_zoo`,
``python -m nngraph.zoo import SRC --out DIR``), read it with :class:`Zoo`, rebuild any model from its spec with
:func:`build_model`.
"""
from nngraph.zoo.classifiers import ClassifierZooConfig, build_classifier_zoo
from nngraph.zoo.images import ImageSet, coordinate_grid, load_images
from nngraph.zoo.inr import INRZooConfig, build_inr_zoo, zoo_images
from nngraph.zoo.inr_meta import INRMetadata
from nngraph.zoo.recurrent import RecurrentZooConfig, build_recurrent_zoo
from nngraph.zoo.jobs import Unit, parse_shard, run_units
from nngraph.zoo.report import summarize, text_histogram
from nngraph.zoo.seeds import derive_seed, stratified_split
from nngraph.zoo.siren import fit_sirens, siren_forward
from nngraph.zoo.blocks import SequenceClassifier
from nngraph.zoo.specs import ResidualBlock, SpecLimits, build_model, count_parameters, siren_spec
from nngraph.zoo.storage import Zoo, ZooError, sha256_file
from nngraph.zoo.importer import import_zoo

__all__ = [
    "ClassifierZooConfig",
    "INRZooConfig",
    "INRMetadata",
    "RecurrentZooConfig",
    "ImageSet",
    "ResidualBlock",
    "SequenceClassifier",
    "SpecLimits",
    "Unit",
    "Zoo",
    "ZooError",
    "build_classifier_zoo",
    "build_inr_zoo",
    "build_model",
    "build_recurrent_zoo",
    "coordinate_grid",
    "count_parameters",
    "derive_seed",
    "fit_sirens",
    "import_zoo",
    "load_images",
    "parse_shard",
    "run_units",
    "sha256_file",
    "siren_forward",
    "siren_spec",
    "stratified_split",
    "summarize",
    "text_histogram",
    "zoo_images",
]
