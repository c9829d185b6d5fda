"""The built-in synthetic world (``tools/world.py``): ``synth_world/images`` + ``split_zhou_SynthWorld.json``."""
from dassl.data.datasets import DATASET_REGISTRY

from .coop_split import CoOpDataset


@DATASET_REGISTRY.register()
class SynthWorld(CoOpDataset):
    """24 classes named "<colour> <texture> <shape>", rendered deterministically from a seed."""

    dataset_dir = "synth_world"
    image_dir = "images"
    split_file = "split_zhou_SynthWorld.json"
    source = "Generate it with `python -m tools.world --root DATA` (or run scripts/demo.sh)."
