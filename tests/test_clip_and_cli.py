"""CLIP weights resolution (file, cache, missing) and the train.py command line end to end."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from clipkit import ClipWeightsNotFound, load_clip, resolve_clip_weights
from tools.fake_data import make_dataset


def test_load_by_path_equals_saved_model(tiny_clip, tiny_clip_file):
    model = load_clip("ViT-B/16", tiny_clip_file)
    img = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.encode_image(img), tiny_clip.encode_image(img), atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())


def test_load_by_name_from_clip_cache(tmp_path, monkeypatch, tiny_clip_file):
    shutil.copy(tiny_clip_file, tmp_path / "ViT-B-16.pt")
    monkeypatch.setenv("CLIP_CACHE", str(tmp_path))
    assert resolve_clip_weights("ViT-B/16") == str(tmp_path / "ViT-B-16.pt")
    assert load_clip("ViT-B/16").visual.input_resolution == 32


def test_missing_weights_error_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClipWeightsNotFound) as e:
        load_clip("ViT-B/16")
    msg = str(e.value)
    assert str(tmp_path / "ViT-B-16.pt") in msg
    assert "https://openaipublic.azureedge.net/clip/models/" in msg and "ViT-B-16.pt" in msg
    assert "CLIP_CACHE" in msg


def test_bad_path_and_bad_file(tmp_path):
    with pytest.raises(ClipWeightsNotFound, match="does not exist"):
        load_clip("ViT-B/16", str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    torch.save({"a": torch.ones(1)}, junk)
    with pytest.raises(ClipWeightsNotFound, match="token_embedding"):
        load_clip("ViT-B/16", str(junk))


def run_train(*args, cwd=ROOT):
    env = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_help():
    out = run_train("--help")
    assert out.returncode == 0
    for flag in ["--root", "--seed", "--trainer", "--dataset-config-file", "--config-file", "--output-dir",
                 "--resume", "--eval-only", "--model-dir", "--load-epoch", "--no-train", "--backbone"]:
        assert flag in out.stdout


def test_zeroshot_eval_on_fake_dtd(tmp_path, tiny_clip_file):
    make_dataset(str(tmp_path / "data"), "DescribableTextures", n_classes=4)
    out_dir = tmp_path / "out"
    out = run_train("--root", str(tmp_path / "data"), "--trainer", "ZeroshotCLIP", "--dataset-config-file",
                    "configs/datasets/dtd.yaml", "--config-file", "configs/zsclip.yaml", "--output-dir",
                    str(out_dir), "--eval-only", "MODEL.BACKBONE.PATH", tiny_clip_file, "INPUT.SIZE", "(32, 32)",
                    "DATALOADER.NUM_WORKERS", "0", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert out.returncode == 0, out.stderr[-2000:]
    log = (out_dir / "log.txt").read_text()
    assert "* accuracy:" in log and "* total: 4" in log  # 2 new classes x 2 test images
    assert "'{} texture.'" in log


def test_bad_override_and_missing_weights_fail_clearly(tmp_path):
    out = run_train("--trainer", "ZeroshotCLIP", "OPTIM.LEARNING_RATE", "0.1")
    assert out.returncode != 0 and "OPTIM.LEARNING_RATE" in out.stderr
    make_dataset(str(tmp_path / "data"), "DescribableTextures", n_classes=2)
    env_home = tmp_path / "home"
    env_home.mkdir()
    out = subprocess.run(
        [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--trainer", "ZeroshotCLIP",
         "--dataset-config-file", "configs/datasets/dtd.yaml", "--config-file", "configs/zsclip.yaml",
         "--output-dir", str(tmp_path / "o"), "--eval-only", "DATALOADER.NUM_WORKERS", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, CLIP_OFFLINE="1", HOME=str(env_home), CLIP_CACHE=str(tmp_path / "cache")),
    )
    assert out.returncode != 0
    assert "ViT-B-16.pt" in out.stderr and "CLIP_CACHE" in out.stderr
    assert not osp.exists(tmp_path / "cache" / "ViT-B-16.pt")
