"""Sweep files: expansion (grid, list, random), configs with hashes in the sweep folder, skipping finished runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from triglot.launch.sweep import expand, load_sweep, run_sweep, write_sweep
from triglot.launch.sweep_files import DONE_MARKER

from triglot.config import config_hash, load_config
from triglot.errors import ConfigError


def sweep_file(tmp_path: Path, helpers, **body) -> Path:
    spec = {"name": "s", "base": "configs/experiments/quickstart.yaml", "dir": str(tmp_path / "sweep"),
            "overrides": ["hardware=cpu"], **body}
    return helpers.write_yaml(tmp_path / "sweep.yaml", spec)


def array_config(script: str, task: int) -> str:
    """The config an array task reads: the script's CONFIGS block and CONFIG line run by bash for that task."""
    start = script.index("CONFIGS=(")
    end = script.index("\n", script.index("\nCONFIG=", start) + 1)
    proc = subprocess.run(["bash", "-c", f'set -u\n{script[start:end]}\nprintf %s "$CONFIG"'], capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": str(task)})
    return proc.stdout if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()}"


def test_shipped_sweeps_load_and_expand(repo_root: Path) -> None:
    files = sorted((repo_root / "configs" / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        assert expand(load_sweep(path))


def test_grid_list_and_random(tmp_path: Path, helpers) -> None:
    grid = load_sweep(sweep_file(tmp_path, helpers, parameters={"train.lr": [0.1, 0.2], "model.hidden_size": [32, 64]}))
    assert expand(grid) == [{"train.lr": a, "model.hidden_size": b} for a in (0.1, 0.2) for b in (32, 64)]
    listed = load_sweep(sweep_file(tmp_path, helpers, method="list", runs=[{"train.lr": 0.5}, {"train.steps": 7}]))
    assert expand(listed) == [{"train.lr": 0.5}, {"train.steps": 7}]
    rand = load_sweep(sweep_file(tmp_path, helpers, method="random", samples=5, seed=3,
                                 parameters={"train.lr": {"min": 1e-4, "max": 1e-2, "log": True},
                                             "train.warmup_steps": [0, 10]}))
    points = expand(rand)
    assert len(points) == 5 and points == expand(rand)  # seeded: the same draws every time
    assert all(1e-4 <= p["train.lr"] <= 1e-2 and p["train.warmup_steps"] in (0, 10) for p in points)


def test_bad_sweeps_are_config_errors(tmp_path: Path, helpers) -> None:
    with pytest.raises(ConfigError, match="method"):
        load_sweep(sweep_file(tmp_path, helpers, method="bayes"))
    with pytest.raises(ConfigError, match="stage"):
        load_sweep(sweep_file(tmp_path, helpers, stages=["trian"]))
    with pytest.raises(ConfigError, match="train.lrr"):
        write_sweep(load_sweep(sweep_file(tmp_path, helpers, parameters={"train.lrr": [1, 2]})))


def test_written_configs_group_tags_and_skip(tmp_path: Path, helpers) -> None:
    path = sweep_file(tmp_path, helpers, parameters={"train.lr": [0.001, 0.003], "model.hidden_size": [32, 64]})
    root, runs = write_sweep(load_sweep(path))
    assert len(runs) == 4 and len({r["hash"] for r in runs}) == 4
    listed = (root / "configs.txt").read_text().splitlines()
    assert listed == [r["config"] for r in runs]
    for run in runs:
        cfg = load_config(run["config"])
        values = run["values"]
        assert Path(run["run_dir"]).name == f"lr={values['train.lr']}_hidden_size={values['model.hidden_size']}-" \
            f"{run['hash'][:8]}"
        assert Path(run["config"]) == Path(run["run_dir"]).resolve() / "configs" / f"{config_hash(cfg)}.yaml"
        assert cfg.tracking.group == "s" and "sweep:s" in cfg.tracking.tags
        assert f"train.lr={run['values']['train.lr']}" in cfg.tracking.tags
        assert cfg.train.lr == run["values"]["train.lr"] and cfg.model.hidden_size == run["values"]["model.hidden_size"]
    # A finished run (its marker holds its hash) is left out of the next submission.
    (Path(runs[1]["run_dir"]) / DONE_MARKER).write_text(runs[1]["hash"] + "\n")
    before = {p: p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}
    summary = run_sweep(path, dry_run=True)
    assert {p: p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))} == before
    assert summary["tasks"] == [0, 2, 3] and summary["finished_before"] == 1
    lines = summary["table"].splitlines()
    assert lines[0].split() == ["index", "overrides", "run", "folder", "state"]
    assert lines[2].split() == ["001", "train.lr=0.001", "model.hidden_size=64", runs[1]["run_dir"], "finished"]
    script = summary["script_text"]
    assert "#SBATCH --array=0,2,3" in script
    assert {task: array_config(script, task) for task in (0, 2, 3)} == {
        task: str(Path(runs[task]["config"]).resolve()) for task in (0, 2, 3)}
    manifest = json.loads((root / "sweep.json").read_text())
    assert manifest["varied"] == ["model.hidden_size", "train.lr"] and manifest["group"] == "s"


@pytest.mark.distributed
def test_local_sweep_runs_here_and_tabulates(tmp_path: Path, helpers, packed_dir: Path) -> None:
    path = sweep_file(tmp_path, helpers, method="list", runs=[{"train.lr": 0.002}], overrides=[
        f"train.data_dir={packed_dir}", "train.steps=2", "train.seq_len=32", "train.checkpoint.every=2",
        "train.checkpoint.export_hf=false", "hardware=cpu", "run.nproc_per_node=1", "tracking.mode=offline"])
    summary = run_sweep(path, local=True)
    assert summary["ran"] == [0]
    [row] = summary["results"]["rows"]
    assert row["status"] == "finished" and isinstance(row["final_loss"], float)
    assert (tmp_path / "sweep" / "results.md").read_text().count("finished") == 1
    assert run_sweep(path, local=True)["ran"] == []  # finished configs are skipped


def test_dry_run_prints_a_table_and_writes_nothing(tmp_path: Path, helpers) -> None:
    import subprocess
    import sys

    from triglot.testing import REPO_ROOT
    from triglot.testing import test_env as run_env

    path = sweep_file(tmp_path, helpers, parameters={"train.lr": [0.003], "model.hidden_size": [128]})
    proc = subprocess.run([sys.executable, "-m", "triglot", "sweep", str(path), "--dry-run"], cwd=REPO_ROOT,
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header, row, *script, note = proc.stdout.strip().splitlines()
    assert script[1] == "#!/bin/bash" and "#SBATCH --array=0" in script  # the array script, to read first
    assert header.split() == ["index", "overrides", "run", "folder", "state"]
    index, lr, width, folder, *state = row.split()
    assert (index, lr, width, " ".join(state)) == ("000", "train.lr=0.003", "model.hidden_size=128", "to run")
    assert Path(folder).name.startswith("lr=0.003_hidden_size=128-")
    assert note.startswith("# dry run: nothing written or submitted; 1 of 1 runs")
    assert not (tmp_path / "sweep").exists()


def test_each_array_task_gets_its_own_config_and_resources(tmp_path: Path, helpers) -> None:
    """Runs that differ in launch settings go into separate arrays, each with its runs' resources and list."""
    path = sweep_file(tmp_path, helpers, parameters={"train.lr": [0.001, 0.003],
                                                     "launch.time": ["00:10:00", "05:00:00"]})
    root, runs = write_sweep(load_sweep(path))
    (Path(runs[0]["run_dir"]) / DONE_MARKER).write_text(runs[0]["hash"] + "\n")
    summary = run_sweep(path, dry_run=True)
    texts = ["#!/bin/bash" + text for text in summary["script_text"].split("#!/bin/bash")[1:]]
    assert len(texts) == len(summary["scripts"]) == 2
    arrays = {}
    for text in texts:
        limit = re.search(r"^#SBATCH --time=(\S+)$", text, re.MULTILINE).group(1)
        tasks = [int(i) for i in re.search(r"^#SBATCH --array=(\S+)$", text, re.MULTILINE).group(1).split(",")]
        arrays[limit] = tasks
        for task in tasks:
            assert array_config(text, task) == str(Path(runs[task]["config"]).resolve())
            assert load_config(runs[task]["config"]).launch.time == limit
        assert array_config(text, 0).startswith("exit ")  # a task the array does not hold has no config
    assert arrays == {"00:10:00": [2], "05:00:00": [1, 3]}


def test_sweep_parameter_names_and_folder_are_checked(tmp_path: Path, helpers) -> None:
    with pytest.raises(ConfigError, match="'run.name=x' is not a dotted config key"):
        load_sweep(sweep_file(tmp_path, helpers, parameters={"run.name=x": [1]}))
    with pytest.raises(ConfigError, match=r"sweep folder .*set dir: to a path"):
        run_sweep(sweep_file(tmp_path, helpers, dir=str(tmp_path / "two words"), parameters={"train.lr": [0.1]}),
                  dry_run=True)


@pytest.mark.parametrize(("values", "message"), [
    ({"max": 0.1}, r"parameters\.train\.lr: a random range needs min and max"),
    ({"min": 0.1, "max": 0.2, "step": 1}, r"parameters\.train\.lr: a random range needs min and max \(unknown key 'step'\)"),
    ({"min": -1, "max": 0.1, "log": True}, r"parameters\.train\.lr: a log range needs min > 0"),
    ({"min": "abc", "max": 0.1}, r"parameters\.train\.lr\.min: 'abc' is not a finite number"),
    ({"min": 0.1, "max": float("nan")}, r"parameters\.train\.lr\.max: nan is not a finite number"),
    ({"min": 0.2, "max": 0.1}, r"parameters\.train\.lr: min 0\.2 is above max 0\.1"),
    ({"min": 0.1, "max": 0.2, "log": "yes"}, r"parameters\.train\.lr\.log: must be true or false"),
    (0.1, r"parameters\.train\.lr: a random sweep needs a non-empty list of values or \{min: , max: \}"),
    ([], r"parameters\.train\.lr: a random sweep needs a non-empty list"),
])
def test_random_parameter_specs_are_checked_naming_file_and_key(tmp_path: Path, helpers, values, message) -> None:
    path = sweep_file(tmp_path, helpers, method="random", samples=2, parameters={"train.lr": values})
    with pytest.raises(ConfigError, match=message) as info:
        load_sweep(path)
    assert str(info.value).startswith(f"{path}: ")


def test_random_ranges_written_as_yaml_text_still_draw(tmp_path: Path, helpers) -> None:
    """PyYAML reads 1e-4 as a string; a range written so has always worked and keeps working."""
    path = sweep_file(tmp_path, helpers, method="random", samples=3, parameters={"train.lr": {"min": "1e-4",
                                                                                             "max": "1e-2",
                                                                                             "log": True}})
    assert all(1e-4 <= p["train.lr"] <= 1e-2 for p in expand(load_sweep(path)))


def test_parameters_as_a_list_and_runs_that_are_not_mappings_name_the_key(tmp_path: Path, helpers) -> None:
    path = sweep_file(tmp_path, helpers, parameters=["train.lr"])
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: parameters must be a mapping of dotted key"):
        load_sweep(path)
    path = sweep_file(tmp_path, helpers, method="list", runs=[{"train.lr": 0.1}, 2])
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: runs\[1\] must be a mapping .* got 2"):
        load_sweep(path)
    path = sweep_file(tmp_path, helpers, method="grid", parameters={"train.lr": 0.1})
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: parameters\.train\.lr: a grid needs"):
        load_sweep(path)


def _triglot(*args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "triglot", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"})


def test_cli_bad_random_sweep_exits_2_with_one_line(tmp_path: Path, helpers) -> None:
    path = sweep_file(tmp_path, helpers, method="random", samples=2, parameters={"train.lr": {"max": 0.1}})
    proc = _triglot("sweep", str(path), "--dry-run", "launch.cluster=local")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"triglot: config error: {path}: parameters.train.lr: a random range needs min and max; write a non-empty "
        "list of values or {min: , max: } (add log: true for log-uniform)"]


@pytest.mark.parametrize("nproc", ["-1", "0"])
def test_launch_local_refuses_nproc_below_one(tmp_path: Path, nproc: str) -> None:
    """`--nproc -1` reached torch elastic's assert; `--nproc 0` silently fell back to run.nproc_per_node."""
    proc = _triglot("launch", "local", "train", "configs/experiments/quickstart.yaml", "--nproc", nproc, "--dry-run",
                    "hardware=cpu", f"run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"triglot: config error: --nproc is {nproc}; it must be 1 or more (leave it out to use run.nproc_per_node)"]


def test_launch_local_without_nproc_uses_run_nproc_per_node(tmp_path: Path) -> None:
    proc = _triglot("launch", "local", "train", "configs/experiments/quickstart.yaml", "--dry-run", "hardware=cpu",
                    "run.nproc_per_node=3", f"run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--nproc-per-node=3" in proc.stdout
