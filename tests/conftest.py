import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
os.environ.setdefault("CLIP_OFFLINE", "1")  # tests never try the network

import dasslite  # noqa: E402

dasslite.use_dassl()


@pytest.fixture(scope="session")
def tiny_clip():
    from clipkit.tiny import build_clip

    return build_clip()


@pytest.fixture(scope="session")
def tiny_clip_file(tmp_path_factory, tiny_clip):
    from clipkit.tiny import save_clip

    return save_clip(tiny_clip, str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt"))


@pytest.fixture(scope="session")
def vitb16_clip():
    """A randomly initialised CLIP with ViT-B/16's shape (12 layers, 12 heads, width 768) at 32 px."""
    from clipkit.tiny import VIT_B16_SHAPE, build_clip

    return build_clip(image_resolution=32, **VIT_B16_SHAPE)


def make_cfg(**overrides):
    """Defaults + project keys, with ``KEY=value`` overrides (dots as double underscores not needed)."""
    from dassl.config import get_cfg_default

    import datasets  # noqa: F401  (registers the data sets)
    import trainers

    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    opts = []
    for k, v in overrides.items():
        opts += [k, v]
    cfg.merge_from_list(opts)
    return cfg
