"""Rendered sbatch scripts: resources, rendezvous, communication settings, and shell quoting of config values."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from triglot.launch.clusters import load_cluster
from triglot.launch.comm import comm_env, library_name
from triglot.launch.local import torchrun_command
from triglot.launch.sbatch import render
from triglot.launch.slurm import stage_jobs

from triglot.config import compose
from triglot.config.loader import group_options
from triglot.errors import ConfigError


def render_stage(cfg, stage: str, cluster, tmp_path: Path, gpus: int = 0, nodes: int = 1) -> str:
    jobs = stage_jobs(stage, cfg, tmp_path / "config.yaml", "launch slurm test", nodes, gpus)
    return "\n".join(render(job, cfg, cluster) for job in jobs)


def sbatch_options(script: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_every_cluster_profile_loads(repo_root: Path) -> None:
    names = group_options(repo_root / "configs", "clusters")
    assert "local" in names and len(names) >= 4
    for name in names:
        profile = load_cluster(name)
        assert profile.gpu_request in ("gres", "gpus", "none")


def test_gpu_job_on_a_site_profile(tmp_path: Path) -> None:
    cfg = compose({"defaults": {"hardware": "nvidia-h100", "model": "tiny"}, "run": {"dir": str(tmp_path)},
                   "launch": {"time": "04:00:00", "signal_lead_s": 300}})
    cluster = load_cluster("nvidia-h100")
    script = render_stage(cfg, "train", cluster, tmp_path, gpus=8, nodes=4)
    options = sbatch_options(script)
    for expected in ("--nodes=4", "--ntasks-per-node=1", "--gres=gpu:8", "--account=my-account", "--qos=normal",
                     "--constraint=h100", "--partition=gpu", "--time=04:00:00", "--signal=B:USR1@300", "--requeue",
                     f"--output={tmp_path.resolve()}/logs/%x-%j.out"):
        assert expected in options, (expected, options)
    assert 'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in script
    assert 'PET_NODE_RANK="$SLURM_NODEID"' in script and "RANKS_PER_NODE=8" in script
    assert '"$PYTHON" -m triglot.launch.torchrun "--nproc-per-node=$RANKS_PER_NODE"' in script
    assert "--container-image='nvcr.io#nvidia/pytorch:25.01-py3'" in script
    assert "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1" in script and "export NCCL_SOCKET_IFNAME=ib0" in script
    assert "scontrol requeue" in script and "trap 'request_stop USR1' USR1" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize("profile, library, expected", [
    ("cpu", "gloo", "OMP_NUM_THREADS"),
    ("nvidia-a100", "NCCL", "TORCH_NCCL_ASYNC_ERROR_HANDLING"),
    ("amd-mi300x", "RCCL", "HSA_FORCE_FINE_GRAIN_PCIE"),
    ("ascend-910b", "HCCL", "HCCL_CONNECT_TIMEOUT"),
    ("intel-gaudi2", "HCCL", "HCCL_CONNECT_TIMEOUT"),
    ("intel-xpu", "oneCCL", "CCL_ATL_TRANSPORT"),
])
def test_communication_settings_per_accelerator(profile: str, library: str, expected: str) -> None:
    cfg = compose({"defaults": {"hardware": profile}})
    cluster = load_cluster("local")
    assert library_name(cfg.hardware) == library
    assert expected in comm_env(cfg.hardware, cluster, 4)


def test_cluster_env_wins_over_hardware_env(tmp_path: Path, helpers) -> None:
    profile = helpers.write_yaml(tmp_path / "site.yaml", {"env": {"NCCL_DEBUG": "INFO"}, "socket_ifname": "eth7"})
    cfg = compose({"defaults": {"hardware": "nvidia-h100"}})
    env = comm_env(cfg.hardware, load_cluster(str(profile)), 1)
    assert env["NCCL_DEBUG"] == "INFO" and env["NCCL_SOCKET_IFNAME"] == "eth7"


def test_data_stage_is_an_array_then_a_dependent_merge(tmp_path: Path) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "launch": {"data_shards": 3}})
    jobs = stage_jobs("all", cfg, tmp_path / "config.yaml", "launch slurm all", 1, 0)
    assert [j.name.rsplit("-", 1)[1] for j in jobs] == ["clean", "merge", "tokenizer", "pack", "train", "eval"]
    assert jobs[0].array == "0-2" and not jobs[1].array
    script = render(jobs[0], cfg, load_cluster("local"))
    assert "--array=0-2" in sbatch_options(script)
    assert 'data clean "$CONFIG" --shard "$SLURM_ARRAY_TASK_ID/$SHARDS"' in script and "SHARDS=3" in script


def test_unsafe_sbatch_value_is_refused(tmp_path: Path) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "launch": {"partition": "gpu --account=other"}})
    with pytest.raises(ConfigError, match="launch.partition"):
        render_stage(cfg, "train", load_cluster("local"), tmp_path)


@pytest.mark.parametrize("override, key", [
    ("launch.partition=debug\n", "launch.partition"),
    ("launch.mem=64G\n", "launch.mem"),
    ("launch.time=01:00:00\n", "launch.time"),
    ("hardware.env.NCCL_DEBUG\n=WARN", "environment variable name"),
])
def test_trailing_newline_is_refused(tmp_path: Path, override: str, key: str) -> None:
    """`^...$` with re.match accepts a value ending in a newline; the checks match the whole value."""
    name, value = override.split("=", 1)
    cfg = compose({"run": {"dir": str(tmp_path)}})
    OmegaConf.update(cfg, name, value, force_add=True)
    with pytest.raises(ConfigError, match=key):
        render_stage(cfg, "train", load_cluster("local"), tmp_path)


def test_trailing_newline_in_a_name_is_refused(tmp_path: Path, helpers) -> None:
    with pytest.raises(ConfigError, match="hardware.name"):
        compose({"hardware": {"name": "cpu\n"}})
    with pytest.raises(ConfigError, match="hardware.comm_backend"):
        compose({"hardware": {"comm_backend": "gloo\n"}})
    with pytest.raises(ConfigError, match="cluster profile name"):
        load_cluster(str(helpers.write_yaml(tmp_path / "site.yaml", {"name": "site\n"})))


def test_run_dir_that_cannot_sit_on_an_sbatch_line_is_refused(tmp_path: Path) -> None:
    cfg = compose({"run": {"dir": str(tmp_path / "run $(touch pwned)")}})
    with pytest.raises(ConfigError, match="run.dir"):
        render_stage(cfg, "train", load_cluster("local"), tmp_path)
    assert not (Path.cwd() / "pwned").exists()


def test_local_launch_command_for_two_nodes(tmp_path: Path) -> None:
    cmd = torchrun_command("train", tmp_path / "config.yaml", nproc=2, nnodes=2, node_rank=1,
                           master_addr="10.0.0.1", master_port=29511)
    assert "--nnodes=2" in cmd and "--node-rank=1" in cmd and "--master-addr=10.0.0.1" in cmd
    assert cmd[-3:] == ["triglot", "train", str(tmp_path / "config.yaml")][-3:]


def test_percent_in_run_dir_is_written_for_slurm_to_keep(tmp_path: Path) -> None:
    """Slurm expands %j, %x, ... anywhere in --output; a % in the folder itself is written %%."""
    run_dir = tmp_path / "lr%j-100%"
    cfg = compose({"run": {"dir": str(run_dir)}})
    [output] = [o for o in sbatch_options(render_stage(cfg, "train", load_cluster("local"), tmp_path))
                if o.startswith("--output=")]
    assert output == f"--output={str(run_dir.resolve()).replace('%', '%%')}/logs/%x-%j.out"


@pytest.mark.parametrize("arg, message", [
    ("hetjob", "is not an sbatch option"), ("foo", "is not an sbatch option"),
    ("--array=0-3", "triglot writes --array itself"), ("-o/tmp/x", "triglot writes -o itself; set run.dir"),
    ("--time=01:00:00", "set launch.time instead"), ("--dependency=afterok:1", "writes --dependency itself"),
])
def test_sbatch_args_must_be_options_triglot_does_not_set(tmp_path: Path, arg: str, message: str) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "launch": {"sbatch_args": ["--exclusive", arg]}})
    with pytest.raises(ConfigError, match=rf"launch\.sbatch_args\[1\] = .*{message}"):
        render_stage(cfg, "train", load_cluster("local"), tmp_path)
    cfg = compose({"run": {"dir": str(tmp_path)}, "launch": {"sbatch_args": ["--exclusive", "--mail-type=END", "-wn1"]}})
    assert sbatch_options(render_stage(cfg, "train", load_cluster("local"), tmp_path))[-3:] == [
        "--exclusive", "--mail-type=END", "-wn1"]


@pytest.mark.parametrize("limit", ["１:００:００", "٠١:٠٠:٠٠"])
def test_time_limit_takes_ascii_digits_only(tmp_path: Path, limit: str) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "launch": {"time": limit}})
    with pytest.raises(ConfigError, match="launch.time"):
        render_stage(cfg, "train", load_cluster("local"), tmp_path)


@pytest.mark.parametrize("profile, key", [
    ({"container": {"image": "--fakeroot", "runtime": "apptainer"}}, "container.image"),
    ({"container": {"image": "-x", "runtime": "pyxis"}}, "container.image"),
    ({"modules": ["cuda/12", "--force"]}, r"modules\[1\]"),
])
def test_image_or_module_that_reads_as_an_option_is_refused(tmp_path: Path, helpers, profile: dict,
                                                            key: str) -> None:
    cluster = load_cluster(str(helpers.write_yaml(tmp_path / "site.yaml", {"partition": "debug", **profile})))
    cfg = compose({"run": {"dir": str(tmp_path / "run")}})
    with pytest.raises(ConfigError, match=rf"{key} = .* starts with '-'"):
        render_stage(cfg, "train", cluster, tmp_path, gpus=0)


@pytest.mark.parametrize("name", ["BASH_ENV", "ENV", "PS4", "PROMPT_COMMAND", "SHELLOPTS", "IFS", "CDPATH",
                                  "CONFIG", "PYTHON", "RUN_DIR", "MASTER_PORT", "SLURM_JOB_ID", "PET_NODE_RANK"])
def test_profile_env_cannot_set_what_bash_or_the_job_script_reads(tmp_path: Path, helpers, name: str) -> None:
    cfg = compose({"run": {"dir": str(tmp_path)}, "hardware": {"env": {name: "$(touch pwned)"}}})
    with pytest.raises(ConfigError, match=rf"^hardware\.env\.{name}: "):
        render_stage(cfg, "train", load_cluster("local"), tmp_path)
    cluster = load_cluster(str(helpers.write_yaml(tmp_path / "site.yaml", {"name": "site", "env": {name: "x"}})))
    with pytest.raises(ConfigError, match=rf"^cluster profile 'site' env\.{name}: "):
        render_stage(compose({"run": {"dir": str(tmp_path)}}), "train", cluster, tmp_path)
    allowed = compose({"run": {"dir": str(tmp_path)}, "hardware": {"env": {"SLURM_CPU_BIND": "none"}}})
    assert "export SLURM_CPU_BIND=none" in render_stage(allowed, "train", load_cluster("local"), tmp_path)


def test_local_dry_run_prints_a_command_a_shell_runs_as_is(tmp_path: Path, capsys) -> None:
    import shlex

    from triglot.launch.local import launch_local

    run_dir = tmp_path / "lo cal;touch pwned;$(touch pwned2)"
    cfg = compose({"run": {"dir": str(run_dir)}})
    assert launch_local(cfg, "train", 1, dry_run=True) == 0
    printed = capsys.readouterr().out.splitlines()[0]
    words = shlex.split(printed)
    assert words[-2:] == ["train", str(run_dir / "configs" / Path(words[-1]).name)]
