"""No config value can run as shell in a generated sbatch script: every string leaf is tried with hostile text.

Each leaf of the resolved config and of a cluster profile (except the profile's `setup` lines, shell by design)
gets a payload that tries every way out of a word or a comment; the script either refuses it with ConfigError
or renders into a script that parses, runs with stub Slurm commands, and touches nothing.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from triglot.launch.clusters import load_cluster
from triglot.launch.sbatch import render
from triglot.launch.slurm import stage_jobs

from triglot.config import compose, load_config, to_container
from triglot.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
# Commands a job script may call; each stub logs its arguments (NUL-separated) and succeeds.
STUBS = ("srun", "sbatch", "scancel", "squeue", "sacct", "module", "apptainer", "enroot", "ml")
SITE_PROFILE: dict[str, Any] = {
    "description": "every field set", "account": "acct", "qos": "normal", "partition": "debug",
    "constraint": "h100", "gpu_request": "gres", "gres_name": "gpu", "modules": ["rocm/6.2"],
    "container": {"image": "/images/box.sif", "runtime": "apptainer", "mounts": ["/scratch:/scratch"]},
    "env": {"SITE_VAR": "value"}, "setup": ["true"], "python": "/usr/bin/python3", "socket_ifname": "eth0",
}


def payload(canary: Path) -> str:
    """Text that breaks out of single quotes, double quotes, a bare word and a comment, each to touch `canary`."""
    touch = f"touch {canary}"
    return f"x'; {touch}; '\"; {touch}; \" $({touch}) `{touch}` # c\n{touch}\r\n{touch} #"


def leaves(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths to every string or unset leaf, every list, and every mapping (which gets a hostile new key).

    A list of plain values is one case (every item hostile at once); in a list of mappings, "*" in a path
    makes that leaf hostile in every item at once, so each leaf is covered without a case per item.
    """
    if isinstance(node, dict):
        yield path + (None,)  # None: add a hostile key to this mapping
        for key, value in node.items():
            yield from leaves(value, path + (key,))
    elif isinstance(node, list):
        mappings = [item for item in node if isinstance(item, dict)]
        if len(mappings) < len(node) or not node:
            yield path  # the list itself: every plain item (or a first one) becomes hostile
        keys = list(dict.fromkeys(key for item in mappings for key in item))
        for key in keys:
            yield from leaves(next(item[key] for item in mappings if key in item), path + ("*", key))
        if mappings:
            yield path + ("*", None)
    elif node is None or isinstance(node, str):
        yield path


def with_hostile(tree: Any, path: tuple, evil: str) -> Any:
    """A copy of `tree` with the leaf at `path` replaced by `evil` (or `evil` added as a key or as list items)."""
    tree = copy.deepcopy(tree)
    _set(tree, path, evil)
    return tree


def _has(node: Any, path: tuple) -> bool:
    for part in path:
        if part is None or part == "*":
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _set(node: Any, path: tuple, evil: str) -> None:
    head, rest = path[0], path[1:]
    if head == "*":
        for item in node:
            if _has(item, rest):
                _set(item, rest, evil)
    elif head is None:
        node[evil] = "x"
    elif rest:
        _set(node[head], rest, evil)
    elif isinstance(node[head], list):
        node[head] = [evil if not isinstance(item, dict) else item for item in node[head]] or [evil]
    else:
        node[head] = evil


def stub_bin(folder: Path) -> Path:
    folder.mkdir()
    for name in STUBS:
        (folder / name).write_text('#!/bin/sh\nprintf "%s\\0" "$0" "$@" >> "$STUB_LOG"\n')
    (folder / "scontrol").write_text('#!/bin/sh\nprintf "%s\\0" "$0" "$@" >> "$STUB_LOG"\n'
                                    '[ "$1 $2" = "show hostnames" ] && echo localhost\nexit 0\n')
    for exe in folder.iterdir():
        exe.chmod(0o755)
    return folder


def run_script(script: str, sandbox: Path, stubs: Path) -> subprocess.CompletedProcess:
    """The whole job script under bash with Slurm's variables set and every Slurm command stubbed."""
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(sandbox), "STUB_LOG": str(sandbox / "stub.log"),
           "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "localhost", "SLURM_CPUS_PER_TASK": "2",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_ARRAY_JOB_ID": "42", "SLURM_ARRAY_TASK_ID": "0"}
    return subprocess.run(["bash", "-c", script], cwd=sandbox, env=env, capture_output=True, text=True, timeout=60)


def scripts(cfg: Any, cluster: Any, tmp: Path, invocation: str = "launch slurm train") -> list[str]:
    """The sbatch scripts of a distributed step (train on 2 nodes with GPUs) and of a job array (clean)."""
    jobs = [*stage_jobs("train", cfg, tmp / "config.yaml", invocation, 2, 2),
            *stage_jobs("clean", cfg, tmp / "config.yaml", invocation, 1, 0)]
    return [render(job, cfg, cluster, workdir=tmp) for job in jobs]


def assert_inert(texts: list[str], tmp: Path, canary: Path, what: str) -> None:
    sandbox = tmp / "sandbox"
    sandbox.mkdir(exist_ok=True)
    stubs = tmp / "bin" if (tmp / "bin").is_dir() else stub_bin(tmp / "bin")
    for text in texts:
        check = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
        assert check.returncode == 0, f"{what}: script does not parse: {check.stderr}"
        # sbatch refuses a script with a carriage return anywhere ("DOS line breaks"), quoted or not.
        bad = [line for line in text.split("\n") if not line.isprintable()]
        assert not bad, f"{what}: a script line holds a control character: {bad[0]!r}"
        result = run_script(text, sandbox, stubs)
        assert not canary.exists(), f"{what}: the script ran a command from the config value\n{result.stderr}"
        assert result.returncode == 0, f"{what}: script failed\n{result.stdout}\n{result.stderr}"


@pytest.fixture()
def base_config(tmp_path: Path) -> dict:
    cfg = load_config(REPO_ROOT / "configs/experiments/quickstart.yaml",
                      ["hardware=cpu", f"run.dir={tmp_path / 'run'}", "hardware.env.SAFE_VALUE=1"])
    return to_container(cfg)


def test_every_config_value_is_inert_in_the_script(tmp_path: Path, base_config: dict) -> None:
    canary = tmp_path / "canary"
    evil = payload(canary)
    cluster = load_cluster("local")
    outcomes = {"refused": 0, "rendered": 0}
    for path in leaves(base_config):
        what = ".".join(str(p) for p in path)
        try:
            cfg = compose(with_hostile(base_config, path, evil), root=REPO_ROOT / "configs")
            texts = scripts(cfg, cluster, tmp_path)
        except ConfigError:
            outcomes["refused"] += 1
            continue
        assert_inert(texts, tmp_path, canary, what)
        outcomes["rendered"] += 1
    assert outcomes["rendered"] > 60 and outcomes["refused"] > 20, outcomes


def test_every_cluster_profile_value_is_inert_in_the_script(tmp_path: Path, base_config: dict) -> None:
    canary = tmp_path / "canary"
    evil = payload(canary)
    cfg = compose(base_config, root=REPO_ROOT / "configs")
    outcomes = {"refused": 0, "rendered": 0}
    for runtime in ("apptainer", "pyxis"):
        site = {**SITE_PROFILE, "container": {**SITE_PROFILE["container"], "runtime": runtime}}
        for path in leaves(site):
            if path[:1] == ("setup",):
                continue  # shell lines by design; the script says so beside them
            profile = tmp_path / "site.yaml"
            profile.write_text(yaml.safe_dump(with_hostile(site, path, evil)), encoding="utf-8")
            what = f"{runtime}: " + ".".join(str(p) for p in path)
            try:
                texts = scripts(cfg, load_cluster(str(profile)), tmp_path)
            except ConfigError:
                outcomes["refused"] += 1
                continue
            assert_inert(texts, tmp_path, canary, what)
            outcomes["rendered"] += 1
        # The profile's name comes from its file unless it sets one; either way it is a plain word.
        profile = tmp_path / "site.yaml"
        profile.write_text(yaml.safe_dump({**site, "name": evil}), encoding="utf-8")
        with pytest.raises(ConfigError, match="name"):
            load_cluster(str(profile))
    assert outcomes["rendered"] > 10 and outcomes["refused"] > 5, outcomes


def test_invocation_and_run_name_stay_in_their_comments(tmp_path: Path, base_config: dict) -> None:
    canary = tmp_path / "canary"
    evil = payload(canary)
    cfg = compose(with_hostile(base_config, ("run", "name"), evil), root=REPO_ROOT / "configs")
    assert_inert(scripts(cfg, load_cluster("local"), tmp_path, invocation=f"launch slurm train {evil}"),
                 tmp_path, canary, "invocation")


def test_values_arrive_intact(tmp_path: Path, base_config: dict) -> None:
    """Quoting keeps the value: an exported variable and the interpreter path reach the step unchanged."""
    evil = payload(tmp_path / "canary")
    tree = with_hostile(base_config, ("hardware", "env", "SAFE_VALUE"), evil)
    cfg = compose(tree, root=REPO_ROOT / "configs")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({**SITE_PROFILE, "python": f"/opt/py {evil}"}), encoding="utf-8")
    text = scripts(cfg, load_cluster(str(site)), tmp_path)[0]
    text = text.replace("run_step train srun", f'printf "%s" "$SAFE_VALUE" > {tmp_path}/value.txt; run_step train srun')
    stubs = stub_bin(tmp_path / "bin")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    assert run_script(text, sandbox, stubs).returncode == 0
    assert (tmp_path / "value.txt").read_bytes().decode() == evil
    srun_args = (sandbox / "stub.log").read_bytes().decode().split("\0")
    assert f"/opt/py {evil}" in srun_args
    assert not (tmp_path / "canary").exists()
    lines = text.splitlines()
    setup_at = lines.index("true")  # the profile's one setup line, written as it is
    assert "shell commands by design" in " ".join(lines[setup_at - 2: setup_at])
