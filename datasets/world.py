"""The built-in world's data sets (``tools/world.py``), each in CoOp's layout: ``<folder>/images`` and
``<folder>/split_zhou_<Name>.json``. Generate them with ``python -m tools.world --root DATA``."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpDataset

_SOURCE = "Generate it with `python -m tools.world --root DATA` (or run scripts/demo.sh)."


class _WorldDataset(CoOpDataset):
    image_dir = "images"
    source = _SOURCE


@DATASET_REGISTRY.register()
class WorldColor(_WorldDataset):
    """10 classes, one per colour; texture, shape and position vary (configs/datasets/world_color.yaml)."""

    dataset_dir = "world_color"
    split_file = "split_zhou_WorldColor.json"


@DATASET_REGISTRY.register()
class WorldTexture(_WorldDataset):
    """8 classes, one per texture; the world's DTD (configs/datasets/world_texture.yaml)."""

    dataset_dir = "world_texture"
    split_file = "split_zhou_WorldTexture.json"


@DATASET_REGISTRY.register()
class WorldShape(_WorldDataset):
    """10 classes, one per shape (configs/datasets/world_shape.yaml)."""

    dataset_dir = "world_shape"
    split_file = "split_zhou_WorldShape.json"


@DATASET_REGISTRY.register()
class WorldPosition(_WorldDataset):
    """9 classes, one per cell of a 3x3 grid (configs/datasets/world_position.yaml)."""

    dataset_dir = "world_position"
    split_file = "split_zhou_WorldPosition.json"


@DATASET_REGISTRY.register()
class WorldMixed(_WorldDataset):
    """24 classes named "<colour> <texture> <shape>" (configs/datasets/world_mixed.yaml)."""

    dataset_dir = "world_mixed"
    split_file = "split_zhou_WorldMixed.json"
