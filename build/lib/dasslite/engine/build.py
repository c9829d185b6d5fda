from ..utils import Registry

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    """Instantiate the trainer named by ``cfg.TRAINER.NAME``."""
    name = cfg.TRAINER.NAME
    if name not in TRAINER_REGISTRY:
        raise KeyError(
            f'TRAINER.NAME "{name}" is not registered; available: '
            f"{', '.join(sorted(TRAINER_REGISTRY.registered_names()))}"
        )
    if cfg.VERBOSE:
        print(f"Loading trainer: {name}")
    return TRAINER_REGISTRY.get(name)(cfg)
