"""Every data set reader on a fake tree in CoOp's layout, plus few-shot caching and base/new splits."""
import os
import os.path as osp

import pytest
from conftest import make_cfg

import datasets  # noqa: F401
from tools.fake_data import ALL_DATASETS, TEST_ONLY, make_dataset, make_image_folder, make_imagenet


def build(root, name, **kw):
    from dassl.data.datasets import build_dataset

    opts = {"DATASET.ROOT": str(root), "DATASET.NAME": name, "SEED": 1}
    opts.update(kw)
    cfg = make_cfg(**opts)
    cfg.VERBOSE = False
    return build_dataset(cfg)


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_reader_on_fake_tree(tmp_path, name):
    make_dataset(str(tmp_path), name, n_classes=4)
    ds = build(tmp_path, name)
    if name in TEST_ONLY:
        n_classes = 4 if name in ("ImageNetV2", "ImageNetSketch") else 2
        assert ds.num_classes == n_classes
        assert len(ds.test) == 2 * n_classes and ds.train_x == ds.test
    else:
        assert ds.num_classes == 4
        assert len(ds.train_x) == 12 and len(ds.test) == 8
        assert all(osp.isfile(d.impath) for d in ds.train_x + ds.test)
    assert ds.classnames[0] in ("class a", "Boeing 707") or name in TEST_ONLY


TRAINABLE = [n for n in ALL_DATASETS if n not in TEST_ONLY]


@pytest.mark.parametrize("name", TRAINABLE)
def test_base_new_subsampling(tmp_path, name):
    make_dataset(str(tmp_path), name, n_classes=5)
    full = build(tmp_path, name)
    base = build(tmp_path, name, **{"DATASET.SUBSAMPLE_CLASSES": "base"})
    new = build(tmp_path, name, **{"DATASET.SUBSAMPLE_CLASSES": "new"})
    assert base.num_classes == 3 and new.num_classes == 2  # ceil(5/2) base classes
    assert base.classnames == full.classnames[:3]
    assert new.classnames == full.classnames[3:]
    assert sorted({d.label for d in new.test}) == [0, 1]  # relabelled from 0


@pytest.mark.parametrize("name", TRAINABLE)
def test_fewshot_cache_for_every_reader(tmp_path, name):
    ddir = make_dataset(str(tmp_path), name, n_classes=4)
    ds = build(tmp_path, name, **{"DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "base"})
    assert os.path.isfile(osp.join(ddir, "split_fewshot", "shot_2-seed_1.pkl"))
    assert len(ds.train_x) == 2 * 2  # 2 shots x 2 base classes
    again = build(tmp_path, name, **{"DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "base"})
    assert [d.impath for d in again.train_x] == [d.impath for d in ds.train_x]


def test_fewshot_is_seeded_and_cached(tmp_path):
    make_dataset(str(tmp_path), "DescribableTextures", n_classes=4)
    a = build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 2})
    cache = tmp_path / "dtd" / "split_fewshot" / "shot_2-seed_1.pkl"
    assert cache.is_file()
    assert len(a.train_x) == 8 and len(a.val) == 4  # val: min(shots, 4) but only 1 per class exists
    b = build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 2})
    assert [d.impath for d in a.train_x] == [d.impath for d in b.train_x]
    os.remove(cache)
    c = build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 2})  # regenerated: same seed, same sample
    assert [d.impath for d in a.train_x] == [d.impath for d in c.train_x]


def test_fewshot_differs_across_seeds(tmp_path):
    from dassl.data.datasets import build_dataset

    make_dataset(str(tmp_path), "OxfordPets", n_classes=3)
    samples = set()
    for seed in range(1, 6):
        cfg = make_cfg(**{"DATASET.ROOT": str(tmp_path), "DATASET.NAME": "OxfordPets", "SEED": seed,
                          "DATASET.NUM_SHOTS": 1})
        cfg.VERBOSE = False
        samples.add(tuple(d.impath for d in build_dataset(cfg).train_x))
    assert len(samples) > 1


def test_missing_dataset_names_path_and_source(tmp_path):
    from datasets.coop_split import DatasetNotFound

    with pytest.raises(DatasetNotFound, match=r"dtd.*DATASETS.md"):
        build(tmp_path, "DescribableTextures")
    (tmp_path / "dtd").mkdir()
    with pytest.raises(DatasetNotFound, match="split_zhou_DescribableTextures.json"):
        build(tmp_path, "DescribableTextures")


def test_incomplete_image_folder_is_reported(tmp_path):
    from datasets.coop_split import DatasetNotFound

    ddir = make_dataset(str(tmp_path), "Food101", n_classes=2)
    os.remove(osp.join(ddir, "images", "class_a", "train_0.jpg"))
    with pytest.raises(DatasetNotFound, match="train_0.jpg"):
        build(tmp_path, "Food101")


def test_imagenet_flat_val_layout_is_explained(tmp_path):
    from datasets.coop_split import DatasetNotFound

    make_imagenet(str(tmp_path), flat_val=True)
    with pytest.raises(DatasetNotFound, match="one folder per wnid"):
        build(tmp_path, "ImageNet")


def test_corrupt_image_error_names_file(tmp_path):
    from dassl.utils import read_image

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match="bad.jpg"):
        read_image(str(bad))


@pytest.mark.parametrize("as_csv", [False, True])
def test_image_folder_dataset(tmp_path, as_csv):
    make_image_folder(str(tmp_path), n_classes=4, as_csv=as_csv)
    ds = build(tmp_path, "ImageFolder", **{"DATASET.FOLDER.DIR": "my_folder", "DATASET.SUBSAMPLE_CLASSES": "new"})
    assert ds.classnames == ["class c", "class d"]
    assert len(ds.train_x) == 6 and len(ds.test) == 4


def test_image_folder_without_dir_is_explained(tmp_path):
    from datasets.coop_split import DatasetNotFound

    with pytest.raises(DatasetNotFound, match="DATASET.FOLDER.DIR"):
        build(tmp_path, "ImageFolder")


def test_malformed_split_file(tmp_path):
    ddir = make_dataset(str(tmp_path), "UCF101", n_classes=2)
    with open(osp.join(ddir, "split_zhou_UCF101.json"), "w") as f:
        f.write('{"train": [["a.jpg", 0]], "val": [], "test": []}')
    with pytest.raises(ValueError, match=r"train\[0\] must be \[path, label, classname\]"):
        build(tmp_path, "UCF101")


def test_fake_data_is_the_same_in_every_process(tmp_path):
    """Images depend on (label, split, index) only: not on PYTHONHASHSEED (hash() of a str is salted)."""
    import subprocess
    import sys

    from conftest import ROOT

    digests = []
    for seed in ("1", "2"):
        code = ("import hashlib, pathlib, sys; from tools.fake_data import make_dataset; "
                "make_dataset(sys.argv[1], 'DescribableTextures', n_classes=2); "
                "files = sorted(pathlib.Path(sys.argv[1]).rglob('*.jpg')); "
                "print(hashlib.sha256(b''.join(p.read_bytes() for p in files)).hexdigest())")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], cwd=ROOT, capture_output=True,
                             text=True, env=dict(os.environ, PYTHONHASHSEED=seed))
        assert out.returncode == 0, out.stderr
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1]
