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


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """The project's wheel, built once from a copy of the tracked files (a build never writes into the source)."""
    import shutil
    import subprocess

    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if osp.isfile(osp.join(ROOT, rel)):
            os.makedirs(osp.dirname(osp.join(src, rel)) or str(src), exist_ok=True)
            shutil.copy2(osp.join(ROOT, rel), osp.join(src, rel))
    out = tmp_path_factory.mktemp("wheels")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    return next(out.glob("dear_prompt_learning-*.whl"))
