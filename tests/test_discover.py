"""Concept Entropy discovery: the rules on planted entropies, each stage on tiny models and synthetic data, the
library end to end (paths and tensors), and the command line (folders and data sets)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from head_roles.concept_entropy import TABLE6_QUANTILES, tied_across_split
from head_roles.discover import (
    DiscoveryError,
    QuantileRule,
    ThresholdRule,
    assign_roles,
    check_seeds,
    cluster_concepts,
    compare,
    decompose,
    discover,
    distribution,
    entropy,
    load_images,
    load_seeds,
    normalised_entropy,
    text_span,
)
from head_roles.discover_cli import build_parser, main, rule_from_args
from head_roles.roles import load_roles
from tools.fake_data import make_split_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = ["color", "shape", "texture", "object", "location"]


def test_library_import_has_no_side_effects():
    """Importing the library pulls in neither the engine, the data sets, the trainers nor the heavy optional
    packages, and changes no environment variable."""
    code = ("import os, sys; env = dict(os.environ); import head_roles.discover, head_roles.concept_entropy; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'dassl', 'dasslite', 'datasets', 'trainers', "
            "'sentence_transformers', 'hdbscan', 'sklearn', 'matplotlib', 'torchvision', 'yacs'}); "
            "print(bad, env == dict(os.environ))")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True", out.stdout + out.stderr


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
    assert normalised_entropy(math.log(12), 12) == pytest.approx(1.0)
    ten = entropy(distribution(list("abcdefghij")))  # 10 texts, 10 concepts: the most 10 texts can reach
    assert normalised_entropy(ten, 12) == pytest.approx(math.log(10) / math.log(12))
    with pytest.raises(DiscoveryError, match="2 concepts"):
        normalised_entropy(0.0, 1)


# ---------------------------------------------------------------------------------------------------
# rules on planted entropies
# ---------------------------------------------------------------------------------------------------
ENTS = [0.1, 2.0, 0.5, 1.5, 1.0, 0.0, 2.5, 1.2, 0.8, 1.9]
DOM = ["color", "style", "animal", "style", "shape", "location", "style", "object", "texture", "human"]


def counts(roles):
    spec = sum(r in ("attribute", "other_specialized") for r, _ in roles)
    return spec, sum(r == "generalization" for r, _ in roles), sum(r == "mixed" for r, _ in roles)


def test_quantile_rule():
    roles = assign_roles(ENTS, DOM, CORE, QuantileRule(0.2, 0.2))
    assert roles[5] == ("attribute", "location") and roles[0] == ("attribute", "color")  # two lowest
    assert roles[6] == ("generalization", "style") and roles[1] == ("generalization", "style")  # two highest
    assert counts(roles) == (2, 2, 6) and roles[4] == ("mixed", "none")
    roles = assign_roles(ENTS, DOM, ["color"], QuantileRule(0.3, 0.0))
    assert roles[2] == ("other_specialized", "animal")  # specialized but not a core attribute
    assert counts(roles) == (3, 0, 7)
    assert counts(assign_roles(ENTS, DOM, CORE, QuantileRule(0.25, 0.35))) == (3, 4, 3)  # 2.5 and 3.5: halves up
    assert counts(assign_roles(ENTS[:3], DOM[:3], CORE, QuantileRule(0.5, 0.5))) == (2, 1, 0)  # tails never overlap
    with pytest.raises(DiscoveryError, match="overlap"):
        QuantileRule(0.6, 0.5)
    with pytest.raises(DiscoveryError, match=r"in \[0, 1\]"):
        QuantileRule(-0.1, 0.2)


def test_quantile_ties_are_broken_by_head_order_threshold_ties_are_not():
    ents = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    roles = assign_roles(ents, DOM, CORE, QuantileRule(0.2, 0.2))
    assert [r != "mixed" for r, _ in roles[:4]] == [True, True, False, False]  # first two of four equal heads
    splits = QuantileRule(0.2, 0.2).split(ents, 12)
    assert tied_across_split(ents, splits) == 8
    t = ThresholdRule(0.1, 0.7)
    assert t.split(ents, 12) == ["specialized"] * 4 + ["mixed"] * 2 + ["generalization"] * 4
    assert tied_across_split(ents, t.split(ents, 12)) == 0


def test_threshold_rule_counts_and_checks():
    log12 = math.log(12)
    hn = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    ents = [v * log12 for v in hn]
    assert counts(assign_roles(ents, DOM, CORE, ThresholdRule(0.3, 0.7))) == (4, 3, 3)  # both ends inclusive
    assert counts(assign_roles(ents, DOM, CORE, ThresholdRule(0.05, 0.95))) == (1, 0, 9)
    # normalised by the number of concepts: the same entropies over 4 concepts are higher
    assert counts(assign_roles(ents, DOM, CORE, ThresholdRule(0.3, 0.7), n_concepts=4)) == (2, 6, 2)
    with pytest.raises(DiscoveryError, match="below"):
        ThresholdRule(0.7, 0.3)
    with pytest.raises(DiscoveryError, match=r"in \[0, 1\]"):
        ThresholdRule(0.2, 1.5)


def table2_planted():
    """Concept distributions of 10 texts for the 48 heads of vit_b16.json (the paper's Table 2): specialized heads
    mostly one concept, generalization heads spread with 'style' dominant, mixed heads in between."""
    roles = load_roles("ViT-B/16")
    others = ["animal", "human", "text", "number", "emotion", "action", "color", "shape", "texture"]
    dists = []
    for i, h in enumerate(roles.heads):
        if h.role in ("attribute", "other_specialized"):
            pattern = [(9, 1), (8, 2), (8, 1, 1), (7, 2, 1), (7, 3)][i % 5]
            texts = [h.concept] * pattern[0]
            for j, n in enumerate(pattern[1:]):
                texts += [next(c for c in others[j:] + ["style"] if c != h.concept)] * n
        elif h.role == "generalization":
            texts = ["style"] * 3 + others[:7]
        else:
            texts = ["object"] * 4 + ["location"] * 3 + ["animal"] * 3 if i % 2 else \
                ["color"] * 4 + ["texture"] * 2 + ["shape"] * 2 + ["human"] * 2
        dists.append(distribution(texts))
    return roles, dists


def test_threshold_rule_reproduces_table2_quantiles_cannot():
    roles, dists = table2_planted()
    ents = [entropy(d) for d in dists]
    dom = [max(d, key=lambda c: (d[c], c)) for d in dists]
    got = assign_roles(ents, dom, roles.core_attributes, ThresholdRule(0.4, 0.7))
    assert counts(got) == (36, 7, 5)
    assert sorted((h.layer, h.head, r, c) for h, (r, c) in zip(roles.heads, got)) == roles.assignment()
    for q, expected in zip(TABLE6_QUANTILES, [(5, 5, 38), (10, 10, 28), (14, 14, 20), (19, 19, 10)]):
        assert counts(assign_roles(ents, dom, roles.core_attributes, QuantileRule.top(q))) == expected
    # Table 2's counts through quantiles need asymmetric tails (36/48 and 7/48), fitted to the answer
    assert counts(assign_roles(ents, dom, roles.core_attributes, QuantileRule(36 / 48, 7 / 48))) == (36, 7, 5)


def test_quantile_flag_gives_table6_variants():
    parse = build_parser().parse_args
    assert rule_from_args(parse(["--out", "x"])) == QuantileRule(0.2, 0.2)  # the paper's text
    for q in TABLE6_QUANTILES:
        assert rule_from_args(parse(["--out", "x", "--quantile", str(q)])) == QuantileRule(q, q) == QuantileRule.top(q)
    ents = [i / 47 for i in range(48)]  # 48 distinct entropies, as for ViT-B/16's layers 9-12
    got = [counts(assign_roles(ents, ["color"] * 48, CORE, QuantileRule.top(q))) for q in TABLE6_QUANTILES]
    assert got == [(5, 5, 38), (10, 10, 28), (14, 14, 20), (19, 19, 10)]
    assert rule_from_args(parse(["--out", "x", "--specialized-quantile", "0.3"])) == QuantileRule(0.3, 0.2)
    assert rule_from_args(parse(["--out", "x", "--rule", "threshold", "--specialized-threshold", "0.4",
                                 "--generalization-threshold", "0.7"])) == ThresholdRule(0.4, 0.7)
    bad = {("--quantile", "0.6"): r"\(0, 0.5\]",
           ("--quantile", "0.1", "--specialized-quantile", "0.2"): "not both",
           ("--specialized-threshold", "0.3"): "only with --rule threshold",
           ("--rule", "threshold", "--specialized-threshold", "0.3"): "needs --generalization-threshold",
           ("--rule", "threshold", "--quantile", "0.2"): "only with --rule quantile"}
    for flags, message in bad.items():
        with pytest.raises(DiscoveryError, match=message):
            rule_from_args(parse(["--out", "x", *flags]))


def test_clusters_named_by_concept_seeds():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    emb = np.concatenate([a + 0.05 * rng.normal(size=(8, 16)), b + 0.05 * rng.normal(size=(8, 16))])
    names = cluster_concepts(emb, {"color": a, "shape": b}, min_cluster_size=3)
    assert names == ["color"] * 8 + ["shape"] * 8
    with pytest.raises(DiscoveryError, match="distinct texts"):
        cluster_concepts(emb[:4], {"color": a}, min_cluster_size=3)
    assert cluster_concepts(emb, {"color": a, "shape": b}, min_cluster_size=3, selection="eom") == names
    with pytest.raises(DiscoveryError, match="choose one of leaf, eom"):
        cluster_concepts(emb, {"color": a, "shape": b}, min_cluster_size=3, selection="flat")


def test_leaf_selection_keeps_concepts_that_eom_merges():
    """Four groups in two well-separated pairs: HDBSCAN's eom keeps the two pairs (the more persistent clusters),
    so each pair gets one name; leaf keeps the four groups, each named by its own seed."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(2, 32)) * 3
    centres = {c: base[i // 2] + rng.normal(size=32) * 0.5 for i, c in enumerate(["color", "texture", "shape",
                                                                                      "location"])}
    emb = np.concatenate([centres[c] + 0.3 * rng.normal(size=(10, 32)) for c in centres])
    truth = [c for c in centres for _ in range(10)]
    assert cluster_concepts(emb, centres, min_cluster_size=5, selection="leaf") == truth
    eom = cluster_concepts(emb, centres, min_cluster_size=5, selection="eom")
    assert len(set(eom[:20])) == 1 and len(set(eom[20:])) == 1  # one name per pair: half the texts misnamed


def test_concept_seeds_are_checked_with_clear_errors(tmp_path):
    assert check_seeds({"color": [" a red color "], "shape": ["a circle"]}) == {"color": ["a red color"],
                                                                               "shape": ["a circle"]}
    bad = {'["color"]': "at least 2 concepts", "{}": "at least 2 concepts", '{"color": ["a"]}': "at least 2 concepts",
           '{"color": ["a"], "colour": ["b"]}': "unknown concept 'colour'",
           '{"color": ["a"], "shape": []}': "'shape' needs a non-empty list",
           '{"color": ["a"], "shape": "a circle"}': "'shape' needs a non-empty list",
           '{"color": ["a"], "shape": [" "]}': "'shape' needs a non-empty list",
           '{"color": ["a"], "none": ["b"]}': "unknown concept 'none'"}
    for i, (text, message) in enumerate(bad.items()):
        path = tmp_path / f"s{i}.json"
        path.write_text(text)
        with pytest.raises(DiscoveryError, match=message):
            load_seeds(str(path))
    (tmp_path / "broken.json").write_text('{"color": [')
    with pytest.raises(DiscoveryError, match="not valid JSON"):
        load_seeds(str(tmp_path / "broken.json"))
    with pytest.raises(DiscoveryError, match="no such file"):
        load_seeds(str(tmp_path / "absent.json"))


# ---------------------------------------------------------------------------------------------------
# the library end to end
# ---------------------------------------------------------------------------------------------------
CORPUS = [f"A {c} {o}" for c in ["red", "blue", "green", "striped", "dotted", "round"]
          for o in ["cup", "ball", "house", "dog", "tree", "car", "circle", "square"]]
KW = dict(n_layers=4, texts_per_head=6, corpus=CORPUS, min_cluster_size=3, backbone="tiny", progress=False)


@pytest.fixture(scope="module")
def discovered(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("disc")
    make_split_dataset(str(root), "DescribableTextures", n_classes=6, per_split=(4, 1, 1))
    import glob

    paths = sorted(glob.glob(str(root / "dtd" / "images" / "*" / "*.jpg")))
    a = discover(tiny_clip, paths, cache_dir=str(root / "cache"), **KW)
    b = discover(tiny_clip, paths, cache_dir=str(root / "cache2"), **KW)
    return a, b, root, paths


def test_discovery_end_to_end_is_valid_and_deterministic(discovered):
    a, b, root, _ = discovered
    assert a.layers == (3, 4, 5, 6) and len(a.heads) == 16
    assert a.to_dict() == b.to_dict()  # same inputs, fresh caches: same file
    counts = a.role_counts()
    assert counts["attribute"] + counts["other_specialized"] == round(0.2 * 16)
    assert counts["generalization"] == round(0.2 * 16)
    h = a.heads[0]
    assert len(h.phrases) == 6 and set(h.extra) >= {"entropy", "normalised_entropy", "distribution"}
    assert h.extra["entropy"] == pytest.approx(entropy(h.extra["distribution"]), abs=1e-3)
    assert h.extra["normalised_entropy"] == pytest.approx(h.extra["entropy"] / math.log(12), abs=1e-3)
    prov = a.meta["provenance"]
    assert prov["rule"]["name"] == "quantile" and prov["rule"]["specialized_quantile"] == 0.2
    assert prov["rule"]["generalization_quantile"] == 0.2 and prov["n_concepts"] == 12
    assert any((root / "cache").iterdir())
    report = compare(a, a)
    assert "same role: 16 (100.0%)" in report


def test_tensor_images_and_other_rules_on_the_cache(discovered, tiny_clip):
    a, _, root, paths = discovered
    images = load_images(paths, 32)  # [N, 3, 32, 32]
    assert discover(tiny_clip, images, **KW).to_dict() == a.to_dict()  # tensors = paths, no cache involved
    with pytest.raises(DiscoveryError, match=r"\[N, 3, 32, 32\]"):
        discover(tiny_clip, images[:, :, :16], **KW)

    cache = root / "cache"
    before = sorted(p.name for p in cache.iterdir())
    hn = sorted(h.extra["normalised_entropy"] for h in a.heads)  # rounded to 4 decimals: cut between values
    values = sorted(set(hn))
    assert len(values) >= 4
    ts, tg = (values[0] + values[1]) / 2, (values[-2] + values[-1]) / 2
    rule = ThresholdRule(ts, tg)
    t = discover(tiny_clip, paths, cache_dir=str(cache), rule=rule, **KW)
    assert sorted(p.name for p in cache.iterdir()) == before  # every stage came from the cache
    n_spec = sum(v <= ts for v in hn)
    n_gen = sum(v >= tg for v in hn)
    c = t.role_counts()
    assert (c["attribute"] + c["other_specialized"], c["generalization"]) == (n_spec, n_gen)
    assert t.meta["provenance"]["rule"] == rule.provenance()
    assert t.meta["provenance"]["rule"]["specialized_threshold"] == ts
    q = discover(tiny_clip, paths, cache_dir=str(cache), rule=QuantileRule.top(0.4), **KW)
    c = q.role_counts()
    assert (c["attribute"] + c["other_specialized"], c["generalization"], c["mixed"]) == (6, 6, 4)


def test_own_concept_seeds_name_the_texts_and_are_recorded(discovered, tiny_clip):
    a, _, root, paths = discovered
    seeds = {"color": ["a red color", "a blue color"], "shape": ["a circle", "a square"],
             "object": ["a cup", "a car"]}
    s = discover(tiny_clip, paths, cache_dir=str(root / "cache"), seeds=seeds, core=["color", "shape"],
                 cluster_selection="eom", **KW)
    prov = s.meta["provenance"]
    assert prov["concept_seeds"] == seeds and prov["n_concepts"] == 3 and prov["cluster_selection"] == "eom"
    assert a.meta["provenance"]["cluster_selection"] == "leaf" and a.meta["provenance"]["n_concepts"] == 12
    assert all(set(h.extra["distribution"]) <= set(seeds) for h in s.heads)
    assert all(h.extra["normalised_entropy"] == pytest.approx(h.extra["entropy"] / math.log(3), abs=1e-3)
               for h in s.heads)
    assert all(h.concept in ("color", "shape") for h in s.heads if h.role == "attribute")
    with pytest.raises(DiscoveryError, match=r"core attributes \['texture'\] have no concept seeds"):
        discover(tiny_clip, paths, seeds=seeds, core=["color", "texture"], **KW)
    with pytest.raises(DiscoveryError, match="--cluster-selection 'flat'"):
        discover(tiny_clip, paths, cluster_selection="flat", **KW)


def test_discovered_roles_train_with_dear(discovered, tmp_path, tiny_clip_file):
    from conftest import make_cfg
    from dassl.engine import build_trainer

    from tools.fake_data import make_dataset

    a = discovered[0]
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


# ---------------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------------
def test_cli_on_a_dataset_config(tmp_path, tiny_clip_file, capsys):
    make_split_dataset(str(tmp_path / "data"), "DescribableTextures", n_classes=6, per_split=(4, 1, 1))
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    out = tmp_path / "roles" / "q30.json"
    common = ["--weights", tiny_clip_file, "--root", str(tmp_path / "data"), "--dataset-config-file",
              os.path.join(ROOT, "configs", "datasets", "dtd.yaml"), "--corpus", str(tmp_path / "corpus.txt"),
              "--texts-per-head", "6", "--min-cluster-size", "3", "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--out", str(out), "--quantile", "0.3"]) == 0
    doc = json.loads(out.read_text())
    rule = doc["provenance"]["rule"]
    assert rule["name"] == "quantile" and rule["specialized_quantile"] == 0.3 == rule["generalization_quantile"]
    assert doc["provenance"]["num_images"] == 24  # the train split: 6 classes x 4
    assert sum(h["role"] == "generalization" for h in doc["heads"]) == 5  # 0.3 x 16 = 4.8
    assert (tmp_path / "roles" / "q30.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "quantile rule" in printed and "normalised entropy over heads" in printed
    out2 = tmp_path / "roles" / "thr.json"
    assert main([*common, "--out", str(out2), "--rule", "threshold", "--specialized-threshold", "0.2",
                 "--generalization-threshold", "0.6"]) == 0
    doc2 = json.loads(out2.read_text())
    assert doc2["provenance"]["rule"]["name"] == "threshold"
    for h in doc2["heads"]:
        expect = "generalization" if h["normalised_entropy"] >= 0.6 else "mixed" if h["normalised_entropy"] > 0.2 \
            else None
        assert h["role"] == expect if expect else h["role"] in ("attribute", "other_specialized")


def test_cli_errors(tmp_path, capsys):
    assert main(["--images", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "error: --images: no images" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "r.json")]) == 2
    assert "either --images" in capsys.readouterr().err
    # python -m head_roles.discover is the command line; a bad rule is refused before anything loads
    out = subprocess.run([sys.executable, "-m", "head_roles.discover", "--images", str(tmp_path), "--out", "r.json",
                          "--rule", "threshold"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: --rule threshold needs --specialized-threshold")
    (tmp_path / "seeds.json").write_text('{"color": ["a red color"]}')
    assert main(["--images", str(tmp_path), "--out", str(tmp_path / "r.json"), "--seeds",
                 str(tmp_path / "seeds.json")]) == 2  # refused before the images are looked for
    err = capsys.readouterr().err
    assert "error: --seeds" in err and "at least 2 concepts" in err and not (tmp_path / "r.json").exists()


def test_role_map_png(tmp_path):
    import matplotlib.pyplot as plt
    from figure_checks import overlapping_texts

    from head_roles.discover import plot_roles, role_map

    plot_roles(load_roles("ViT-B/16"), str(tmp_path / "map.png"))
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    roles = load_roles("ViT-B/16")
    fig = role_map(roles)
    ax = fig.axes[0]
    cell_labels = sorted(t.get_text() for t in ax.texts)
    # concepts only on specialized heads: none on generalization or mixed heads
    expected = sorted(h.concept[:8] for layer in roles.layers for h in roles.layer(layer)
                      if h.role in ("attribute", "other_specialized") and h.concept != "none")
    assert cell_labels == expected and len(expected) == 36  # Table 2: 36 specialized heads of 48
    assert overlapping_texts(fig) == []
    plt.close(fig)
    json.dumps(load_roles("ViT-B/16").to_dict())  # serialisable
