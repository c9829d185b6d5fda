"""Every (trainer, data set, seed) job of a protocol, through the protocol scripts, on a local pool or a SLURM
cluster; then the results table.

    python -m tools.sweep --protocol base2new --datasets dtd eurosat --seeds 1 2 3 --trainers DeAR MaPLe
    python -m tools.sweep ... --gpus 0,1,2,3          # local pool: one job per GPU at a time (CUDA_VISIBLE_DEVICES)
    python -m tools.sweep ... --slurm-partition gpu --slurm-time 4:00:00 --slurm-mem 32G --slurm-gpus 1
    python -m tools.sweep ... --dry-run                # the jobs and their state; with --slurm-*: the sbatch script

A job runs its protocol's scripts in order (``scripts/*.sh DATASET SEED TRAINER CONFIG``):

| protocol | one job | steps |
|---|---|---|
| ``base2new`` | trainer x data set x seed | ``base2new_train.sh``, ``base2new_test.sh`` |
| ``fewshot`` | trainer x data set x seed | ``fewshot.sh`` |
| ``xd`` | trainer x seed | ``xd_train.sh SOURCE`` (``--source``, default imagenet), ``xd_test.sh`` per data set |
| ``ablation`` | data set x seed (DeAR) | ``python -m tools.ablations DATASET SEED`` (all variants) |

The scripts' environment (``DATA``, ``OUTPUT``, ``SHOTS``, ``OPTS``, ``PYTHON``) is passed on; ``--data``,
``--output``, ``--shots`` and ``--opts`` set it too. A job whose runs have all finished (``runs.is_finished``, the
rule of the scripts and of ``parse_test_res.py``) is skipped without starting anything; any other job is run,
and since the scripts skip finished steps and ``train.py`` resumes an interrupted run from its last checkpoint,
rerunning the same sweep command resumes crashed jobs (``--retries N`` does it within one sweep). Each job logs
to ``OUTPUT/sweep/<protocol>/logs/<job>.log``; failures are listed with their log and its last line.

Where jobs run:

- **local pool** (default): with ``--gpus 0,1,2,3`` (or every GPU ``nvidia-smi`` lists) one job per GPU at a time,
  each with ``CUDA_VISIBLE_DEVICES`` set to its GPU; on a machine without GPUs, one job at a time.
- **SLURM** (any ``--slurm-*`` option): one job array through submitit (``--slurm-partition``, ``--slurm-time``
  minutes or ``[D-]HH:MM:SS``, ``--slurm-mem``, ``--slurm-gpus`` per job, ``--slurm-cpus``,
  ``--slurm-parallel`` array tasks at once, ``--slurm-account``, ``--slurm-qos``, ``--slurm-constraint``). The
  sweep waits and reports progress (``--no-wait``: submit and exit). ``--cluster local`` or ``debug`` runs the
  same submission through submitit's local or in-process executor (no cluster needed). The output and data
  folders must be on a file system the nodes share.

Progress lines show done (skipped) / running / failed / waiting and an estimate of the time left (mean wall time
of the jobs finished so far x jobs left / parallel slots). The end prints the table: ``parse_test_res.py
--table`` for base2new, mean +- std per data set for fewshot and xd, ``tools.ablations``' table for ablation.
"""
from __future__ import annotations

import argparse
import datetime
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import runs  # noqa: E402

PROTOCOLS = ("base2new", "fewshot", "xd", "ablation")
SCRIPT_VARIABLES = ("DATA", "OUTPUT", "SHOTS", "OPTS", "PYTHON", "PYTHONPATH")  # what the sweep sets for the scripts


# ---- jobs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One command of a job and the run folders it leaves finished."""

    argv: tuple[str, ...]
    run_dirs: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Job:
    """One (trainer, data set, seed) of a protocol: its steps, run in order, and its log file."""

    name: str
    protocol: str
    trainer: str
    config: str
    dataset: str
    seed: int
    steps: tuple[Step, ...]
    log: str

    def finished(self) -> bool:
        return all(runs.is_finished(d) for s in self.steps for d in s.run_dirs)

    def started(self) -> bool:
        return any(osp.isdir(d) for s in self.steps for d in s.run_dirs)


def default_config(trainer: str) -> str:
    """The config the scripts use when none is given (``scripts/common.sh``)."""
    return "zsclip" if trainer == "ZeroshotCLIP" else trainer.lower()


def _run_dir(output: str, *parts: str, shots: str, trainer: str, config: str, seed: int) -> str:
    return osp.join(output, *parts, f"shots_{shots}", trainer, config, f"seed{seed}")


def _script(name: str, dataset: str, seed: int, trainer: str, config: str) -> tuple[str, ...]:
    return ("bash", osp.join(ROOT, "scripts", name), dataset, str(seed), trainer, config)


def make_jobs(protocol: str, trainers: list[str], configs: list[str], datasets: list[str], seeds: list[int],
              output: str, shots: str, source: str = "imagenet") -> list[Job]:
    """Every job of ``protocol``, in the order they are run (seed-major, so the first results cover every method)."""
    logs = osp.join(output, "sweep", protocol, "logs")
    jobs: list[Job] = []
    for seed in seeds:
        if protocol == "ablation":
            from tools.ablations import VARIANTS, run_dir

            for ds in datasets:
                dirs = tuple(run_dir(osp.join(output, "ablations"), "role" if v == "decoupled" else v, "train_base",
                                     ds, shots, seed) for v in VARIANTS) + tuple(
                    run_dir(osp.join(output, "ablations"), v, "test_new", ds, shots, seed) for v in VARIANTS)
                argv = ("bash", osp.join(ROOT, "scripts", "ablations.sh"), ds, str(seed))
                name = f"DeAR_{ds}_seed{seed}"
                jobs.append(Job(name, protocol, "DeAR", "dear", ds, seed, (Step(argv, dirs),),
                                osp.join(logs, name + ".log")))
            continue
        for trainer, config in zip(trainers, configs):
            kw = {"shots": shots, "trainer": trainer, "config": config, "seed": seed}
            if protocol == "xd":
                steps = []
                if trainer != "ZeroshotCLIP":  # zero-shot CLIP has nothing to train on the source
                    steps.append(Step(_script("xd_train.sh", source, seed, trainer, config),
                                      (_run_dir(output, "xd", "train", source, **kw),)))
                for ds in datasets:
                    steps.append(Step(_script("xd_test.sh", ds, seed, trainer, config),
                                      (_run_dir(output, "xd", "test", f"{source}_to_{ds}", **kw),),
                                      env=(("SOURCE", source),)))
                name = f"{trainer}_{config}_{source}_seed{seed}"
                jobs.append(Job(name, protocol, trainer, config, source, seed, tuple(steps),
                                osp.join(logs, name + ".log")))
                continue
            for ds in datasets:
                if protocol == "base2new":
                    steps = (Step(_script("base2new_train.sh", ds, seed, trainer, config),
                                  (_run_dir(output, "base2new", "train_base", ds, **kw),)),
                             Step(_script("base2new_test.sh", ds, seed, trainer, config),
                                  (_run_dir(output, "base2new", "test_new", ds, **kw),)))
                else:
                    steps = (Step(_script("fewshot.sh", ds, seed, trainer, config),
                                  (_run_dir(output, "fewshot", ds, **kw),)),)
                name = f"{trainer}_{config}_{ds}_seed{seed}"
                jobs.append(Job(name, protocol, trainer, config, ds, seed, steps, osp.join(logs, name + ".log")))
    return jobs


class JobFailed(RuntimeError):
    """A job's script exited with an error; the message names the job, the exit code and the log."""


def run_job(job: Job, env: dict[str, str]) -> int:
    """Run ``job``'s unfinished steps in order, appending their output to ``job.log``; 0 or the failing exit code.

    Module-level and plain-data arguments: this is also what submitit pickles and runs on a SLURM node."""
    os.makedirs(osp.dirname(job.log), exist_ok=True)
    with open(job.log, "a", encoding="utf-8") as log:
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {job.name} on {os.uname().nodename} "
                  f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')})\n")
        log.flush()
        for step in job.steps:
            if all(runs.is_finished(d) for d in step.run_dirs):
                continue
            log.write(f"$ {shlex.join(step.argv)}\n")
            log.flush()
            rc = subprocess.run(step.argv, cwd=ROOT, env=dict(env, **dict(step.env)), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            if rc != 0:
                log.write(f"== exit code {rc}\n")
                return rc
    return 0


def cluster_job(job: Job, env: dict[str, str]) -> str:
    """:func:`run_job` for submitit: raises :class:`JobFailed` so the array task is marked failed."""
    # The task's own environment (SLURM exports the submitting shell's, plus the GPUs it gave this task in
    # CUDA_VISIBLE_DEVICES), with the sweep's settings for the scripts on top.
    env = dict(os.environ, **{k: v for k, v in env.items() if k in SCRIPT_VARIABLES})
    rc = run_job(job, env)
    if rc != 0:
        raise JobFailed(f"{job.name} failed (exit code {rc}); log: {job.log}")
    return job.name


# ---- progress -----------------------------------------------------------------------------------------------

@dataclass
class Progress:
    """Counts for the progress line and the estimate."""

    total: int
    skipped: int = 0
    done: int = 0
    running: int = 0
    failed: list[Job] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    slots: int = 1
    start: float = field(default_factory=time.time)

    def line(self, protocol: str) -> str:
        waiting = self.total - self.done - self.skipped - self.running - len(self.failed)
        elapsed = datetime.timedelta(seconds=int(time.time() - self.start))
        if self.durations:
            left = (waiting + self.running) * (sum(self.durations) / len(self.durations)) / max(self.slots, 1)
            eta = f"about {datetime.timedelta(seconds=int(left))} left"
        else:
            eta = "estimate after the first job"
        return (f"[sweep {protocol}] {self.done + self.skipped}/{self.total} done ({self.skipped} skipped), "
                f"{self.running} running, {len(self.failed)} failed, {waiting} waiting; elapsed {elapsed}, {eta}")


def _say(msg: str) -> None:
    print(msg, flush=True)


# ---- where jobs run -----------------------------------------------------------------------------------------

def local_slots(gpus: str | None) -> list[str | None]:
    """``--gpus 0,1`` -> ``["0", "1"]``; without it every GPU ``nvidia-smi -L`` lists, or one CPU slot (``None``)."""
    if gpus:
        return [g.strip() for g in gpus.split(",") if g.strip()]
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        if count:
            return [str(i) for i in range(count)]
    return [None]


def run_local(jobs: list[Job], env: dict[str, str], slots: list[str | None], progress: Progress, protocol: str,
              report_every: float = 60.0) -> None:
    """Run ``jobs`` on a pool: one job per slot at a time (a slot is a GPU id, or ``None`` for a CPU machine)."""
    lock = threading.Lock()
    queue = list(jobs)
    changed = threading.Event()

    def worker(slot: str | None) -> None:
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop(0)
                progress.running += 1
            job_env = dict(env) if slot is None else dict(env, CUDA_VISIBLE_DEVICES=slot)
            _say(f"start {job.name}{'' if slot is None else f' on GPU {slot}'} (log: {job.log})")
            t0 = time.time()
            rc = run_job(job, job_env)
            with lock:
                progress.running -= 1
                progress.durations.append(time.time() - t0)
                if rc == 0:
                    progress.done += 1
                else:
                    progress.failed.append(job)
                    _say(f"FAILED {job.name} (exit code {rc}); log: {job.log}")
            changed.set()

    threads = [threading.Thread(target=worker, args=(slot,), daemon=True) for slot in slots]
    for t in threads:
        t.start()
    last = time.time()
    while any(t.is_alive() for t in threads):
        if changed.wait(timeout=1.0) or time.time() - last >= report_every:
            changed.clear()
            last = time.time()
            with lock:
                _say(progress.line(protocol))
    for t in threads:
        t.join()


def parse_minutes(text: str) -> int:
    """SLURM time: minutes (``240``), ``HH:MM:SS``, ``MM:SS`` or ``D-HH:MM[:SS]`` -> whole minutes (rounded up)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"--slurm-time {text!r}: give minutes (240) or [D-]HH:MM:SS (4:00:00, 1-12:00:00)")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if b is None and days is None:
        return a  # minutes
    if c is not None:
        seconds = a * 3600 + b * 60 + c
    elif days is not None:
        seconds = a * 3600 + (b or 0) * 60
    else:
        seconds = a * 60 + b  # MM:SS
    return (days or 0) * 1440 + -(-seconds // 60)


def slurm_parameters(args: argparse.Namespace, n_jobs: int) -> dict:
    """submitit's ``SlurmExecutor`` parameters (SLURM's own names) for the sweep's options."""
    params: dict = {"job_name": f"sweep_{args.protocol}", "time": parse_minutes(args.slurm_time),
                    "gpus_per_node": args.slurm_gpus, "ntasks_per_node": 1,
                    "array_parallelism": args.slurm_parallel or n_jobs, "setup": [f"cd {shlex.quote(ROOT)}"]}
    for key, value in (("partition", args.slurm_partition), ("mem", args.slurm_mem), ("cpus_per_task", args.slurm_cpus),
                       ("account", args.slurm_account), ("qos", args.slurm_qos),
                       ("constraint", args.slurm_constraint)):
        if value:
            params[key] = value
    return params


def sbatch_script(args: argparse.Namespace, n_jobs: int, folder: str) -> str:
    """The sbatch file submitit would submit for an array of ``n_jobs`` (built by submitit itself, not submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(folder)])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_jobs, **slurm_parameters(args, n_jobs))


def make_executor(args: argparse.Namespace, folder: str, n_jobs: int):
    """A submitit executor: SLURM (array jobs), or its local / in-process executors for ``--cluster local|debug``."""
    import submitit

    if args.cluster == "slurm":
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**slurm_parameters(args, n_jobs))
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster=args.cluster)
    if args.cluster == "local":
        executor.update_parameters(timeout_min=parse_minutes(args.slurm_time), gpus_per_node=0)
    return executor


def run_submitit(jobs: list[Job], env: dict[str, str], args: argparse.Namespace, progress: Progress,
                 report_every: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> list:
    """Submit ``jobs`` as one array (one task per job) and, unless ``--no-wait``, wait with progress lines."""
    folder = osp.join(args.output, "sweep", args.protocol, "submitit")
    executor = make_executor(args, folder, len(jobs))
    submitted = executor.map_array(cluster_job, jobs, [env] * len(jobs))
    ids = sorted({str(j.job_id).split("_")[0] for j in submitted})
    _say(f"submitted {len(submitted)} jobs through submitit ({args.cluster}; job {', '.join(ids)}); "
         f"submitit's files: {folder}")
    if args.no_wait:
        return submitted
    progress.slots = min(len(jobs), args.slurm_parallel or len(jobs)) if args.cluster == "slurm" else 1
    pending = dict(zip(submitted, jobs))
    started: dict = {}
    last = 0.0
    while pending:
        changed = False
        for sjob, job in list(pending.items()):
            if sjob.done():
                del pending[sjob]
                progress.durations.append(time.time() - started.get(sjob, progress.start))
                if sjob.exception() is None:
                    progress.done += 1
                else:
                    progress.failed.append(job)
                    _say(f"FAILED {job.name}; log: {job.log}")
                changed = True
            elif sjob not in started and sjob.state == "RUNNING":
                started[sjob] = time.time()
        progress.running = sum(1 for sjob in pending if sjob in started)
        if changed or time.time() - last >= report_every:
            _say(progress.line(args.protocol))
            last = time.time()
        if pending:
            sleep(2.0)
    return submitted


# ---- results ------------------------------------------------------------------------------------------------

def results_table(protocol: str, jobs: list[Job], output: str, shots: str, source: str,
                  datasets: list[str]) -> str:
    """The protocol's table of what has finished (``parse_test_res.py``'s rules)."""
    import io
    from contextlib import redirect_stdout

    from parse_test_res import main as parse_main
    from parse_test_res import mean_std, seed_accuracies

    if protocol == "base2new":
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = parse_main([osp.join(output, "base2new"), "--table"])
        return buf.getvalue().rstrip() if rc == 0 else "no finished base-to-novel runs yet"
    if protocol == "ablation":
        from tools.ablations import VARIANTS, table

        seeds = sorted({j.seed for j in jobs})
        old = os.environ.get("SHOTS")
        os.environ["SHOTS"] = shots
        try:
            return "\n\n".join(table(osp.join(output, "ablations"), list(VARIANTS), ds, seeds)
                               for ds in sorted({j.dataset for j in jobs}))
        finally:
            if old is None:
                os.environ.pop("SHOTS", None)
            else:
                os.environ["SHOTS"] = old
    lines = ["| Method | Dataset | Accuracy | Seeds |", "|---|---|---|---|"]
    for trainer, config in sorted({(j.trainer, j.config) for j in jobs}):
        for ds in datasets:
            parts = ("xd", "test", f"{source}_to_{ds}") if protocol == "xd" else ("fewshot", ds)
            accs = list(seed_accuracies(osp.join(output, *parts, f"shots_{shots}", trainer, config)).values())
            if accs:
                mean, std = mean_std(accs)
                lines.append(f"| {trainer} ({config}) | {ds} | {mean:.2f} +- {std:.2f} | {len(accs)} |")
            else:
                lines.append(f"| {trainer} ({config}) | {ds} | - | 0 |")
    return "\n".join(lines)


# ---- command line -------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--datasets", nargs="+", required=True, help="names of configs/datasets/*.yaml (xd: the targets)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--trainers", nargs="+", default=["DeAR"])
    p.add_argument("--configs", nargs="+", default=None,
                   help="one config name (configs/NAME.yaml) per trainer; default: each trainer's own")
    p.add_argument("--source", default="imagenet", help="xd: the data set trained on (default imagenet)")
    p.add_argument("--data", default=None, help="data root (default: $DATA or ./data)")
    p.add_argument("--output", default=None, help="output root (default: $OUTPUT or ./output)")
    p.add_argument("--shots", default=None, help="shots per class (default: $SHOTS or 16)")
    p.add_argument("--opts", default=None, help="extra KEY VALUE overrides for train.py (default: $OPTS)")
    p.add_argument("--gpus", default=None, help="local pool: comma-separated GPU ids, one job per GPU at a time")
    p.add_argument("--retries", type=int, default=0, help="rerun failed jobs this many times (they resume)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their state; run or submit nothing")
    p.add_argument("--table-only", action="store_true", help="print the results table of what has finished")
    p.add_argument("--report-every", type=float, default=60.0, help="seconds between progress lines (default 60)")
    s = p.add_argument_group("SLURM (through submitit; any of these selects it)")
    s.add_argument("--slurm-partition", default=None)
    s.add_argument("--slurm-time", default="240", help="per job: minutes or [D-]HH:MM:SS (default 240)")
    s.add_argument("--slurm-mem", default=None, help="per job, e.g. 32G")
    s.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job (default 1)")
    s.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per job")
    s.add_argument("--slurm-parallel", type=int, default=None, help="array tasks running at once (default: all)")
    s.add_argument("--slurm-account", default=None)
    s.add_argument("--slurm-qos", default=None)
    s.add_argument("--slurm-constraint", default=None)
    s.add_argument("--cluster", choices=("slurm", "local", "debug"), default=None,
                   help="submitit executor (default: slurm when a --slurm-* option is given); local and debug run "
                        "the same submission on this machine")
    s.add_argument("--no-wait", action="store_true", help="submit and exit (rerun the sweep to see what finished)")
    return p


def check_names(args: argparse.Namespace) -> None:
    """Data sets and configs must exist (the scripts would say so job by job, after a wait)."""
    datasets = args.datasets + ([args.source] if args.protocol == "xd" else [])
    available = sorted(f[:-5] for f in os.listdir(osp.join(ROOT, "configs", "datasets")) if f.endswith(".yaml"))
    unknown = [d for d in datasets if d not in available]
    if unknown:
        raise ValueError(f"unknown data set(s) {unknown} (--datasets / --source): no configs/datasets/NAME.yaml; "
                         f"available: {', '.join(available)}")
    if args.configs is not None and len(args.configs) != len(args.trainers):
        raise ValueError(f"--configs gives {len(args.configs)} names for {len(args.trainers)} trainers: give one "
                         "per trainer, in the same order, or leave it out")
    for trainer, config in zip(args.trainers, args.configs or [default_config(t) for t in args.trainers]):
        if not osp.isfile(osp.join(ROOT, "configs", f"{config}.yaml")):
            raise ValueError(f"no configs/{config}.yaml for trainer {trainer} (--configs)")
    if args.protocol == "ablation" and args.trainers != ["DeAR"]:
        raise ValueError("--protocol ablation runs DeAR's ablations only: leave --trainers out (or give DeAR)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.output = osp.abspath(args.output or os.environ.get("OUTPUT", osp.join(ROOT, "output")))
    data = osp.abspath(args.data or os.environ.get("DATA", osp.join(ROOT, "data")))
    shots = str(args.shots or os.environ.get("SHOTS", "16"))
    slurm = args.cluster is not None or any(getattr(args, k) is not None for k in (
        "slurm_partition", "slurm_mem", "slurm_cpus", "slurm_parallel", "slurm_account", "slurm_qos",
        "slurm_constraint"))
    if slurm and args.cluster is None:
        args.cluster = "slurm"
    try:
        check_names(args)
        if slurm:
            parse_minutes(args.slurm_time)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    configs = args.configs or [default_config(t) for t in args.trainers]
    jobs = make_jobs(args.protocol, args.trainers, configs, args.datasets, args.seeds, args.output, shots,
                     args.source)
    env = dict(os.environ, DATA=data, OUTPUT=args.output, SHOTS=shots, PYTHON=os.environ.get("PYTHON", sys.executable),
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    if args.opts is not None:
        env["OPTS"] = args.opts
    if args.table_only:
        print(results_table(args.protocol, jobs, args.output, shots, args.source, args.datasets))
        return 0

    todo = [j for j in jobs if not j.finished()]
    progress = Progress(total=len(jobs), skipped=len(jobs) - len(todo))
    if args.dry_run:
        for j in jobs:
            state = "finished" if j.finished() else ("started (resumes)" if j.started() else "new")
            print(f"{j.name}: {state}; " + " && ".join(shlex.join([osp.relpath(s.argv[1], ROOT), *s.argv[2:]])
                                                      for s in j.steps))
        print(f"{len(todo)} of {len(jobs)} jobs to run")
        if slurm and args.cluster == "slurm" and todo:
            folder = osp.join(args.output, "sweep", args.protocol, "submitit")
            print(f"\nsbatch script that submitit would submit (dry run, nothing submitted):\n"
                  f"{sbatch_script(args, len(todo), folder)}")
        return 0
    slots = [None] if slurm else local_slots(args.gpus)
    progress.slots = len(slots)
    if slurm:
        where = f"submitit ({args.cluster})"
    elif slots[0] is not None:
        where = f"{len(slots)} GPU(s) {','.join(s for s in slots if s)}, one job per GPU"
    else:
        where = "this CPU, one job at a time"
    _say(f"[sweep {args.protocol}] {len(jobs)} jobs, {progress.skipped} already finished (skipped); running "
         f"{len(todo)} on {where}; logs in {osp.join(args.output, 'sweep', args.protocol, 'logs')}")
    for attempt in range(args.retries + 1):
        if not todo:
            break
        if attempt:
            _say(f"retry {attempt}/{args.retries}: {len(todo)} failed job(s), resuming from their last checkpoints")
            progress.failed = []
        if slurm:
            run_submitit(todo, env, args, progress, args.report_every)
            if args.no_wait:
                return 0
        else:
            run_local(todo, env, slots, progress, args.protocol, args.report_every)
        todo = list(progress.failed)
    _say(progress.line(args.protocol))
    print()
    print(results_table(args.protocol, jobs, args.output, shots, args.source, args.datasets))
    if progress.failed:
        print(f"\n{len(progress.failed)} job(s) failed (rerun the same command to resume them):")
        for j in progress.failed:
            print(f"  {j.name}: {j.log}\n      {_last_line(j.log)}")
        return 1
    return 0


def _last_line(path: str) -> str:
    """The last line of ``path`` that says something (the scripts' and train.py's errors end a log)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("== exit code")]
    except OSError:
        return "(no log)"
    errors = [line for line in lines if line.startswith("error")]
    return (errors or lines or ["(empty log)"])[-1]


if __name__ == "__main__":
    # Run the importable module's main, so that the jobs submitit pickles name tools.sweep, not __main__.
    from tools.sweep import main as sweep_main

    sys.exit(sweep_main())
