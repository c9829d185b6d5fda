"""The built-in synthetic world and a shortened run of the whole demo chain."""
import os
import subprocess
import sys

import numpy as np
from conftest import ROOT, make_cfg

from tools import world


def test_classes_split_keeps_every_attribute_on_both_sides():
    classes = world.world_classes(seed=0)
    assert len(set(classes)) == 24
    base, new = classes[:12], classes[12:]
    for i, values in enumerate((world.COLORS, world.TEXTURES, world.SHAPES)):
        assert {c[i] for c in base} == set(values) == {c[i] for c in new}
    assert world.world_classes(seed=0) == classes and world.world_classes(seed=1) != classes


def test_render_is_deterministic_and_factors_show():
    a, _ = world.render("red", "striped", "circle", "top left", np.random.default_rng(0))
    b, _ = world.render("red", "striped", "circle", "top left", np.random.default_rng(0))
    assert np.array_equal(a, b) and a.shape == (32, 32, 3)
    red, _ = world.render("red", "plain", "square", "center", np.random.default_rng(1))
    blue, _ = world.render("blue", "plain", "square", "center", np.random.default_rng(1))
    centre = (slice(13, 19), slice(13, 19))
    assert red[centre][..., 0].mean() > 150 > blue[centre][..., 0].mean()
    tl, _ = world.render("yellow", "plain", "square", "top left", np.random.default_rng(2))
    br, _ = world.render("yellow", "plain", "square", "bottom right", np.random.default_rng(2))
    assert tl[:12, :12].mean() > br[:12, :12].mean()
    caps = {world.caption("red", "dotted", "ring", "center", "dark", __import__("random").Random(i)) for i in range(40)}
    assert len(caps) > 8


def test_world_dataset_reads_with_base_new(tmp_path):
    from dassl.data.datasets import build_dataset

    world.write_dataset(str(tmp_path), per_split=(2, 1, 2))
    cfg = make_cfg(**{"DATASET.ROOT": str(tmp_path), "DATASET.NAME": "SynthWorld", "DATASET.SUBSAMPLE_CLASSES": "new"})
    cfg.VERBOSE = False
    ds = build_dataset(cfg)
    assert ds.num_classes == 12 and len(ds.test) == 24
    names = [world.class_name(*c) for c in world.world_classes()[12:]]
    assert ds.classnames == names


def test_demo_chain_shortened(tmp_path):
    """scripts/demo.sh end to end with tiny settings: world, pretraining, discovery, base2new, table, pictures."""
    env = dict(os.environ, SKIP_SETUP="1", WORLD_DIR=str(tmp_path / "world"), SEEDS="1", STEPS="3",
               PRETRAIN_IMAGES="300", DISCOVER_IMAGES="48", EXTRA_OPTS="OPTIM.MAX_EPOCH 1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "| DeAR (dear) | synth_world |" in out.stdout and "| ZeroshotCLIP (zsclip) | synth_world |" in out.stdout
    for png in ("head_roles.png", "fusion_weights.png", "attribute_retrieval.png"):
        assert (tmp_path / "world" / "figures" / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "world" / "tiny_world_roles.json").is_file()
