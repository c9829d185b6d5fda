"""tools/sweep.py on CPU: the local pool on the fake DTD with a tiny CLIP (jobs run, skip when finished, failures
listed with their logs, a rerun finishes what failed), submitit's LocalExecutor, and the SLURM submission checked
through the sbatch script submitit generates (nothing submitted)."""
from __future__ import annotations

import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from tools import sweep


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Fake DTD (6 classes), a tiny CLIP, and the scripts' environment for fast runs."""
    from clipkit.tiny import build_clip, save_clip
    from tools.fake_data import make_dataset

    tmp = tmp_path_factory.mktemp("sweep")
    make_dataset(str(tmp / "data"), "DescribableTextures", n_classes=6)
    clip = save_clip(build_clip(seed=0), str(tmp / "clip.pt"))
    env = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore", PYTHON=sys.executable,
               OPTS=f"MODEL.BACKBONE.PATH {clip} INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 1 "
                    "DATALOADER.TRAIN_X.BATCH_SIZE 2 DATALOADER.TEST.BATCH_SIZE 8 TRAINER.COOP.N_CTX 4")
    return {"tmp": tmp, "data": str(tmp / "data"), "env": env}


def run_sweep(world: dict, out: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tools.sweep", "--data", world["data"], "--output", out, "--shots", "2", *args]
    return subprocess.run(cmd, cwd=ROOT, env=world["env"], capture_output=True, text=True, timeout=900)


def test_local_pool_runs_every_job_then_skips_them_and_prints_the_table(world):
    out = str(world["tmp"] / "out")
    proc = run_sweep(world, out, "--protocol", "base2new", "--datasets", "dtd", "--seeds", "1",
                     "--trainers", "CoOp", "ZeroshotCLIP", "--gpus", "0,1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 jobs, 0 already finished (skipped); running 2 on 2 GPU(s) 0,1, one job per GPU" in proc.stdout
    assert "[sweep base2new] 2/2 done (0 skipped), 0 running, 0 failed, 0 waiting" in proc.stdout
    assert re.search(r"elapsed \d+:\d\d:\d\d, about \d+:\d\d:\d\d left", proc.stdout)  # the estimate
    logs = {name: open(osp.join(out, "sweep", "base2new", "logs", f"{name}_dtd_seed1.log")).read()
            for name in ("CoOp_coop", "ZeroshotCLIP_zsclip")}
    gpus = sorted(log.split("CUDA_VISIBLE_DEVICES=")[1][0] for log in logs.values())
    assert gpus == ["0", "1"]  # one job per GPU slot
    assert "| CoOp (coop) | dtd |" in proc.stdout and "| ZeroshotCLIP (zsclip) | dtd |" in proc.stdout
    for split in ("train_base", "test_new"):
        for method in ("CoOp/coop", "ZeroshotCLIP/zsclip"):
            assert osp.isfile(osp.join(out, "base2new", split, "dtd", "shots_2", method, "seed1", "log.txt"))

    again = run_sweep(world, out, "--protocol", "base2new", "--datasets", "dtd", "--seeds", "1",
                      "--trainers", "CoOp", "ZeroshotCLIP")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 jobs, 2 already finished (skipped); running 0" in again.stdout
    assert "start " not in again.stdout  # nothing was launched
    assert open(osp.join(out, "sweep", "base2new", "logs", "CoOp_coop_dtd_seed1.log")).read() == logs["CoOp_coop"]


def test_failures_are_listed_with_their_logs_and_a_rerun_finishes_them(world):
    """Runs after the test above, into its output: zero-shot CLIP on dtd is finished there."""
    from tools.fake_data import make_dataset

    out = str(world["tmp"] / "out")
    args = ("--protocol", "base2new", "--datasets", "dtd", "eurosat", "--seeds", "1", "--trainers", "ZeroshotCLIP")
    proc = run_sweep(world, out, *args)  # no EuroSAT under DATA
    assert proc.returncode == 1
    log = osp.join(out, "sweep", "base2new", "logs", "ZeroshotCLIP_zsclip_eurosat_seed1.log")
    assert f"1 job(s) failed (rerun the same command to resume them):\n  ZeroshotCLIP_zsclip_eurosat_seed1: {log}" \
        in proc.stdout
    assert "\n      error: " in proc.stdout and "eurosat" in proc.stdout.split("failed (rerun")[1]
    assert "1/2 done (1 skipped), 0 running, 1 failed, 0 waiting" in proc.stdout
    dry = run_sweep(world, out, *args, "--dry-run")
    assert "ZeroshotCLIP_zsclip_dtd_seed1: finished" in dry.stdout and "1 of 2 jobs to run" in dry.stdout

    make_dataset(world["data"], "EuroSAT", n_classes=6)  # the cause fixed: the rerun runs the failed job only
    again = run_sweep(world, out, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "2 jobs, 1 already finished (skipped); running 1 on this CPU, one job at a time" in again.stdout
    assert "| ZeroshotCLIP (zsclip) | eurosat |" in again.stdout
    assert "| ZeroshotCLIP (zsclip) | Average |" in again.stdout


def test_submitit_local_executor_runs_the_array(world):
    out = str(world["tmp"] / "out_submitit")
    proc = run_sweep(world, out, "--protocol", "fewshot", "--datasets", "dtd", "--seeds", "1", "2",
                     "--trainers", "ZeroshotCLIP", "--cluster", "local", "--report-every", "5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "submitted 2 jobs through submitit (local" in proc.stdout
    assert "[sweep fewshot] 2/2 done (0 skipped), 0 running, 0 failed, 0 waiting" in proc.stdout
    assert "| ZeroshotCLIP (zsclip) | dtd | " in proc.stdout and "| 2 |" in proc.stdout
    assert os.listdir(osp.join(out, "sweep", "fewshot", "submitit"))  # submitit's pickles and logs


def test_slurm_submission_is_submitits_sbatch_array(world, tmp_path):
    """No cluster here: the dry run prints the sbatch file submitit's SlurmExecutor would submit for the array."""
    proc = run_sweep(world, str(tmp_path / "out"), "--protocol", "base2new", "--datasets", "dtd", "eurosat",
                     "--seeds", "1", "2", "3", "--trainers", "DeAR", "MaPLe", "--slurm-partition", "gpu",
                     "--slurm-time", "1-12:00:00", "--slurm-mem", "32G", "--slurm-gpus", "2", "--slurm-cpus", "8",
                     "--slurm-parallel", "4", "--slurm-account", "lab", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "12 of 12 jobs to run" in proc.stdout
    script = proc.stdout.split("nothing submitted):\n", 1)[1]
    for line in ("#SBATCH --array=0-11%4", "#SBATCH --partition=gpu", "#SBATCH --time=2160", "#SBATCH --mem=32G",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8", "#SBATCH --account=lab",
                 f"cd {ROOT}", "-m submitit.core._submit"):
        assert line in script, line
    assert "DeAR_dear_dtd_seed1: new; scripts/base2new_train.sh dtd 1 DeAR dear && scripts/base2new_test.sh" \
        in proc.stdout


def test_jobs_of_every_protocol(tmp_path):
    out = str(tmp_path)
    xd = sweep.make_jobs("xd", ["DeAR", "ZeroshotCLIP"], ["dear", "zsclip"], ["dtd", "eurosat"], [1], out, "16")
    assert [j.name for j in xd] == ["DeAR_dear_imagenet_seed1", "ZeroshotCLIP_zsclip_imagenet_seed1"]
    assert [s.argv[1].split("/")[-1] for s in xd[0].steps] == ["xd_train.sh", "xd_test.sh", "xd_test.sh"]
    assert xd[0].steps[1].run_dirs == (osp.join(out, "xd", "test", "imagenet_to_dtd", "shots_16", "DeAR", "dear",
                                                "seed1"),)
    assert len(xd[1].steps) == 2  # zero-shot CLIP trains nothing on the source
    few = sweep.make_jobs("fewshot", ["CoOp"], ["coop"], ["dtd"], [1, 2], out, "4")
    assert few[1].steps[0].run_dirs == (osp.join(out, "fewshot", "dtd", "shots_4", "CoOp", "coop", "seed2"),)
    abl = sweep.make_jobs("ablation", ["DeAR"], ["dear"], ["dtd"], [1], out, "16")
    assert abl[0].steps[0].argv[-2:] == ("dtd", "1") and len(abl[0].steps[0].run_dirs) > 8


@pytest.mark.parametrize("text, minutes", [("240", 240), ("4:00:00", 240), ("1-12:00:00", 2160), ("90:30", 91),
                                           ("0:00:01", 1)])
def test_slurm_time(text, minutes):
    assert sweep.parse_minutes(text) == minutes


def test_unknown_names_fail_before_anything_runs(world, tmp_path):
    proc = run_sweep(world, str(tmp_path / "out"), "--protocol", "base2new", "--datasets", "dtdd", "--seeds", "1")
    assert proc.returncode == 2 and "error: unknown data set(s) ['dtdd'] (--datasets / --source)" in proc.stderr
    proc = run_sweep(world, str(tmp_path / "out"), "--protocol", "base2new", "--datasets", "dtd",
                     "--trainers", "DeAR", "MaPLe", "--configs", "dear")
    assert proc.returncode == 2 and "--configs gives 1 names for 2 trainers" in proc.stderr
    assert not (tmp_path / "out").exists()
