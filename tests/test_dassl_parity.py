"""Same numbers with or without the real Dassl.pytorch: sampling and augmentation randomness, caches both ways,
CoOp's ImageNet files, parse_test_res' std."""
from __future__ import annotations

import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, make_cfg

import datasets  # noqa: F401
from tools.fake_data import make_dataset, make_imagenet

TRACE = osp.join(osp.dirname(__file__), "data", "dassl_trace.json")


# ---- sampling and augmentation: one seed, the same batches on both engines ---------------------------------

@pytest.fixture(scope="module")
def trace() -> dict:
    with open(TRACE) as f:
        return json.load(f)


@pytest.mark.parametrize("workers", [0, 2])
def test_builtin_engine_trains_on_what_real_dassl_trained_on(tmp_path, trace, workers, monkeypatch):
    """The recorded run of the real Dassl 0.6.3 (tests/make_dassl_trace.py) and the same command on the built-in
    engine: same sample indices in every batch, same augmented images, same final weights and accuracy."""
    from engine_helpers import make_parity_data
    from make_dassl_trace import run_traced

    monkeypatch.setenv("DEAR_ENGINE", "builtin")
    make_parity_data(str(tmp_path / "data"))
    ours = run_traced(str(tmp_path / "data"), str(tmp_path / "out"), workers)
    theirs = trace["runs"][str(workers)]
    assert ours["engine"] == "built-in dasslite" and theirs["engine"] == "Dassl.pytorch"
    assert len(ours["batches"]) == len(theirs["batches"]) == 24
    for a, b in zip(ours["batches"], theirs["batches"]):
        where = f"epoch {a['epoch']} batch {a['batch']}"
        assert (a["epoch"], a["batch"], a["index"]) == (b["epoch"], b["batch"], b["index"]), where
        assert torch.allclose(torch.tensor(a["stats"]), torch.tensor(b["stats"]), atol=2e-4), where
    same_versions = trace["made_with"]["torch"] == torch.__version__
    tol = 0 if same_versions else 1e-5
    assert torch.allclose(torch.tensor(ours["weight"]), torch.tensor(theirs["weight"]), atol=tol, rtol=0)
    assert torch.allclose(torch.tensor(ours["bias"]), torch.tensor(theirs["bias"]), atol=tol, rtol=0)
    assert ours["accuracy"] == theirs["accuracy"]


class _Noise(torch.utils.data.Dataset):
    """Items that draw from the RNG in ``__getitem__``, as random transforms do."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "img": torch.rand(2)}


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_draws_like_dassls_torch_loader(workers):
    """``build_data_loader`` gives what Dassl's ``DataLoader(sampler=RandomSampler(data))`` gives, epoch after
    epoch, and leaves the global RNG in the same state."""
    from dassl.data import build_data_loader

    cfg = make_cfg(**{"DATALOADER.NUM_WORKERS": workers, "USE_CUDA": False})

    def epochs(loader):
        out = []
        for _ in range(2):
            out.append([(b["index"].tolist(), b["img"].tolist()) for b in loader])
            out.append(torch.rand(1).item())  # a training step drawing between epochs
        return out

    class Wrapper:
        def __init__(self, cfg, data_source, transform=None, is_train=False):
            self.data = _Noise()

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return self.data[i]

    torch.manual_seed(3)
    ours = epochs(build_data_loader(cfg, "RandomSampler", list(range(10)), batch_size=3, dataset_wrapper=Wrapper))
    torch.manual_seed(3)
    data = _Noise()
    dassl_like = torch.utils.data.DataLoader(data, batch_size=3, sampler=torch.utils.data.RandomSampler(data),
                                             num_workers=workers, drop_last=True)
    assert ours == epochs(dassl_like)


def test_transforms_follow_dassls_order_and_names():
    from dassl.data.transforms import build_transform

    cfg = make_cfg(**{"INPUT.SIZE": (32, 32), "INPUT.TRANSFORMS": ("random_flip", "randomgrayscale", "random_crop",
                                                                    "colorjitter", "center_crop", "normalize")})
    names = [type(t).__name__ for t in build_transform(cfg, is_train=True).transforms]
    # Dassl: crop before flip, no resize before random_crop, center_crop only at test time
    assert names == ["RandomCrop", "RandomHorizontalFlip", "ColorJitter", "RandomGrayscale", "ToTensor", "Normalize"]
    cfg.INPUT.TRANSFORMS = ("cutout",)
    with pytest.raises(ValueError, match="exist in Dassl.pytorch but not in the built-in engine"):
        build_transform(cfg, is_train=True)


# ---- caches both ways --------------------------------------------------------------------------------------

FAKE_DASSL = """
class Datum:
    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label
"""


def run_coop(tmp_path, code: str) -> str:
    """Run ``code`` in a Python that sees only a stand-in ``dassl`` package (a CoOp checkout without this
    project: ``-I`` keeps the project and its folder off ``sys.path``)."""
    env_dir = tmp_path / "coop_env"
    pkg = env_dir / "dassl" / "data" / "datasets"
    if not pkg.exists():
        pkg.mkdir(parents=True)
        for d in (pkg.parent.parent, pkg.parent, pkg):
            (d / "__init__.py").write_text("")
        (pkg / "base_dataset.py").write_text(FAKE_DASSL)
    script = f"import sys; sys.path.insert(0, {str(env_dir)!r})\n" + textwrap.dedent(code)
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    return out.stdout


def build(root, name, **kw):
    from dassl.data.datasets import build_dataset

    opts = {"DATASET.ROOT": str(root), "DATASET.NAME": name, "SEED": 1}
    opts.update(kw)
    cfg = make_cfg(**opts)
    cfg.VERBOSE = False
    return build_dataset(cfg)


def test_our_fewshot_cache_is_read_by_a_coop_checkout(tmp_path):
    ddir = make_dataset(str(tmp_path), "DescribableTextures", n_classes=3)
    ds = build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 2})
    cache = osp.join(ddir, "split_fewshot", "shot_2-seed_1.pkl")
    with open(cache, "rb") as f:
        assert b"dasslite" not in f.read()
    out = run_coop(tmp_path, f"""
        import pickle
        data = pickle.load(open({cache!r}, "rb"))
        print(type(data["train"][0]).__module__, len(data["train"]), data["train"][0].impath)
    """)
    assert out.split()[:2] == ["dassl.data.datasets.base_dataset", "6"]
    assert out.split()[2] == ds.train_x[0].impath


def test_coop_fewshot_cache_is_read_as_it_is(tmp_path):
    """A cache CoOp wrote on another machine (Dassl's Datum, absolute paths under another root) is used."""
    ddir = make_dataset(str(tmp_path / "here"), "DescribableTextures", n_classes=2)
    cache = osp.join(ddir, "split_fewshot", "shot_1-seed_1.pkl")
    os.makedirs(osp.dirname(cache))
    run_coop(tmp_path, f"""
        import pickle
        from dassl.data.datasets.base_dataset import Datum
        a, b = ("/elsewhere/data/dtd/images/" + p for p in ("class_a/train_0.jpg", "class_b/train_2.jpg"))
        data = {{"train": [Datum(a, 0, 0, "class a"), Datum(b, 1, 0, "class b")], "val": [Datum(b, 1, 0, "class b")]}}
        pickle.dump(data, open({cache!r}, "wb"), protocol=pickle.HIGHEST_PROTOCOL)
    """)
    ds = build(tmp_path / "here", "DescribableTextures", **{"DATASET.NUM_SHOTS": 1})
    assert [d.impath for d in ds.train_x] == [osp.join(ddir, "images", "class_a", "train_0.jpg"),
                                              osp.join(ddir, "images", "class_b", "train_2.jpg")]
    assert [d.classname for d in ds.val] == ["class b"]


def test_coop_imagenet_files_are_read_as_they_are(tmp_path):
    """CoOp's ImageNet few-shot cache holds only ``train`` (today: KeyError 'val'); its preprocessed.pkl holds
    paths of CoOp's machine."""
    ddir = make_imagenet(str(tmp_path / "here"), n_classes=2)
    images = osp.join(ddir, "images")
    other = "/elsewhere/data/imagenet/images"
    run_coop(tmp_path, f"""
        import os, pickle
        from dassl.data.datasets.base_dataset import Datum
        def listing(split):
            out = []
            for label, wnid in enumerate(sorted(os.listdir(os.path.join({images!r}, split)))):
                for name in os.listdir(os.path.join({images!r}, split, wnid)):  # CoOp: os.listdir order
                    out.append(Datum(os.path.join({other!r}, split, wnid, name), label, 0, "c%d" % label))
            return out
        train, test = listing("train"), listing("val")
        pickle.dump({{"train": train, "test": test}}, open({ddir!r} + "/preprocessed.pkl", "wb"))
        os.makedirs({ddir!r} + "/split_fewshot")
        pickle.dump({{"train": [train[0], train[-1]]}}, open({ddir!r} + "/split_fewshot/shot_1-seed_1.pkl", "wb"))
    """)
    ds = build(tmp_path / "here", "ImageNet", **{"DATASET.NUM_SHOTS": 1})
    assert len(ds.train_x) == 2 and not ds.val
    assert all(d.impath.startswith(images) and osp.isfile(d.impath) for d in ds.train_x + ds.test)
    assert len(ds.test) == 4


# ---- parse_test_res: CoOp's std --------------------------------------------------------------------------

def test_parse_test_res_reports_population_std_like_coop(tmp_path):
    for seed, acc in ((1, 70.0), (2, 72.0), (3, 74.0)):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        (run / "log.txt").write_text(f"Evaluate on the *test* set\n=> result\n* accuracy: {acc}%\n")

    def parse(*flags):
        out = subprocess.run([sys.executable, "parse_test_res.py", str(tmp_path), *flags], cwd=ROOT,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "72.00% +- 1.63%" in parse()  # np.std([70, 72, 74]) = 1.633
    assert "72.00% +- 2.00%" in parse("--sample-std")

