"""A user error found inside the ranks comes back as exit 2 and one line, however the ranks were started.

Covers `triglot run`, `triglot launch local`, plain torchrun, a Slurm job script's step, and a bare
`triglot train` without any launcher (a world of one).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from triglot.launch.clusters import load_cluster
from triglot.launch.sbatch import render
from triglot.launch.slurm import stage_jobs

from triglot.config import load_config, save_config
from triglot.testing import REPO_ROOT, run_torchrun
from triglot.testing import test_env as testing_env

MESSAGE = "is not a multiple of the micro-batches"


def experiment(tmp_path: Path, packed_dir: Path, **train) -> Path:
    """Two ranks of micro-batch 2 and a global batch of 6: refused inside the ranks, once the world is known."""
    body = {
        "defaults": {"model": "tiny", "hardware": "cpu"},
        "run": {"name": "t", "dir": str(tmp_path / "run"), "stages": ["train"], "nproc_per_node": 2},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_kv_heads": 2},
        "tracking": {"mode": "disabled"},
        "train": {"steps": 2, "seq_len": 32, "global_batch_size": 6, "micro_batch_size": 2, "warmup_steps": 1,
                  "data_dir": str(packed_dir), "checkpoint": {"every": 2, "export_hf": False}, **train},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def triglot(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", *args], cwd=REPO_ROOT, env=env or testing_env(),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line(proc: subprocess.CompletedProcess) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    assert [line for line in out.splitlines() if MESSAGE in line] == [
        "triglot: config error: train.global_batch_size 6 is not a multiple of the micro-batches across ranks "
        "([2, 2], sum 4); change either"], out[-4000:]
    assert "Traceback" not in out and "ChildFailedError" not in out, out[-4000:]


def test_run_reports_a_rank_user_error_once(tmp_path: Path, packed_dir: Path) -> None:
    assert_one_line(triglot("run", str(experiment(tmp_path, packed_dir))))


def test_launch_local_reports_a_rank_user_error_once(tmp_path: Path, packed_dir: Path) -> None:
    assert_one_line(triglot("launch", "local", "train", str(experiment(tmp_path, packed_dir)), "--nproc", "2"))


def test_plain_torchrun_ranks_exit_2_with_one_line_each(tmp_path: Path, packed_dir: Path) -> None:
    proc = run_torchrun(2, ["train", str(experiment(tmp_path, packed_dir))], check=False, timeout=600)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if MESSAGE in line and "exitcode" not in line]
    assert 1 <= len(lines) <= 2 and all(line.startswith("triglot: config error: ") for line in lines), out[-4000:]
    assert "exitcode  : 2" in out or "exitcode: 2" in out, out[-4000:]  # torchrun's summary of the failed rank


def test_a_value_deepspeed_refuses_exits_2_naming_the_train_deepspeed_key(tmp_path: Path, packed_dir: Path) -> None:
    """DeepSpeed validates its config only inside the ranks (YAML reads 5e8 as text, which it refuses)."""
    exp = experiment(tmp_path, packed_dir, global_batch_size=4,
                     deepspeed={"zero_optimization": {"reduce_bucket_size": "5e8"}})
    proc = run_torchrun(2, ["train", str(exp)], check=False, timeout=600)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if "reduce_bucket_size" in line]
    assert 1 <= len(lines) <= 2 and set(lines) == {
        "triglot: config error: train.deepspeed.zero_optimization.reduce_bucket_size: DeepSpeed refuses '5e8' "
        "(Input should be a valid integer, unable to parse string as an integer); YAML reads 5e8 as text: "
        "write 500000000"}, out[-4000:]
    assert "exitcode  : 2" in out or "exitcode: 2" in out, out[-4000:]
    assert "ValidationError" not in out and "pydantic" not in out, out[-4000:]  # torchrun's own traceback aside


def test_impossible_steps_exit_2_before_any_work(tmp_path: Path, packed_dir: Path) -> None:
    proc = triglot("train", str(experiment(tmp_path, packed_dir, global_batch_size=8)), "train.steps=-5",
                   timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "triglot: config error: train.steps = -5 is impossible: use 1 or more"], proc.stderr
    assert not (tmp_path / "run" / "export").exists()


def test_bare_train_runs_as_a_world_of_one(tmp_path: Path, packed_dir: Path) -> None:
    """No torchrun, no RANK or MASTER_ADDR: the command sets up its own one-process group and trains."""
    env = {k: v for k, v in testing_env().items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    exp = experiment(tmp_path, packed_dir, global_batch_size=4)
    proc = triglot("train", str(exp), env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (tmp_path / "run" / "checkpoints" / "step-00000002" / "COMPLETE").is_file()


def stub_slurm(folder: Path, srun_body: str) -> Path:
    folder.mkdir()
    (folder / "srun").write_text(f"#!/bin/bash\n{srun_body}\n")
    (folder / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && echo localhost\nexit 0\n')
    for name in ("sbatch", "scancel"):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
    for exe in folder.iterdir():
        exe.chmod(0o755)
    return folder


def test_slurm_step_reports_a_rank_user_error_once(tmp_path: Path, packed_dir: Path) -> None:
    """The job script prints the message its ranks left in $TRIGLOT_ERROR_FILE once and ends with exit 2.

    srun is a stub that runs the step's command on this machine, as srun would on a one-node allocation.
    """
    cfg = load_config(experiment(tmp_path, packed_dir), ["launch.requeue=false"])
    config_path = tmp_path / "run" / "config.yaml"
    save_config(cfg, config_path)
    job = stage_jobs("train", cfg, config_path, "launch slurm train", 1, 0)[0]
    script = render(job, cfg, load_cluster("local"), workdir=REPO_ROOT)
    # The stub skips srun's own options and runs the command, like srun on the one node of the allocation.
    stubs = stub_slurm(tmp_path / "bin", 'while [[ "$1" == --* ]]; do shift; done\nSLURM_NODEID=0 exec "$@"')
    env = testing_env({"PATH": f"{stubs}:{Path(sys.executable).parent}:/usr/bin:/bin", "SLURM_JOB_ID": "42",
                    "SLURM_JOB_NODELIST": "localhost", "SLURM_CPUS_PER_TASK": "2", "SLURM_JOB_NUM_NODES": "1",
                    "MASTER_PORT": ""})
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert_one_line(proc)
    events = (tmp_path / "run" / "jobs" / "42.events").read_text()
    assert "exit\trc=2" in events


def test_real_slurm_job_reports_a_rank_user_error_once(slurm_cluster: str, packed_dir: Path, tmp_path: Path,
                                                       helpers) -> None:
    """The same refusal in a job on the local Slurm cluster: its log holds the line once, the step exits 2."""
    run_dir = tmp_path / "run"
    overrides = [*helpers.tiny_overrides(run_dir, packed_dir, steps=2), "run.nproc_per_node=2",
                 "train.global_batch_size=6", "train.micro_batch_size=2", "launch.requeue=false"]
    proc = triglot("launch", "slurm", "train", "configs/experiments/quickstart.yaml", *overrides, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    helpers.wait_for_jobs([job_id])
    log = (run_dir / "logs" / f"quickstart-train-{job_id}.out").read_text()
    assert [line for line in log.splitlines() if MESSAGE in line] == [
        "triglot: config error: train.global_batch_size 6 is not a multiple of the micro-batches across ranks "
        "([2, 2], sum 4); change either"], log[-4000:]
    assert "Traceback" not in log and "ChildFailedError" not in log, log[-4000:]
    last = (run_dir / "jobs" / f"{job_id}.events").read_text().splitlines()[-1].split("\t")
    assert last[2:] == ["exit", "rc=2"]


def test_launch_local_exits_as_the_ranks_stopped(tmp_path: Path, packed_dir: Path) -> None:
    """A rank that stops with a code of its own (here a NaN loss: 3) reaches `launch local` as that code and
    one line, not as torchrun's 1 and its ChildFailedError traceback."""
    exp = experiment(tmp_path, packed_dir, global_batch_size=8)
    proc = triglot("launch", "local", "train", str(exp), "--nproc", "2", "model.rms_norm_eps=-1.0")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-4000:]
    assert len([line for line in out.splitlines() if "loss is nan at step 1" in line]) == 1, out[-4000:]
    assert "Traceback" not in out and "ChildFailedError" not in out, out[-4000:]
