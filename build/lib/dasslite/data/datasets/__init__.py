"""Data set base classes and registry (``dassl.data.datasets``)."""
from .base_dataset import DatasetBase, Datum
from .build import DATASET_REGISTRY, build_dataset

__all__ = ["DatasetBase", "Datum", "DATASET_REGISTRY", "build_dataset"]
