"""Concept Entropy discovery: each stage on tiny models and synthetic data, and end to end."""
import json
import math

import numpy as np
import pytest
import torch

from head_roles.discover import (
    DiscoveryError,
    assign_roles,
    cluster_concepts,
    compare,
    decompose,
    discover,
    distribution,
    entropy,
    text_span,
)
from head_roles.roles import load_roles
from tools.fake_data import make_split_dataset


def test_decomposition_sums_to_image_feature(tiny_clip):
    img = torch.randn(4, 3, 32, 32)
    out = decompose(tiny_clip, img, layers=[3, 4, 5, 6])
    assert out["heads"].shape == (4, 4, 4, 64)  # [images, layers, heads, embed]
    assert torch.allclose(out["image"], tiny_clip.encode_image(img), atol=1e-5)
    total = out["heads"].sum((1, 2)) + out["rest"]
    assert torch.allclose(total, out["image"], atol=1e-4)
    # the analysed heads carry part of the feature, not all of it
    assert not torch.allclose(out["heads"].sum((1, 2)), out["image"], atol=1e-2)


def test_greedy_span_finds_planted_directions():
    g = torch.Generator().manual_seed(0)
    texts = torch.nn.functional.normalize(torch.randn(300, 32, generator=g), dim=-1)
    coef = torch.randn(500, 2, generator=g) * torch.tensor([6.0, 3.0])
    head = coef[:, :1] * texts[17] + coef[:, 1:] * texts[201] + 0.05 * torch.randn(500, 32, generator=g)
    idx, explained = text_span(head, texts, 4)
    assert idx[:2] == [17, 201]
    assert explained[0] > 0.7 and explained[0] > explained[1] > explained[2]


def test_entropy_and_distribution():
    d = distribution(["color", "color", "shape", "texture"])
    assert d == {"color": 0.5, "shape": 0.25, "texture": 0.25}
    assert entropy(d) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert entropy({"color": 1.0}) == 0.0


def test_quantile_assignment():
    ents = [0.1, 2.0, 0.5, 1.5, 1.0, 0.0, 2.5, 1.2, 0.8, 1.9]
    dom = ["color", "style", "animal", "style", "shape", "location", "style", "object", "texture", "human"]
    roles = assign_roles(ents, dom, ["color", "shape", "texture", "object", "location"], 0.2, 0.2)
    assert roles[5] == ("attribute", "location") and roles[0] == ("attribute", "color")  # two lowest
    assert roles[6] == ("generalization", "style") and roles[1] == ("generalization", "style")  # two highest
    assert sum(r == "mixed" for r, _ in roles) == 6
    roles = assign_roles(ents, dom, ["color"], 0.3, 0.0)
    assert roles[2] == ("other_specialized", "animal")  # specialized but not a core attribute
    with pytest.raises(DiscoveryError, match="overlap"):
        assign_roles(ents, dom, ["color"], 0.6, 0.5)


def test_clusters_named_by_concept_seeds():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    emb = np.concatenate([a + 0.05 * rng.normal(size=(8, 16)), b + 0.05 * rng.normal(size=(8, 16))])
    names = cluster_concepts(emb, {"color": a, "shape": b}, min_cluster_size=3)
    assert names == ["color"] * 8 + ["shape"] * 8
    with pytest.raises(DiscoveryError, match="distinct texts"):
        cluster_concepts(emb[:4], {"color": a}, min_cluster_size=3)


@pytest.fixture(scope="module")
def discovered(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("disc")
    make_split_dataset(str(root), "DescribableTextures", n_classes=6, per_split=(4, 1, 1))
    import glob

    paths = sorted(glob.glob(str(root / "dtd" / "images" / "*" / "*.jpg")))
    corpus = [f"A {c} {o}" for c in ["red", "blue", "green", "striped", "dotted", "round"]
              for o in ["cup", "ball", "house", "dog", "tree", "car", "circle", "square"]]
    kw = dict(n_layers=4, texts_per_head=6, corpus=corpus, min_cluster_size=3, backbone="tiny")
    a = discover(tiny_clip, "tiny", paths, cache_dir=str(root / "cache"), **kw)
    b = discover(tiny_clip, "tiny", paths, cache_dir=str(root / "cache2"), **kw)
    return a, b, root


def test_discovery_end_to_end_is_valid_and_deterministic(discovered):
    a, b, root = discovered
    assert a.layers == (3, 4, 5, 6) and len(a.heads) == 16
    assert a.to_dict() == b.to_dict()  # same inputs, fresh caches: same file
    counts = a.role_counts()
    assert counts["attribute"] + counts["other_specialized"] == round(0.2 * 16)
    assert counts["generalization"] == round(0.2 * 16)
    h = a.heads[0]
    assert len(h.phrases) == 6 and set(h.extra) >= {"entropy", "distribution"}
    assert h.extra["entropy"] == pytest.approx(entropy(h.extra["distribution"]), abs=1e-3)
    assert any((root / "cache").iterdir())
    report = compare(a, a)
    assert "same role: 16 (100.0%)" in report


def test_discovered_roles_train_with_dear(discovered, tmp_path, tiny_clip_file):
    from conftest import make_cfg
    from dassl.engine import build_trainer

    from tools.fake_data import make_dataset

    a, _, root = discovered
    roles_path = str(tmp_path / "roles.json")
    a.save(roles_path)
    assert load_roles(roles_path).assignment() == a.assignment()
    make_dataset(str(tmp_path / "data"), "DescribableTextures", n_classes=4)
    cfg = make_cfg(**{"DATASET.ROOT": str(tmp_path / "data"), "DATASET.NAME": "DescribableTextures", "SEED": 1,
                      "TRAINER.NAME": "DeAR", "OUTPUT_DIR": str(tmp_path / "out"),
                      "MODEL.BACKBONE.PATH": tiny_clip_file,
                      "TRAINER.DEAR.ROLES_FILE": roles_path, "INPUT.SIZE": (32, 32), "DATALOADER.NUM_WORKERS": 0,
                      "OPTIM.MAX_EPOCH": 1, "OPTIM.NAME": "adamw", "DATALOADER.TRAIN_X.BATCH_SIZE": 4})
    cfg.VERBOSE = False
    cfg.freeze()
    tr = build_trainer(cfg)
    tr.train()
    assert (tmp_path / "out" / "prompt_learner" / "model.pth.tar-1").is_file()


def test_cli_errors(tmp_path):
    from head_roles.discover import main

    with pytest.raises(DiscoveryError, match="no images"):
        main(["--images", str(tmp_path), "--out", str(tmp_path / "r.json")])
    with pytest.raises(DiscoveryError, match="either --images"):
        main(["--out", str(tmp_path / "r.json")])


def test_role_map_png(tmp_path):
    from head_roles.discover import plot_roles

    plot_roles(load_roles("ViT-B/16"), str(tmp_path / "map.png"))
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(load_roles("ViT-B/16").to_dict())  # serialisable
