"""DeAR dropped into an existing CoOp-family checkout: install this package, copy ``trainers/dear.py``, add two
lines to the checkout's ``train.py`` (README "DeAR in your CoOp, MaPLe or PromptSRC checkout")."""
import shutil
import subprocess
import sys
import textwrap

from conftest import ROOT

# A CoOp-style checkout: its own train.py with its own extend_cfg, its own trainers/ and datasets/ packages.
CHECKOUT_TRAIN = '''
import sys
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from yacs.config import CfgNode as CN

import datasets.dtd  # noqa: F401  (the checkout's data sets)
import trainers.coop  # noqa: F401  (the checkout's own trainers)
import trainers.dear  # noqa: F401  <- added: the copied DeAR trainer
from clipkit.config import extend_cfg as add_dear_keys  # <- added


def extend_cfg(cfg):
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    add_dear_keys(cfg)  # <- added: DeAR's keys (keys the checkout already has are kept)


cfg = get_cfg_default()
extend_cfg(cfg)
cfg.merge_from_file("configs/trainers/DeAR/dear.yaml")
cfg.merge_from_list(sys.argv[1:])
cfg.freeze()
set_random_seed(1)
trainer = build_trainer(cfg)
trainer.train()
'''

CHECKOUT_COOP = '''
from dassl.engine import TRAINER_REGISTRY, TrainerX


@TRAINER_REGISTRY.register()
class CoOp(TrainerX):  # the checkout's own CoOp (unused here, but registered alongside DeAR)
    pass
'''

CHECKOUT_DTD = '''
import json
import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum


@DATASET_REGISTRY.register()
class DescribableTextures(DatasetBase):
    def __init__(self, cfg):
        root = osp.join(cfg.DATASET.ROOT, "dtd")
        with open(osp.join(root, "split_zhou_DescribableTextures.json")) as f:
            split = json.load(f)
        read = lambda items: [Datum(impath=osp.join(root, "images", p), label=y, classname=c) for p, y, c in items]
        super().__init__(train_x=read(split["train"]), val=read(split["val"]), test=read(split["test"]))
'''


def test_dear_drops_into_a_coop_checkout(tmp_path, built_wheel):
    from golden import _setup

    s = _setup(str(tmp_path / "assets"))
    site = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(built_wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    checkout = tmp_path / "CoOp"
    for rel, text in {"train.py": CHECKOUT_TRAIN, "trainers/__init__.py": "", "trainers/coop.py": CHECKOUT_COOP,
                      "datasets/__init__.py": "", "datasets/dtd.py": CHECKOUT_DTD}.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(textwrap.dedent(text))
    shutil.copy(f"{ROOT}/trainers/dear.py", checkout / "trainers" / "dear.py")  # the one file copied
    (checkout / "configs/trainers/DeAR").mkdir(parents=True)
    shutil.copy(f"{ROOT}/configs/dear.yaml", checkout / "configs/trainers/DeAR/dear.yaml")
    # The checkout has the real Dassl installed; here the built-in engine stands in for it under the name `dassl`.
    launcher = ("import dasslite; dasslite.use_dassl(); import runpy; runpy.run_path('train.py', run_name='__main__')\n"
                "import clipkit, trainers.dear; print('FROM', clipkit.__file__, trainers.dear.__file__)")
    args = ["DATASET.ROOT", s["root"], "DATASET.NAME", "DescribableTextures", "TRAINER.NAME", "DeAR",
            "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.BACKBONE.PATH", s["clip"], "TRAINER.DEAR.ROLES_FILE",
            s["roles"], "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0"]
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "CLIP_OFFLINE": "1", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", launcher, *args], cwd=checkout, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "* accuracy" in run.stdout and (tmp_path / "out/prompt_learner/model.pth.tar-1").is_file()
    where = run.stdout.split("FROM ")[-1].split()
    assert where == [f"{site}/clipkit/__init__.py", f"{checkout}/trainers/dear.py"]  # layer installed, trainer copied
