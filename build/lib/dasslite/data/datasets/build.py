from ...utils import Registry

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    """Instantiate the data set named by ``cfg.DATASET.NAME``."""
    name = cfg.DATASET.NAME
    if name not in DATASET_REGISTRY:
        raise KeyError(
            f'DATASET.NAME "{name}" is not registered; available: '
            f"{', '.join(sorted(DATASET_REGISTRY.registered_names()))}. "
            "Is the module that defines it imported (datasets/ is imported by train.py)?"
        )
    if cfg.VERBOSE:
        print(f"Loading dataset: {name}")
    return DATASET_REGISTRY.get(name)(cfg)
