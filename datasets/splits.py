"""The nine data sets that CoOp describes with a ``split_zhou_*.json`` file."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpDataset

_COOP = "Download it as CoOp's DATASETS.md describes (images from the data set's site, the split file from CoOp)."


@DATASET_REGISTRY.register()
class Caltech101(CoOpDataset):
    """``caltech-101/101_ObjectCategories`` + ``split_zhou_Caltech101.json``."""

    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    source = _COOP


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):
    """``oxford_pets/images`` + ``split_zhou_OxfordPets.json``."""

    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"
    source = _COOP


@DATASET_REGISTRY.register()
class StanfordCars(CoOpDataset):
    """``stanford_cars/{cars_train,cars_test}`` + ``split_zhou_StanfordCars.json`` (paths start at the folder)."""

    dataset_dir = "stanford_cars"
    image_dir = ""
    split_file = "split_zhou_StanfordCars.json"
    source = _COOP


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpDataset):
    """``oxford_flowers/jpg`` + ``split_zhou_OxfordFlowers.json``."""

    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    source = _COOP


@DATASET_REGISTRY.register()
class Food101(CoOpDataset):
    """``food-101/images`` + ``split_zhou_Food101.json``."""

    dataset_dir = "food-101"
    image_dir = "images"
    split_file = "split_zhou_Food101.json"
    source = _COOP


@DATASET_REGISTRY.register()
class SUN397(CoOpDataset):
    """``sun397/SUN397`` + ``split_zhou_SUN397.json``."""

    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    source = _COOP


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpDataset):
    """``dtd/images`` + ``split_zhou_DescribableTextures.json``."""

    dataset_dir = "dtd"
    image_dir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    source = _COOP


@DATASET_REGISTRY.register()
class EuroSAT(CoOpDataset):
    """``eurosat/2750`` + ``split_zhou_EuroSAT.json`` (class names as CoOp renamed them)."""

    dataset_dir = "eurosat"
    image_dir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    source = _COOP


@DATASET_REGISTRY.register()
class UCF101(CoOpDataset):
    """``ucf101/UCF-101-midframes`` + ``split_zhou_UCF101.json``."""

    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    source = _COOP
