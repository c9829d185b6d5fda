"""Several processes on CPU (gloo), launched with torchrun exactly as on GPUs: DDP steps equal one process's steps
for every trainer, torchrun train.py equals python train.py, evaluation scores every image once, rank 0 alone
writes, resume under two processes is exact, and the batch rules give clear errors.

Tolerance: with the same samples in every global batch, two processes end within ``STEP_TOL`` = 1e-6 (absolute,
fp32) of one process; the only difference is the order of float additions (two half-batch means averaged by
DDP vs one mean). Measured on CPU: <= 4.4e-7 after 2 SGD steps of any trainer (PromptSRC the largest), 2.2e-7
after 6 steps of DeAR through train.py. (With Adam the same float noise is amplified where a gradient is near
zero, to ~1e-4 after 2 steps: the test uses SGD, as the official configs do.)

This file is also the worker of the per-trainer test: ``torchrun --standalone --nproc_per_node 2
tests/test_distributed.py SETUP.json OUT.pt``.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import subprocess
import sys

TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(TESTS)
STEP_TOL = 1e-6
GLOBAL_BATCH = 4
STEPS = 2


# ---- what both sides run: build a trainer, train a few fixed global batches, evaluate ------------------------

def _global_batches(n_classes: int) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(123)
    return [{"img": torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g),
             "label": torch.randint(0, n_classes, (GLOBAL_BATCH,), generator=g)} for _ in range(STEPS)]


def steps_and_test(setup: dict, out: str, trainer: str, rank: int = 0, world: int = 1) -> dict:
    """Build ``trainer`` on the tiny CLIP, train ``STEPS`` fixed global batches (this rank's slice of each), and
    evaluate on the test split; return the learner's weights and the accuracy."""
    from golden import _trainer, tiny_opts

    tr = _trainer(setup, out, trainer, **tiny_opts(trainer, setup), **{"OPTIM.NAME": "sgd", "OPTIM.LR": 0.01})
    result: dict = {"learner_wrapped": type(tr.model.__dict__.get("_learner_call")).__name__}
    if tr.optim is not None:
        init = {k: v.detach().clone() for k, v in tr.learner.state_dict().items() if v.is_floating_point()}
        tr.set_model_mode("train")
        tr.num_batches = 10  # no lr step or end of epoch inside these steps
        local = GLOBAL_BATCH // world
        for i, batch in enumerate(_global_batches(tr.num_classes)):
            tr.batch_idx = i
            tr.forward_backward({k: v[rank * local:(rank + 1) * local] for k, v in batch.items()})
        result["weights"] = {k: v.detach().clone() for k, v in tr.learner.state_dict().items()
                             if v.is_floating_point()}
        result["moved"] = max((result["weights"][k] - v).abs().max().item() for k, v in init.items())
    result["accuracy"] = tr.test()
    result["total"] = tr.evaluator._total  # this rank's share
    return result


def worker(setup_file: str, out_file: str) -> None:
    """One rank of the per-trainer test (run by torchrun)."""
    sys.path[:0] = [ROOT, TESTS]
    os.environ.setdefault("CLIP_OFFLINE", "1")
    import dasslite

    dasslite.use_dassl()
    import torch
    from golden import TINY_OPTS

    from dasslite import distributed

    info = distributed.init_from_env(use_cuda=False)
    assert info is not None and info.backend == "gloo"
    with open(setup_file) as f:
        setup = json.load(f)
    results = {}
    for trainer in TINY_OPTS:
        results[trainer] = steps_and_test(setup, osp.join(osp.dirname(out_file), "out"), trainer, info.rank,
                                          info.world_size)
    everyone = distributed.all_gather(results)
    if info.rank == 0:
        torch.save(everyone, out_file)
    distributed.shutdown()


if __name__ == "__main__":
    worker(*sys.argv[1:3])
    sys.exit(0)


# ---- the tests ------------------------------------------------------------------------------------------------

import pytest  # noqa: E402
import torch  # noqa: E402

import runs  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
RUN_TRAIN = osp.join(TESTS, "run_train.py")


def launch(cmd: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """golden's tiny CLIP and roles, on a fake DTD of 6 classes x (8 train, 2 val, 2 test) images."""
    from clipkit.tiny import build_clip, save_clip
    from tools.fake_data import make_dataset, write_tiny_roles

    tmp = tmp_path_factory.mktemp("ddp")
    make_dataset(str(tmp / "data"), "DescribableTextures", n_classes=6, per_split=(8, 2, 2))
    return {"root": str(tmp / "data"), "clip": save_clip(build_clip(seed=0), str(tmp / "clip.pt")),
            "roles": write_tiny_roles(str(tmp / "roles.json"))}


def test_every_trainer_steps_under_ddp_as_one_process_with_the_global_batch(setup, tmp_path):
    """2 processes x 2 images = 1 process x 4 images, for every trainer: learner weights after two SGD steps within
    1e-6 (the loss terms that do not depend on the batch, e.g. DeAR's fusion loss or PromptSRC's text SCL, are
    the same on both ranks and DDP's mean keeps them), the same test accuracy from the sharded evaluation, and
    only the learner is wrapped."""
    from golden import TINY_OPTS

    setup_file = tmp_path / "setup.json"
    setup_file.write_text(json.dumps(setup))
    env = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*TORCHRUN, osp.join(TESTS, "test_distributed.py"), str(setup_file),
                             str(tmp_path / "ranks.pt")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    one = {t: steps_and_test(setup, str(tmp_path / "one"), t) for t in TINY_OPTS}  # meanwhile, one process
    output = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, output[-5000:]
    ranks = torch.load(tmp_path / "ranks.pt", weights_only=True)
    diffs = {}
    for trainer in TINY_OPTS:
        r0, r1, ref = ranks[0][trainer], ranks[1][trainer], one[trainer]
        trains = "weights" in ref
        assert r0["learner_wrapped"] == ("DistributedDataParallel" if trains else "NoneType"), trainer
        if trains:
            assert ref["moved"] > 100 * STEP_TOL, f"{trainer}: two steps barely moved the learner"
            for k in ref["weights"]:
                assert torch.equal(r0["weights"][k], r1["weights"][k]), f"{trainer}: ranks differ in {k}"
            diffs[trainer] = max((r0["weights"][k] - w).abs().max().item() for k, w in ref["weights"].items())
        assert r0["accuracy"] == r1["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-9), trainer
        assert r0["total"] + r1["total"] == ref["total"] == 6  # every test image once, no padding
    print("max |2 processes - 1 process| after 2 steps:", {t: f"{d:.2g}" for t, d in diffs.items()})
    assert max(diffs.values()) <= STEP_TOL, diffs


def _cli_args(setup: dict, out: str, *extra: str, epochs: int = 2) -> list[str]:
    return ["--root", setup["root"], "--trainer", "DeAR", "--config-file", "configs/dear.yaml",
            "--dataset-config-file", "configs/datasets/dtd.yaml", "--output-dir", out, "--seed", "1",
            "MODEL.BACKBONE.PATH", setup["clip"], "TRAINER.DEAR.ROLES_FILE", setup["roles"], "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", str(epochs),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.PRINT_FREQ", "100",
            "USE_CUDA", "False", *extra]


def _learner(run_dir: str, epoch: int) -> dict:
    state = torch.load(osp.join(run_dir, "prompt_learner", f"model.pth.tar-{epoch}"), weights_only=True)
    return {k: v for k, v in state["state_dict"].items() if v.is_floating_point()}


def test_torchrun_train_py_equals_python_train_py(setup, tmp_path):
    """``torchrun --nproc_per_node 2 train.py`` and ``python train.py`` with the same global batch (4 = 2 x 2) and
    no random augmentation: same batches (rank 0 draws the permutation as one process does), learner weights
    within 1e-6 after 2 epochs (6 steps), the same test accuracy over the same 6 images; rank 0 alone wrote
    the run folder."""
    import train

    fixed = ("INPUT.TRANSFORMS", "('normalize',)")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert train.main(_cli_args(setup, one, *fixed)) == 0
    proc = launch([*TORCHRUN, "train.py", *_cli_args(setup, two, *fixed)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = _learner(one, 2), _learner(two, 2)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= STEP_TOL, f"2 processes differ from 1 by {worst:.3g}"
    assert runs.run_result(two) == runs.run_result(one) is not None
    log = open(osp.join(two, "log.txt")).read()
    assert log.count("torchrun: 2 processes (gloo), rank 0 writes; global batch 4 = 2 x 2") == 1
    assert log.count("* total: 6") == 1 and log.count("Engine: built-in dasslite") == 1  # rank 1 wrote nothing
    assert "batch [3/3]" in log  # 12 base images / global batch 4: as many steps as one process
    assert sorted(os.listdir(two)) == ["config.yaml", "log.txt", "prompt_learner", "tensorboard"]
    assert len(os.listdir(osp.join(two, "tensorboard"))) == 1


def test_torchrun_resume_is_exact(setup, tmp_path):
    """Two processes with random augmentation, killed in the middle of epoch 2 and rerun: bit for bit the weights
    and accuracy of an uninterrupted two-process run (each rank restores its own RNG states)."""
    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    extra = ("TRAIN.LAST_CHECKPOINT_ITERS", "1", "TRAIN.CHECKPOINT_FREQ", "1")
    assert launch([*TORCHRUN, RUN_TRAIN, *_cli_args(setup, ref, *extra, epochs=3)]).returncode == 0
    killed = launch([*TORCHRUN, RUN_TRAIN, *_cli_args(setup, run, *extra, epochs=3)], env={"KILL_AT": "1:1"})
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    resumed = launch([*TORCHRUN, RUN_TRAIN, *_cli_args(setup, run, *extra, epochs=3)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resuming epoch 2 at batch 2/3" in open(osp.join(run, "log.txt")).read()
    a, b = _learner(ref, 3), _learner(run, 3)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {(a[k] - b[k]).abs().max().item():.3g}"
    assert runs.run_result(run) == runs.run_result(ref) is not None
    last = torch.load(osp.join(run, "prompt_learner", "model-last.pth.tar"), weights_only=True)["engine"]
    assert last["world_size"] == 2 and len(last["ranks"]) == 2
    assert not torch.equal(last["ranks"][0]["rng"]["torch"], last["ranks"][1]["rng"]["torch"])  # own streams


def test_a_plain_dassl_trainer_runs_under_torchrun(tmp_path):
    """The engine's default ``distribute_models`` wraps ``self.model`` of a trainer that is not a PromptTrainer
    (the engine tests' linear probe, with dropout and random augmentation): it trains and tests on 2 processes."""
    from engine_helpers import make_parity_data, tiny_args

    data, out = make_parity_data(str(tmp_path / "data")), str(tmp_path / "run")
    proc = launch([*TORCHRUN, RUN_TRAIN, *tiny_args(osp.dirname(data), out, epochs=2)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = open(osp.join(out, "log.txt")).read()
    assert "global batch 4 = 2 x 2" in log and "Deploy the model with the best val performance" in log
    assert runs.run_result(out) is not None


def test_batch_not_divisible_by_the_processes_is_refused_before_anything_is_written(setup, tmp_path):
    out = tmp_path / "run"
    proc = launch([*TORCHRUN, "train.py", *_cli_args(setup, str(out), "DATALOADER.TRAIN_X.BATCH_SIZE", "5")])
    assert proc.returncode != 0
    assert proc.stderr.count("error: DATALOADER.TRAIN_X.BATCH_SIZE=5 is the global batch and cannot be split "
                             "evenly over 2 processes: set it to a multiple of 2 (e.g. 4 or 6)") == 1
    assert not out.exists()


# ---- the pieces, in one process -------------------------------------------------------------------------------

def test_global_batch_shards_rebuild_one_process_batches():
    from dasslite.data.samplers import shard_global_batches

    order = list(range(100, 111))  # 11 samples, global batch 4: 2 full batches, the rest dropped as Dassl does
    shards = [shard_global_batches(order, 4, 2, r) for r in range(2)]
    assert shards == [[100, 101, 104, 105], [102, 103, 106, 107]]
    for j in range(2):  # local batch j of every rank = one process's batch j
        assert sorted(shards[0][2 * j:2 * j + 2] + shards[1][2 * j:2 * j + 2]) == order[4 * j:4 * j + 4]
    assert [shard_global_batches(order[:6], 8, 2, r) for r in range(2)] == [[100, 101, 102], [103, 104, 105]]
    assert shard_global_batches(order, 4, 1, 0) == order[:8]


def test_small_training_set_that_cannot_split_is_refused():
    from dasslite.data.samplers import GlobalBatchShard, RandomSampler

    with pytest.raises(ValueError, match=r"5 images, fewer than the global batch DATALOADER.TRAIN_X.BATCH_SIZE=8.*"
                                         r"single process"):
        list(GlobalBatchShard(RandomSampler(range(5)), 8, 2, 0))  # refused when training starts
    shard = GlobalBatchShard(RandomSampler(range(6)), 8, 2, 1)
    assert len(shard) == 3 and len(list(shard)) == 3


def test_eval_shards_cover_every_image_once():
    from dasslite.data.samplers import EvalShard

    for n, world in ((7, 2), (7, 3), (2, 3), (12, 4)):
        seen = [i for r in range(world) for i in EvalShard(range(n), world, r)]
        assert sorted(seen) == list(range(n))
        assert sum(len(EvalShard(range(n), world, r)) for r in range(world)) == n


def test_rank_seeds_are_derived_from_the_seed():
    from dasslite.distributed import rank_seed

    assert rank_seed(1, 0) == 1
    assert rank_seed(1, 1) == rank_seed(1, 1) != rank_seed(2, 1)
    assert len({rank_seed(s, r) for s in range(1, 4) for r in range(4)}) == 12
    assert rank_seed(1, 1) == 1189033389  # documented: SeedSequence([seed, rank]).generate_state(1)[0]


def test_one_process_never_starts_a_group(monkeypatch):
    from dasslite import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is None and not distributed.is_distributed()
    assert distributed.broadcast(3) == 3 and distributed.all_gather("x") == ["x"]
    assert distributed.mean_over_ranks({"loss": 1.5}) == {"loss": 1.5}
    distributed.check_global_batch(5, 1)
