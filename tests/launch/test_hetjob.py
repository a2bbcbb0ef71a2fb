"""Heterogeneous Slurm jobs: components on unlike partitions in one job, one torch.distributed world across them.

The rendered script is read and run with stub Slurm commands (as Slurm would set its variables for a job of two
components), every component value is tried with hostile text, and a real job trains the tiny model across the
local cluster's two partitions (`debug` on the host's node, `second` on its second node name).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from triglot.launch.clusters import load_cluster
from triglot.launch.hetjob import apply_micro_batches, components_of, parse_component
from triglot.launch.sbatch import render
from triglot.launch.slurm import stage_jobs

from tests.launch.test_script_injection import assert_inert, leaves, payload, with_hostile
from triglot.config import compose, load_config, to_container
from triglot.config.launch import ComponentSpec
from triglot.errors import ConfigError
from triglot.testing import REPO_ROOT
from triglot.testing import test_env as run_env

QUICKSTART = "configs/experiments/quickstart.yaml"
TWO_PARTITIONS = ["--component", "partition=debug,nodes=1", "--component", "partition=second,nodes=2"]


def triglot(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", *args], cwd=REPO_ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=timeout)


def dry_run(tmp_path: Path, packed_dir: Path, helpers, *extra: str) -> str:
    proc = triglot("launch", "slurm", "train", QUICKSTART, *helpers.tiny_overrides(tmp_path / "run", packed_dir),
                   "run.nproc_per_node=2", *extra, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def sbatch_block(text: str) -> list[str]:
    return [line[len("#SBATCH "):] for line in text.splitlines() if line.startswith("#SBATCH ")]


def test_components_render_one_job_with_hetjob_separators(tmp_path: Path, packed_dir: Path, helpers) -> None:
    text = dry_run(tmp_path, packed_dir, helpers, *TWO_PARTITIONS, "launch.time=00:20:00")
    lines = sbatch_block(text)
    assert lines.count("hetjob") == 1
    first, second = lines[:lines.index("hetjob")], lines[lines.index("hetjob") + 1:]
    assert "--partition=debug" in first and "--nodes=1" in first and "--time=00:20:00" in first
    assert "--partition=second" in second and "--nodes=2" in second
    assert not any(line.startswith("--partition=") for line in second if line != "--partition=second")
    # One srun over both components; torchrun takes the node count and ranks per node from the job, not fixed.
    assert "--het-group=0 --nodes=1" in text and "--het-group=1 --nodes=2" in text
    assert "HET_RANKS=(2 2)" in text and "(expected 6)" in text
    assert '"--nnodes=$NODES"' in text and '"--master-addr=$MASTER_ADDR"' in text
    assert "--nproc-per-node" not in text.split("# Steps ---")[1]
    check = subprocess.run(["bash", "-n"], input=text.split("# dry run:")[0], text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_without_components_the_job_is_plain(tmp_path: Path, packed_dir: Path, helpers) -> None:
    text = dry_run(tmp_path, packed_dir, helpers)
    assert "hetjob" not in sbatch_block(text) and "--het-group" not in text and "HET_RANKS" not in text


def stub_slurm(folder: Path, het_nodes: list[int]) -> Path:
    """Slurm commands that log what they are asked; srun also keeps the environment the batch shell gave it."""
    folder.mkdir()
    for name in ("sbatch", "scancel", "squeue"):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
    (folder / "scontrol").write_text(
        '#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 0\n'
        'case "$3" in first) echo first;; rest) i=0; while [ $i -lt ' + str(sum(het_nodes[1:])) +
        ' ]; do echo rest$i; i=$((i+1)); done;; *) echo "$3";; esac\n')
    (folder / "srun").write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$STUB_DIR/srun.args"\n'
                                 'printf "%s\\n%s\\n" "$RANKS_BY_NODE" "$NODES" > "$STUB_DIR/srun.env"\n')
    for exe in folder.iterdir():
        exe.chmod(0o755)
    return folder


def test_node_ranks_and_world_run_across_components(tmp_path: Path, packed_dir: Path, helpers) -> None:
    """Component 0 (1 node x 2 ranks) and component 1 (2 nodes x 2 ranks): node ranks 0, 1, 2; 6 ranks in all."""
    script = dry_run(tmp_path, packed_dir, helpers, *TWO_PARTITIONS).split("# dry run:")[0]
    stubs = stub_slurm(tmp_path / "bin", [1, 2])
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path), "STUB_DIR": str(tmp_path),
           "SLURM_JOB_ID": "42", "SLURM_CPUS_PER_TASK": "2",
           # What Slurm sets in a heterogeneous job's batch shell: SLURM_JOB_NODELIST is component 0's alone.
           "SLURM_JOB_NODELIST": "first", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_JOB_NODELIST_HET_GROUP_0": "first", "SLURM_JOB_NUM_NODES_HET_GROUP_0": "1",
           "SLURM_JOB_NODELIST_HET_GROUP_1": "rest", "SLURM_JOB_NUM_NODES_HET_GROUP_1": "2"}
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 node(s), 6 rank(s) (expected 6)" in proc.stdout
    assert "master first:" in proc.stdout
    events = (tmp_path / "run" / "jobs" / "42.events").read_text()
    assert "hosts=first,rest0,rest1 " in events
    args = (tmp_path / "srun.args").read_bytes().decode().split("\0")[:-1]
    ranks_by_node, nodes = (tmp_path / "srun.env").read_text().split("\n")[:2]
    assert nodes == "3" and ranks_by_node.split() == ["2", "2", "2"]
    assert args[:args.index(":")].count("--het-group=0") == 1 and "--het-group=1" in args[args.index(":"):]
    # Each task as Slurm starts it: one per node, SLURM_PROCID counting across the components.
    at = args.index("-c")
    wrapper = args[at + 1]
    seen = []
    for procid in range(3):
        task_env = {**env, "RANKS_BY_NODE": ranks_by_node, "NODES": nodes, "SLURM_PROCID": str(procid),
                    "SLURMD_NODENAME": f"node{procid}"}
        out = subprocess.run(["bash", "-c", wrapper, "node-rank", "sh", "-c",
                              'echo "$PET_NODE_RANK $PET_NPROC_PER_NODE"'],
                             env=task_env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        seen.append(out.stdout.splitlines()[-1])
    assert seen == ["0 2", "1 2", "2 2"]
    torchrun = args[at + 3:]
    assert "--nnodes=3" in torchrun and "--master-addr=first" in torchrun
    assert not any(a.startswith("--nproc-per-node") for a in torchrun)  # PET_NPROC_PER_NODE, set per node


def test_unequal_ranks_per_component(tmp_path: Path, packed_dir: Path, helpers) -> None:
    text = dry_run(tmp_path, packed_dir, helpers, "--component", "partition=debug,nodes=1,gpus=4",
                   "--component", "partition=second,nodes=1,gpus=8,constraint=h100", "launch.cluster=local")
    assert "HET_RANKS=(4 8)" in text and "(expected 12)" in text
    lines = sbatch_block(text)
    assert "--constraint=h100" in lines[lines.index("hetjob"):]


def config(tmp_path: Path, packed_dir: Path, helpers, *extra: str):
    return load_config(QUICKSTART, [*helpers.tiny_overrides(tmp_path / "run", packed_dir), *extra])


def test_micro_batch_per_component(tmp_path: Path, packed_dir: Path, helpers) -> None:
    cfg = config(tmp_path, packed_dir, helpers, "run.nproc_per_node=2")
    cfg.launch.components = [ComponentSpec(**parse_component(t)) for t in ("nodes=1,micro_batch=3",
                                                                            "partition=second,nodes=1,micro_batch=1")]
    apply_micro_batches(cfg, components_of(cfg, load_cluster("local")))
    assert list(cfg.train.micro_batch_sizes) == [3, 3, 1, 1]
    # auto stays auto when no component names a micro batch; set on some only, or against a list: refused.
    cfg = config(tmp_path, packed_dir, helpers, "train.micro_batch_sizes=auto")
    cfg.launch.components = [ComponentSpec(nodes=1), ComponentSpec(partition="second")]
    apply_micro_batches(cfg, components_of(cfg, load_cluster("local")))
    assert cfg.train.micro_batch_sizes == "auto"
    cfg.launch.components = [ComponentSpec(micro_batch=2), ComponentSpec(partition="second")]
    with pytest.raises(ConfigError, match="some components only"):
        apply_micro_batches(cfg, components_of(cfg, load_cluster("local")))
    cfg.launch.components = [ComponentSpec(micro_batch=2), ComponentSpec(partition="second", micro_batch=2)]
    with pytest.raises(ConfigError, match="train.micro_batch_sizes is auto"):
        apply_micro_batches(cfg, components_of(cfg, load_cluster("local")))


@pytest.mark.parametrize("component, message", [
    ("partition=a100,node=2", "did you mean nodes"),
    ("partition=a100,nodes=two", "nodes must be a whole number"),
    ("partition=a b,nodes=1", "cannot be written on an #SBATCH line"),
])
def test_bad_component_exits_2_with_one_line(tmp_path: Path, packed_dir: Path, helpers, component: str,
                                             message: str) -> None:
    proc = triglot("launch", "slurm", "train", QUICKSTART, *helpers.tiny_overrides(tmp_path / "run", packed_dir),
                   "--component", component, "--component", "partition=second", "--dry-run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_one_component_is_refused(tmp_path: Path, packed_dir: Path, helpers) -> None:
    proc = triglot("launch", "slurm", "train", QUICKSTART, *helpers.tiny_overrides(tmp_path / "run", packed_dir),
                   "--component", "partition=second", "--dry-run")
    assert proc.returncode == 2 and "two components or more" in proc.stderr, proc.stderr


def hetjob_scripts(cfg, cluster, tmp: Path) -> list[str]:
    return [render(job, cfg, cluster, workdir=tmp)
            for job in stage_jobs("train", cfg, tmp / "config.yaml", "launch slurm train", 1, 0)]


def test_every_component_value_is_inert_in_the_script(tmp_path: Path) -> None:
    """Hostile text in each component's values, in the config and in a cluster profile: refused, or inert."""
    canary = tmp_path / "canary"
    evil = payload(canary)
    base = to_container(load_config(REPO_ROOT / QUICKSTART, ["hardware=cpu", f"run.dir={tmp_path / 'run'}"]))
    components = [{"partition": "debug", "nodes": 1, "gpus": 0, "constraint": "cpu", "micro_batch": 0},
                  {"partition": "second", "nodes": 1, "gpus": 0, "constraint": "", "micro_batch": 0}]
    base["launch"]["components"] = components
    outcomes = {"refused": 0, "rendered": 0}
    for path in leaves(base["launch"]["components"], ("launch", "components")):
        try:
            cfg = compose(with_hostile(base, path, evil), root=REPO_ROOT / "configs")
            texts = hetjob_scripts(cfg, load_cluster("local"), tmp_path)
        except ConfigError:
            outcomes["refused"] += 1
            continue
        assert any("hetjob" in text for text in texts)
        assert_inert(texts, tmp_path, canary, ".".join(map(str, path)))
        outcomes["rendered"] += 1
    cfg = compose(base | {"launch": {**base["launch"], "components": []}}, root=REPO_ROOT / "configs")
    profile = tmp_path / "site.yaml"
    for path in leaves(components, ("components",)):
        profile.write_text(yaml.safe_dump(with_hostile({"components": components}, path, evil)), encoding="utf-8")
        try:
            texts = hetjob_scripts(cfg, load_cluster(str(profile)), tmp_path)
        except ConfigError:
            outcomes["refused"] += 1
            continue
        assert_inert(texts, tmp_path, canary, "profile " + ".".join(map(str, path)))
        outcomes["rendered"] += 1
    # Every string of a component lands on an #SBATCH line, where no quoting helps: each hostile one is refused.
    assert outcomes == {"refused": 6, "rendered": 0}, outcomes
    # The same components with plain values render, and the script runs with stub Slurm commands.
    clean = hetjob_scripts(compose(base, root=REPO_ROOT / "configs"), load_cluster("local"), tmp_path)
    assert "#SBATCH hetjob" in clean[0]
    assert_inert(clean, tmp_path, canary, "plain components")


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "checkpoints" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if '"loss"' in line]


@pytest.mark.slurm
@pytest.mark.slow
def test_hetjob_trains_across_two_partitions(slurm_cluster: str, packed_dir: Path, tmp_path: Path,
                                             helpers) -> None:
    """One job, components on `debug` and `second` (two slurmd node names): one world of two ranks trains."""
    run_dir = tmp_path / "run"
    proc = triglot("launch", "slurm", "train", QUICKSTART, *helpers.tiny_overrides(run_dir, packed_dir, steps=4),
                   "run.nproc_per_node=1", "launch.requeue=false",
                   "--component", "nodes=1,micro_batch=3", "--component", "partition=second,nodes=1,micro_batch=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    helpers.wait_for_jobs([job_id], timeout=600)
    log_path = run_dir / "logs" / f"quickstart-train-{job_id}.out"
    log = log_path.read_text() if log_path.is_file() else "(no log)"
    events = [line.split("\t") for line in (run_dir / "jobs" / f"{job_id}.events").read_text().splitlines()]
    assert events[-1][2:] == ["exit", "rc=0"], log[-4000:]
    node = os.uname().nodename.split(".")[0]
    start = next(row[3] for row in events if row[2] == "start")
    assert f"hosts={node},{node}-b " in start, start
    assert f"node rank 0 of 2 on {node}: 1 rank(s)" in log and f"node rank 1 of 2 on {node}-b: 1 rank(s)" in log
    assert "2 node(s), 2 rank(s) (expected 2)" in log
    rows = metrics(run_dir)
    assert max(row["step"] for row in rows) == 4
    # Both ranks worked in every step, each with its component's micro batch (3 on debug, 1 on second).
    last = rows[-1]
    assert last["micro_batch/rank0"] == 3 and last["micro_batch/rank1"] == 1, last
    assert "tokens_per_s/rank1" in last and "tokens_per_s/rank2" not in last
    meta = json.loads((run_dir / "checkpoints" / "step-00000004" / "meta.json").read_text())
    assert meta["world_size"] == 2
