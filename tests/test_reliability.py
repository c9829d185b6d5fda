"""Reliability and safety: no code runs from a file we read, a crash never loses or corrupts a run, resume is
exact, one process per run folder, scripts agree on what is finished, bad input gets one clear message."""
from __future__ import annotations

import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, make_cfg
from engine_helpers import make_parity_data, tiny_args

import datasets  # noqa: F401
import runs
from tools.fake_data import make_dataset, make_image_folder, make_imagenet

RUN_TRAIN = osp.join(ROOT, "tests", "run_train.py")


class Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted checkpoint or cache would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run_train(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([sys.executable, RUN_TRAIN, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def learned(run_dir: str, epoch: int) -> dict:
    return torch.load(osp.join(run_dir, "probe", f"model.pth.tar-{epoch}"), weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {(a[k] - b[k]).abs().max().item():.3g}"


# ---- nothing executes from a file the project reads --------------------------------------------------------

def test_checkpoint_with_code_is_refused_on_load_and_resume(tmp_path):
    from dassl.utils import load_checkpoint

    from dasslite.utils.torchtools import CheckpointError, find_resume_checkpoint

    marker = tmp_path / "pwned"
    ckpt_dir = tmp_path / "run" / "probe"
    ckpt_dir.mkdir(parents=True)
    torch.save({"state_dict": {}, "epoch": 9, "x": Payload(str(marker))}, ckpt_dir / "model.pth.tar-9")
    with pytest.raises(CheckpointError, match=r"model\.pth\.tar-9: refused to load") as e:
        load_checkpoint(str(ckpt_dir / "model.pth.tar-9"))
    assert "weights_only=False" not in str(e.value) and "system" in str(e.value)
    with pytest.raises(CheckpointError, match="refused"):
        find_resume_checkpoint(str(ckpt_dir))
    assert not marker.exists()


def test_fewshot_cache_with_code_is_refused(tmp_path):
    from dasslite.data.datasets.cache import CacheError

    ddir = make_dataset(str(tmp_path), "DescribableTextures", n_classes=2)
    cache = osp.join(ddir, "split_fewshot", "shot_1-seed_1.pkl")
    os.makedirs(osp.dirname(cache))
    marker = tmp_path / "pwned"
    with open(cache, "wb") as f:
        import pickle

        pickle.dump({"train": [Payload(str(marker))], "val": []}, f)
    with pytest.raises(CacheError, match=r"shot_1-seed_1\.pkl: refused to load.*Nothing from it was run"):
        build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 1})
    assert not marker.exists()


def test_imagenet_listing_cache_with_code_is_refused(tmp_path):
    import pickle

    from dasslite.data.datasets.cache import CacheError

    ddir = make_imagenet(str(tmp_path), n_classes=2)
    marker = tmp_path / "pwned"
    with open(osp.join(ddir, "preprocessed.pkl"), "wb") as f:
        pickle.dump({"train": Payload(str(marker)), "test": []}, f)
    with pytest.raises(CacheError, match=r"preprocessed\.pkl: refused"):
        build(tmp_path, "ImageNet")
    assert not marker.exists()


def test_discovery_stage_cache_with_code_is_refused(tmp_path):
    from head_roles.discover import DiscoveryError, load_stage_cache, save_stage_cache

    marker = tmp_path / "pwned"
    torch.save({"heads": Payload(str(marker))}, tmp_path / "heads_x.pt")
    with pytest.raises(DiscoveryError, match=r"heads_x\.pt: it holds Python objects.*delete it") as e:
        load_stage_cache(str(tmp_path / "heads_x.pt"))
    assert "weights_only=False" not in str(e.value)
    assert not marker.exists()
    import numpy as np

    save_stage_cache(np.arange(6.0).reshape(2, 3), str(tmp_path / "sbert_y.pt"))  # NumPy round trip
    assert np.array_equal(load_stage_cache(str(tmp_path / "sbert_y.pt")), np.arange(6.0).reshape(2, 3))


def test_python_config_files_are_refused(tmp_path):
    from clipkit.config import ConfigError, merge_file

    marker = tmp_path / "pwned"
    py = tmp_path / "cfg.py"
    py.write_text(f"import os\nos.system('touch {marker}')\n")
    with pytest.raises(ConfigError, match="would run their code"):
        merge_file(make_cfg(), str(py))
    assert not marker.exists()


# ---- a crash never leaves a run stuck or corrupt -----------------------------------------------------------

def _save(fdir, epoch, value, name="", batch=0):
    from dasslite.utils.torchtools import save_checkpoint

    state = {"state_dict": {"w": torch.full((2,), float(value))}, "epoch": epoch}
    if batch:
        state["engine"] = {"next_batch": batch}
    return save_checkpoint(state, str(fdir), model_name=name)


def test_missing_empty_or_stale_pointer_and_truncated_files_fall_back(tmp_path):
    from dasslite.utils.torchtools import CheckpointError, find_resume_checkpoint, load_checkpoint

    fdir = tmp_path / "probe"
    _save(fdir, 1, 1)
    _save(fdir, 2, 2)
    pointer = fdir / "checkpoint"
    for content in (None, "", "model.pth.tar-1\n", "model.pth.tar-7\n", "../../etc/passwd\n"):
        if content is None:
            pointer.unlink(missing_ok=True)
        else:
            pointer.write_text(content)  # kill -9 mid-write left it empty; a crash before its update left it stale
        path, ckpt = find_resume_checkpoint(str(fdir))
        assert osp.basename(path) == "model.pth.tar-2" and ckpt["epoch"] == 2
    _save(fdir, 2, 3, name="model-last.pth.tar", batch=5)  # mid-epoch 3: the most advanced
    assert osp.basename(find_resume_checkpoint(str(fdir))[0]) == "model-last.pth.tar"
    raw = (fdir / "model-last.pth.tar").read_bytes()
    (fdir / "model-last.pth.tar").write_bytes(raw[: len(raw) // 2])  # a disk-full or foreign truncation
    path, ckpt = find_resume_checkpoint(str(fdir), log=lambda msg: None)
    assert osp.basename(path) == "model.pth.tar-2"
    with pytest.raises(CheckpointError, match=r"model-last\.pth\.tar is truncated or corrupt.*Delete it"):
        load_checkpoint(str(fdir / "model-last.pth.tar"))
    for f in fdir.iterdir():
        f.write_bytes(b"")
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        find_resume_checkpoint(str(fdir), log=lambda msg: None)


def test_interrupted_writes_leave_the_previous_file(tmp_path, monkeypatch):
    from dasslite.utils.torchtools import load_checkpoint

    fdir = tmp_path / "probe"
    _save(fdir, 1, 1, name="model-last.pth.tar")

    def dies_midway(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt  # the process is stopped inside torch.save

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        _save(fdir, 2, 2, name="model-last.pth.tar")
    monkeypatch.undo()
    assert load_checkpoint(str(fdir / "model-last.pth.tar"))["epoch"] == 1
    assert sorted(p.name for p in fdir.iterdir()) == ["checkpoint", "model-last.pth.tar"]
    # kill -9 inside a write leaves a temporary file of a dead process: the next resume removes it
    from dasslite.utils.atomic import remove_stale_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (fdir / f"model-last.pth.tar.tmp-{dead.pid}").write_bytes(b"PK half")
    (fdir / f"checkpoint.tmp-{os.getpid()}").write_bytes(b"")  # a live writer's (this process) is kept
    assert [osp.basename(p) for p in remove_stale_temporaries(str(fdir))] == [f"model-last.pth.tar.tmp-{dead.pid}"]


def test_truncated_cache_names_its_path(tmp_path):
    from dasslite.data.datasets.cache import CacheError

    ddir = make_dataset(str(tmp_path), "DescribableTextures", n_classes=2)
    build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 1})
    cache = osp.join(ddir, "split_fewshot", "shot_1-seed_1.pkl")
    with open(cache, "r+b") as f:
        f.truncate(40)
    with pytest.raises(CacheError, match=r"shot_1-seed_1\.pkl: the few-shot cache is truncated.*Delete it"):
        build(tmp_path, "DescribableTextures", **{"DATASET.NUM_SHOTS": 1})


def test_last_checkpoint_every_epoch_and_every_n_iterations(tmp_path, parity_data):
    out = str(tmp_path / "run")
    proc = run_train(*tiny_args(parity_data, out, "TRAIN.LAST_CHECKPOINT_ITERS", "3", epochs=2))
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    saves = [line for line in log.splitlines() if line.startswith("Saved the last checkpoint")]
    assert [s.split("(")[1].split(")")[0] for s in saves] == [
        "epoch 0 + 3 batches", "epoch 0 + 6 batches", "epoch 1", "epoch 1 + 3 batches", "epoch 1 + 6 batches",
        "epoch 2"]
    files = sorted(os.listdir(tmp_path / "run" / "probe"))
    assert files == ["checkpoint", "model-best.pth.tar", "model-last.pth.tar", "model.pth.tar-2"]
    assert (tmp_path / "run" / "probe" / "checkpoint").read_text() == "model-last.pth.tar\n"
    ckpt = torch.load(tmp_path / "run" / "probe" / "model.pth.tar-2", weights_only=True)
    assert ckpt["engine"]["next_batch"] == 0 and "rng" in ckpt["engine"]


def test_run_folder_alone_gives_config_and_checkpoints(tmp_path, parity_data):
    """What predict and evaluation need from a run folder, checked without loading anything heavy."""
    from dassl.config import get_cfg_default

    import trainers
    from dasslite.config import extend_engine_cfg

    out = str(tmp_path / "run")
    proc = run_train(*tiny_args(parity_data, out, "INPUT.SIZE", "(20, 20)", epochs=1))
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = runs.check_run(out, epoch=1, need_config=True)
    assert info.epochs == {"probe": [1]} and info.best == ["probe"] and info.finished
    defaults = trainers.extend_cfg(extend_engine_cfg(get_cfg_default()))
    cfg = runs.load_run_config(out, defaults)
    assert tuple(cfg.INPUT.SIZE) == (20, 20) and cfg.TRAINER.NAME == "TinyProbe" and cfg.DATASET.NUM_SHOTS == 8
    with pytest.raises(runs.RunFolderError, match=r"no checkpoint for epoch 10 \(saved epochs: 1\)"):
        runs.check_run(out, epoch=10)
    os.remove(osp.join(out, "config.yaml"))
    with pytest.raises(runs.RunFolderError, match="no config.yaml .* pass the training options again"):
        runs.load_run_config(out, defaults)


# ---- resume is exact ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parity_data(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("parity")
    make_parity_data(str(root / "data"))
    return str(root / "data")


EXACT = ("OPTIM.LR", "0.01", "TRAIN.CHECKPOINT_FREQ", "1", "TRAIN.LAST_CHECKPOINT_ITERS", "2")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, parity_data) -> dict[int, str]:
    """4-epoch reference runs without and with 2 workers."""
    out = {}
    for workers in (0, 2):
        run = str(tmp_path_factory.mktemp(f"reference{workers}") / "run")
        proc = run_train(*tiny_args(parity_data, run, *EXACT, epochs=4, workers=workers))
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[workers] = run
    return out


@pytest.mark.parametrize("workers,kill_at", [(0, "2:5"), (2, "2:6")])
def test_kill_mid_epoch_then_rerun_gives_the_uninterrupted_weights(tmp_path, parity_data, uninterrupted, workers,
                                                                   kill_at):
    """SIGKILL right after step 6 (or 7) of epoch 3 of 4; the same command resumes after the last saved step
    (4 or 6) and ends bit for bit where the uninterrupted run ends, with the same best_val epoch and accuracy."""
    run = str(tmp_path / "run")
    args = tiny_args(parity_data, run, *EXACT, epochs=4, workers=workers)
    killed = run_train(*args, env={"KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL
    assert not runs.is_finished(run) and not osp.exists(osp.join(run, "probe", "model.pth.tar-4"))
    resumed = run_train(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = open(osp.join(run, "log.txt")).read()
    batch = int(kill_at.split(":")[1]) // 2 * 2 + 1  # the step after the last saved one, 1-based
    assert f"Resuming epoch 3 at batch {batch}/8" in log
    assert log.count("Finish training") == 1 and sorted(os.listdir(run)).count("log.txt") == 1
    reference = uninterrupted[workers]
    assert_same_weights(learned(run, 4), learned(reference, 4))
    best = [torch.load(osp.join(r, "probe", "model-best.pth.tar"), weights_only=True)["epoch"]
            for r in (run, reference)]
    assert best[0] == best[1]
    assert runs.run_result(run) == runs.run_result(reference) is not None


def test_kill_at_random_instants_never_corrupts_the_run(tmp_path, parity_data, uninterrupted):
    """Three kills at random instants (inside checkpoint writes too: a save after every step), then the same
    command to the end: the weights of the uninterrupted run."""
    run = str(tmp_path / "run")
    args = tiny_args(parity_data, run, "OPTIM.LR", "0.01", "TRAIN.CHECKPOINT_FREQ", "1",
                     "TRAIN.LAST_CHECKPOINT_ITERS", "1", epochs=4)
    env = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore")
    rng = random.Random(0)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, RUN_TRAIN, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        log = osp.join(run, "log.txt")
        deadline = time.time() + 300
        wanted = 3 * (attempt + 1)
        while time.time() < deadline and proc.poll() is None:
            steps = open(log).read().count("Saved the last checkpoint") if osp.exists(log) else 0
            if steps >= wanted:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = run_train(*args)
    assert final.returncode == 0, final.stderr[-2000:]
    assert_same_weights(learned(run, 4), learned(uninterrupted[0], 4))


def test_dear_resumes_bit_for_bit(tmp_path, tiny_clip_file):
    """End to end with the DeAR trainer: killed in the middle of epoch 2 of 3, rerun, same learner weights."""
    from tools.fake_data import write_tiny_roles

    make_dataset(str(tmp_path / "data"), "DescribableTextures", n_classes=6, per_split=(8, 2, 2))
    roles = write_tiny_roles(str(tmp_path / "roles.json"))

    def args(out):
        return ["--root", str(tmp_path / "data"), "--trainer", "DeAR", "--config-file", "configs/dear.yaml",
                "--dataset-config-file", "configs/datasets/dtd.yaml", "--output-dir", out, "--seed", "1",
                "MODEL.BACKBONE.PATH", tiny_clip_file, "TRAINER.DEAR.ROLES_FILE", roles, "INPUT.SIZE", "(32, 32)",
                "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "3",
                "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.LAST_CHECKPOINT_ITERS", "1",
                "TRAIN.CHECKPOINT_FREQ", "1", "TRAIN.PRINT_FREQ", "100"]

    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    assert run_train(*args(ref)).returncode == 0
    assert run_train(*args(run), env={"KILL_AT": "1:1"}).returncode == -signal.SIGKILL
    resumed = run_train(*args(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming epoch 2 at batch 2/3" in open(osp.join(run, "log.txt")).read()
    a, b = (torch.load(osp.join(d, "prompt_learner", "model.pth.tar-3"), weights_only=True)["state_dict"]
            for d in (ref, run))
    assert_same_weights(a, b)
    assert runs.run_result(run) == runs.run_result(ref) is not None


def test_resume_propagates_the_models_refusal(tmp_path):
    """A learner that refuses a checkpoint in ``load_state_dict`` (other roles, mask, ...) stops the resume with
    its own message."""
    from dasslite.engine import TrainerBase

    class Picky(torch.nn.Linear):
        def load_state_dict(self, state, strict=True, assign=False):
            raise ValueError("trained with other head roles (roles file a.json, MASK=none)")

    _save(tmp_path / "model", 2, 1)
    trainer = TrainerBase()
    trainer.register_model("model", Picky(2, 2))
    with pytest.raises(ValueError, match=r"^trained with other head roles \(roles file a\.json, MASK=none\)$"):
        trainer.resume_model_if_exist(str(tmp_path))


def test_resume_from_a_folder_of_another_trainer_is_refused(tmp_path, parity_data):
    from dassl.engine import build_trainer

    from dasslite.utils.torchtools import CheckpointError

    _save(tmp_path / "other" / "prompt_learner", 1, 1)
    cfg = make_cfg(**{"DATASET.ROOT": parity_data, "DATASET.NAME": "DescribableTextures", "TRAINER.NAME": "TinyProbe",
                      "OUTPUT_DIR": str(tmp_path / "out"), "RESUME": str(tmp_path / "other"), "INPUT.SIZE": (16, 16),
                      "DATALOADER.NUM_WORKERS": 0, "USE_CUDA": False})
    cfg.VERBOSE = False
    trainer = build_trainer(cfg)
    with pytest.raises(CheckpointError, match=r"other holds no checkpoint of this trainer's models \(probe\)"):
        trainer.before_train()


def test_grad_scalers_are_saved_and_restored_by_default():
    """Trainers own their grad scaler (e.g. ``self.step.scaler``); the default hook finds and restores it."""
    from types import SimpleNamespace

    from dasslite.engine import TrainerBase

    trainer = TrainerBase()
    trainer.step = SimpleNamespace(scaler=torch.amp.GradScaler("cpu", init_scale=128.0))
    trainer.step.scaler._lazy_init_scale_growth_tracker(torch.device("cpu"))
    state = trainer.extra_checkpoint_state()
    assert state["grad_scalers"]["step.scaler"]["scale"] == 128.0
    trainer.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    trainer.load_extra_checkpoint_state(state)
    assert trainer.step.scaler.get_scale() == 128.0


def test_restored_rng_states_round_trip():
    import numpy as np

    from dasslite.utils.rng import capture_rng_state, restore_rng_state

    state = capture_rng_state()
    torch.save(state, buf := __import__("io").BytesIO())
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # plain data
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


# ---- one process per run folder ----------------------------------------------------------------------------

def test_second_run_into_the_same_folder_is_refused(tmp_path, parity_data):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", f"import runs, time; runs.RunLock({str(run)!r}).acquire(); "
                               "print('locked', flush=True); time.sleep(60)"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run_train(*tiny_args(parity_data, str(run), epochs=1))
        assert proc.returncode == 1
        assert f"is in use by process {holder.pid}" in proc.stderr and "another --output-dir" in proc.stderr
        assert sorted(os.listdir(run)) == [".lock"]  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    with runs.RunLock(str(run)):  # the holder died (kill -9): its lock does not block
        pass


def test_stale_lock_file_does_not_block(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid} somehost 2026-01-01 00:00:00\n")
    with runs.RunLock(str(tmp_path)) as lock:
        assert open(lock.path).read().split()[0] == str(os.getpid())
        with pytest.raises(runs.RunLocked, match=f"process {os.getpid()}"):
            runs.RunLock(str(tmp_path)).acquire()
    assert not (tmp_path / ".lock").exists()


# ---- protocol scripts and parse_test_res agree on what is finished -----------------------------------------

KILLED = "epoch [1/2] batch [1/4] loss 1.0\nSaved the last checkpoint (epoch 0 + 2 batches)\n"
RESUMED = ("==> appending\nResuming epoch 1 at batch 3/4\nepoch [2/2] batch [4/4] loss 0.1\nEvaluate on the *val* set\n"
           "* accuracy: 50.0%\nFinish training\nDeploy the last-epoch model\nEvaluate on the *test* set\n"
           "=> result\n* accuracy: 81.5%\n")


def test_finished_rule(tmp_path):
    assert runs.log_result(KILLED) is None
    assert runs.log_result(KILLED + "Evaluate on the *val* set\n* accuracy: 50.0%\n") is None  # val never counts
    assert runs.log_result(KILLED + RESUMED) == 81.5  # killed, resumed and finished: one log.txt
    assert runs.log_result("Evaluate on the *test* set\n=> result\n* accuracy: 40.0%\n") == 40.0  # eval-only


def test_resumed_and_finished_run_is_skipped_and_parsed(tmp_path):
    out = tmp_path / "output"
    seed = out / "base2new/train_base/dtd/shots_16/DeAR/dear/seed1"
    seed.mkdir(parents=True)
    (seed / "log.txt").write_text(KILLED + RESUMED)
    (seed / "log.txt-2026-01-02-03-04-05").write_text("Evaluate on the *test* set\n* accuracy: 10.0%\n")
    env = dict(os.environ, OUTPUT=str(out), PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/base2new_train.sh", "dtd", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "(accuracy 81.50%). Skip." in proc.stdout, proc.stderr
    parsed = subprocess.run([sys.executable, "parse_test_res.py", str(seed.parent)], cwd=ROOT, capture_output=True,
                            text=True)
    assert "seed1: accuracy 81.50%" in parsed.stdout  # log.txt counts, as in CoOp's parse_test_res.py

    (seed / "log.txt").write_text(KILLED)  # unfinished log.txt, a result only in a rerun's log (old versions)
    (seed / "log.txt-2026-01-02-03-04-05").write_text("Evaluate on the *test* set\n* accuracy: 77.0%\n")
    assert not runs.is_finished(str(seed))
    parsed = subprocess.run([sys.executable, "parse_test_res.py", str(seed.parent)], cwd=ROOT, capture_output=True,
                            text=True)
    assert parsed.returncode == 1 and "do not count" in parsed.stderr


def test_run_failing_before_training_leaves_nothing_and_test_script_says_so(tmp_path):
    out = tmp_path / "output"
    env = dict(os.environ, DATA=str(tmp_path / "nodata"), OUTPUT=str(out), PYTHON=sys.executable, LOADEP="2",
               CLIP_OFFLINE="1")
    proc = subprocess.run(["bash", "scripts/base2new_train.sh", "dtd", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: DescribableTextures: missing data set folder")
    assert "Traceback" not in proc.stderr
    model_dir = out / "base2new/train_base/dtd/shots_16/DeAR/dear/seed1"
    assert not out.exists()  # nor the folders above the run folder that it created
    proc = subprocess.run(["bash", "scripts/base2new_test.sh", "dtd", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "run base2new_train.sh first" in proc.stderr
    model_dir.mkdir(parents=True)  # a folder without checkpoints is no trained model either
    (model_dir / "log.txt").write_text("epoch [1/2] batch [1/4]\n")
    proc = subprocess.run(["bash", "scripts/base2new_test.sh", "dtd", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "holds no checkpoint" in proc.stderr
    assert "run base2new_train.sh first" in proc.stderr


def test_scripts_list_available_data_sets_and_configs(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUTPUT=str(tmp_path))
    proc = subprocess.run(["bash", "scripts/base2new_train.sh", "dtdd", "1"], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "unknown data set 'dtdd'" in proc.stderr and "dtd, " in proc.stderr
    proc = subprocess.run(["bash", "scripts/fewshot.sh", "dtd", "1", "CoOpp"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no configs/coopp.yaml" in proc.stderr
    assert "dear" in proc.stderr and "DeAR, " in proc.stderr  # configs and trainers


# ---- bad input gets one clear message before work is spent --------------------------------------------------

def build(root, name, **kw):
    from dassl.data.datasets import build_dataset

    opts = {"DATASET.ROOT": str(root), "DATASET.NAME": name, "SEED": 1}
    opts.update(kw)
    cfg = make_cfg(**opts)
    cfg.VERBOSE = False
    return build_dataset(cfg)


def test_image_folder_empty_class_folder_is_named(tmp_path):
    from datasets.coop_split import DatasetNotFound

    ddir = make_image_folder(str(tmp_path), n_classes=4)
    for f in os.listdir(osp.join(ddir, "train", "class_d")):
        os.remove(osp.join(ddir, "train", "class_d", f))
    with pytest.raises(DatasetNotFound, match=r"class folder .*train/class_d holds no images"):
        build(tmp_path, "ImageFolder", **{"DATASET.FOLDER.DIR": "my_folder"})
    os.rmdir(osp.join(ddir, "train", "class_d"))  # no folder at all: tested but never trained
    with pytest.raises(DatasetNotFound, match=r"1 tested class has no training image \('class d'\)"):
        build(tmp_path, "ImageFolder", **{"DATASET.FOLDER.DIR": "my_folder"})


def test_every_image_of_every_split_is_checked_before_training(tmp_path):
    from datasets.coop_split import DatasetNotFound

    ddir = make_dataset(str(tmp_path), "OxfordPets", n_classes=4)
    os.remove(osp.join(ddir, "images", "class_d", "test_1.jpg"))  # the last test image of the last class
    with pytest.raises(DatasetNotFound, match=r"1 of 8 test images \(e\.g\. .*class_d/test_1\.jpg\)"):
        build(tmp_path, "OxfordPets")


def run_main(monkeypatch, tmp_path, capsys, *argv):
    import train

    monkeypatch.chdir(tmp_path)
    code = train.main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("opts,message", [
    (["OPTIM.LR", "-0.01"], "OPTIM.LR=-0.01 must be > 0"),
    (["DATALOADER.TRAIN_X.BATCH_SIZE", "0"], "DATALOADER.TRAIN_X.BATCH_SIZE=0 must be >= 1"),
    (["TEST.FINAL_MODEL", "best"], "TEST.FINAL_MODEL='best' is not one of ['last_step', 'best_val']"),
    (["OPTIM.LRR", "0.1"], "command line: unknown config key OPTIM.LRR; did you mean OPTIM.LR"),
    (["OPTIM.LR", "fast"], "OPTIM.LR must be a float (default 0.0003), got fast"),
    (["OPTIM.LR", "1"], "OPTIM.LR must be a float (default 0.0003), got 1 (write 1.0: yacs, under Dassl too, "
                        "does not turn an integer into a float)"),
])
def test_bad_values_fail_before_anything_is_written(tmp_path, monkeypatch, capsys, opts, message):
    code, err = run_main(monkeypatch, tmp_path, capsys, "--root", str(tmp_path), "--trainer", "ZeroshotCLIP",
                         "--dataset-config-file", os.path.join(ROOT, "configs/datasets/dtd.yaml"),
                         "--output-dir", str(tmp_path / "out"), *opts)
    assert code == 2 and message in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_malformed_yaml_names_file_and_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  NAME: sgd\n  LR: [0.1\n")
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "ZeroshotCLIP", "--config-file", str(bad))
    assert code == 2 and f"error: {bad}:4:1: malformed YAML in the trainer config" in err
    bad.write_text("OPTIM:\n  NAME: sgd\n  LEARNING_RATE: 0.1\n")
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "ZeroshotCLIP", "--config-file", str(bad))
    assert f"error: {bad}:3: unknown config key OPTIM.LEARNING_RATE" in err


def test_no_arguments_say_what_is_missing_and_write_nothing(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, tmp_path, capsys)
    assert code == 2
    assert "nothing to run: give a trainer: --trainer NAME (one of CoCoOp, CoOp, DeAR, " in err
    assert "ZeroshotCLIP" in err
    assert "--dataset-config-file configs/datasets/NAME.yaml (NAME one of" in err and "dtd" in err
    assert "--root DATA" in err and "python train.py --root DATA --trainer DeAR" in err
    assert os.listdir(tmp_path) == []


def test_unknown_trainer_data_set_and_resume_folder(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "CoOpp", "DATASET.NAME", "DescribableTextures")
    assert code == 2 and "unknown trainer 'CoOpp' (--trainer / TRAINER.NAME); available: CoCoOp, CoOp, DeAR, " in err
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "DeAR", "DATASET.NAME", "DTD")
    assert code == 2 and "unknown data set 'DTD' (DATASET.NAME); available: " in err and "DescribableTextures" in err
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "DeAR", "--resume", str(tmp_path / "gone"),
                         "DATASET.NAME", "DescribableTextures")
    assert code == 2 and f"--resume {tmp_path / 'gone'}: the folder does not exist" in err
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "DeAR", "--eval-only", "--model-dir",
                         str(tmp_path), "--load-epoch", "3", "DATASET.NAME", "DescribableTextures")
    assert code == 2 and "holds no checkpoint" in err
    code, err = run_main(monkeypatch, tmp_path, capsys, "--trainer", "DeAR", "DATASET.NAME", "DescribableTextures",
                         "--resume", str(tmp_path))
    assert code == 2 and "--resume is a flag among the KEY VALUE overrides: put every flag before them" in err
    assert os.listdir(tmp_path) == []


def test_help_keeps_its_line_breaks():
    import train

    text = train.build_parser().format_help()
    assert "configs/datasets/dtd.yaml \\\n        --config-file configs/dear.yaml" in text
