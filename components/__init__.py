"""Thin KFP components, one per pipeline stage.

Each component is a lightweight ``@dsl.component`` running in the project image: typed artifacts in,
one call into :mod:`amnet`, scalar results out as ``Metrics``. No logic lives here; imports of
``amnet`` sit inside the bodies because KFP executes each function's source on its own.
"""

from amnet_components.evaluate import evaluate_retrieval
from amnet_components.featurize import featurize_gallery
from amnet_components.fingerprint import fingerprint_dataset
from amnet_components.index import build_search_index, plan_featurization
from amnet_components.pretrain import pretrain_attribute_cnn
from amnet_components.prototypes import compute_prototypes
from amnet_components.reevaluate import reevaluate_champion
from amnet_components.refresh import refresh_gallery
from amnet_components.register import register_model
from amnet_components.report import build_report
from amnet_components.split import split_dataset
from amnet_components.tracking import expand_variants, finish_parent_run, link_upstream_runs, start_parent_run
from amnet_components.train import train_amnet, train_amnet_trainjob

__all__ = [
    "build_report",
    "build_search_index",
    "compute_prototypes",
    "evaluate_retrieval",
    "expand_variants",
    "featurize_gallery",
    "fingerprint_dataset",
    "finish_parent_run",
    "link_upstream_runs",
    "plan_featurization",
    "pretrain_attribute_cnn",
    "reevaluate_champion",
    "refresh_gallery",
    "register_model",
    "split_dataset",
    "start_parent_run",
    "train_amnet",
    "train_amnet_trainjob",
]
