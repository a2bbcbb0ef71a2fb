"""Render a readable sbatch script for a triglot job from launch/templates/job.sbatch.j2.

Values from configs are shell-quoted (`shell_quote`); values that must sit on `#SBATCH` lines are checked instead.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from triglot.launch.clusters import job_python
from triglot.launch.comm import ENV_NAME, comm_env, library_name
from triglot.launch.torchrun import Var, torchrun_argv, triglot_target

from triglot.errors import ConfigError

TEMPLATE_DIR = Path(__file__).parent / "templates"
# What may appear in a `#SBATCH` value: sbatch reads those lines itself, without a shell, so quoting is no help.
# Patterns are applied with fullmatch: `^...$` with re.match would let a trailing newline through.
SBATCH_SAFE = re.compile(r"[A-Za-z0-9_.,:/%@+=-]+", re.ASCII)
TIME_FORMAT = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}")
# A launch.sbatch_args entry: one option, long (--name or --name=value) or short (-X or -Xvalue).
SBATCH_OPTION = re.compile(r"(--[A-Za-z][A-Za-z0-9-]*(=.+)?|-[A-Za-z].*)", re.ASCII)
# Options the script sets itself from other keys, or that change what kind of job it is.
SBATCH_OWN = {"--job-name": "run.name", "-J": "run.name", "--output": "run.dir", "-o": "run.dir",
              "--error": "run.dir", "-e": "run.dir", "--open-mode": "", "--array": "the sweep", "-a": "the sweep",
              "--dependency": "launch slurm's job chain", "-d": "launch slurm's job chain", "--signal": "launch.signal_lead_s",
              "--nodes": "launch.nodes", "-N": "launch.nodes", "--time": "launch.time", "-t": "launch.time",
              "--partition": "launch.partition", "-p": "launch.partition", "--mem": "launch.mem",
              "--ntasks-per-node": "", "--cpus-per-task": "launch.cpus_per_rank", "-c": "launch.cpus_per_rank",
              "--requeue": "launch.requeue", "--no-requeue": "launch.requeue"}


CONFIG_VAR = Var("$CONFIG")


@dataclass
class Step:
    name: str
    args: list[str]  # `triglot` arguments; Var items expand in the shell
    comment: str
    distributed: bool = False  # torchrun on every node of the allocation, else one process


@dataclass
class JobSpec:
    """One sbatch job: where it runs, how big it is, and the triglot steps it runs in order."""

    name: str
    run_dir: Path  # logs/ and jobs/ go below it
    steps: list[Step]
    invocation: str
    config: str = ""  # the resolved config the steps read (one config per job) ...
    configs: dict[int, str] = field(default_factory=dict)  # ... or, for an array, each task's config
    array: str = ""  # e.g. "0-3" or "0,2,3"
    nodes: int = 1
    ranks_per_node: int = 1
    gpus_per_node: int = 0
    dependency: str = ""  # e.g. "afterok:123"
    extra_vars: dict[str, str] = field(default_factory=dict)


def shell_quote(value: Any) -> str:
    """`value` as one shell word that bash reads back byte for byte, on one line of printable text.

    Printable text is single-quoted (shlex.quote). A value with a control character (newline, carriage return,
    tab, ...) is written in bash's $'...' form with those characters escaped, so no script line carries a raw
    carriage return (sbatch refuses such scripts) or breaks in two. NUL cannot be passed through a shell at all.
    """
    text = str(value)
    if "\0" in text:
        raise ConfigError(f"the value {text!r} holds a NUL character, which no shell script can pass on; remove it")
    if text.isprintable():
        return shlex.quote(text)
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("".join(f"\\x{byte:02x}" for byte in ch.encode("utf-8")))
    return "$'" + "".join(out) + "'"


def shell_word(arg: Any) -> str:
    if isinstance(arg, Var):
        return f'"{arg}"'
    return shell_quote(arg)


def shell_line(words: list[Any], indent: str = "    ", width: int = 110) -> str:
    """Shell words on continued lines of at most about `width` characters, for a readable script."""
    lines, line = [], ""
    for word in (shell_word(w) for w in words):
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line else word
    return " \\\n".join([*lines, line])


def rank_command(step: Step, cfg: Any) -> str:
    """The torchrun command of a distributed step, as every node of the allocation runs it."""
    launch = cfg.launch
    argv = torchrun_argv(Var("$RANKS_PER_NODE"), triglot_target(step.args), nnodes=Var("$SLURM_JOB_NUM_NODES"),
                         node_rank=None, master_addr=Var("$MASTER_ADDR"), master_port=Var("$MASTER_PORT"),
                         rendezvous_timeout_s=int(launch.rendezvous_timeout_s),
                         stop_timeout_s=int(launch.stop_timeout_s), forward_signals=True, python=Var("$PYTHON"))
    return shell_line(argv)


def sbatch_value(key: str, value: Any) -> str:
    text = str(value)
    if not SBATCH_SAFE.fullmatch(text):
        raise ConfigError(
            f"{key} = {text!r} cannot be written on an #SBATCH line (allowed: letters, digits and _.,:/%@+=-); "
            "choose a value without spaces or quotes"
        )
    return text


def comment_text(value: Any) -> str:
    """`value` on one line: control characters (newline, carriage return, NUL, ...) become spaces."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return " ".join(text.split())


def job_name(text: str) -> str:
    """A Slurm job name made from a run name: safe characters only, at most 64 of them."""
    return (re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "triglot")[:64]


def sbatch_lines(spec: JobSpec, cfg: Any, cluster: Any) -> list[str]:
    """The `#SBATCH` options: resources from the launch section, site settings from the cluster profile."""
    launch = cfg.launch
    if not TIME_FORMAT.fullmatch(str(launch.time)):
        raise ConfigError(f"launch.time = {launch.time!r} is not a Slurm time (e.g. 01:00:00 or 2-00:00:00)")
    log_dir = spec.run_dir.resolve() / "logs"
    log_name = "%x-%A_%a.out" if spec.array else "%x-%j.out"
    lines = [
        f"--job-name={job_name(spec.name)}",
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={max(1, spec.ranks_per_node * int(launch.cpus_per_rank))}",
        f"--time={launch.time}",
        # Slurm expands %j, %x, ... anywhere in the path: a literal % in the folder is written %%.
        f"--output={sbatch_value('run.dir', log_dir).replace('%', '%%')}/{log_name}",
        "--open-mode=append",
        f"--signal=B:USR1@{int(launch.signal_lead_s)}",
    ]
    if launch.requeue:
        lines.append("--requeue")
    partition = launch.partition or cluster.partition
    for key, option, value in (("launch.partition", "partition", partition), ("account", "account", cluster.account),
                               ("qos", "qos", cluster.qos), ("constraint", "constraint", cluster.constraint),
                               ("launch.mem", "mem", launch.mem)):
        if value:
            lines.append(f"--{option}={sbatch_value(key, value)}")
    if spec.gpus_per_node and cluster.gpu_request == "gres":
        lines.append(f"--gres={sbatch_value('gres_name', cluster.gres_name)}:{spec.gpus_per_node}")
    elif spec.gpus_per_node and cluster.gpu_request == "gpus":
        lines.append(f"--gpus-per-node={spec.gpus_per_node}")
    if spec.array:
        limit = f"%{launch.array_parallelism}" if launch.array_parallelism else ""
        lines.append(f"--array={sbatch_value('array', spec.array)}{limit}")
    if spec.dependency:
        lines.append(f"--dependency={sbatch_value('dependency', spec.dependency)}")
    for index, arg in enumerate(launch.sbatch_args):
        lines.append(sbatch_option(f"launch.sbatch_args[{index}]", arg))
    return lines


def sbatch_option(key: str, value: Any) -> str:
    """One extra `#SBATCH` option from launch.sbatch_args: a plain option that the script does not set itself."""
    text = sbatch_value(key, value)
    if not SBATCH_OPTION.fullmatch(text):
        raise ConfigError(f"{key} = {text!r} is not an sbatch option; write it as --name=value (e.g. "
                          "--exclusive or --mail-type=END)")
    name = text.split("=", 1)[0] if text.startswith("--") else text[:2]
    if name in SBATCH_OWN:
        instead = f"; set {SBATCH_OWN[name]} instead" if SBATCH_OWN[name] else ""
        raise ConfigError(f"{key} = {text!r}: triglot writes {name} itself{instead}")
    return text


def container_parts(cluster: Any) -> tuple[str, str]:
    """(extra srun options, command prefix) that run a step inside the profile's container."""
    box = cluster.container
    if not box.image:
        return "", ""
    not_an_option(f"cluster profile '{cluster.name}' container.image", box.image)
    if box.runtime == "pyxis":
        extra = f" --container-image={shell_quote(box.image)}"
        if box.mounts:
            extra += f" --container-mounts={shell_quote(','.join(box.mounts))}"
        return extra + " --container-workdir=\"$WORKDIR\"", ""
    binds = f"--bind {shell_quote(','.join(box.mounts))} " if box.mounts else ""
    return "", f"apptainer exec {binds}{shell_quote(box.image)} "


def not_an_option(key: str, value: Any) -> None:
    """A value that becomes a command's argument must not start with `-`, or the command reads it as an option."""
    if str(value).startswith("-"):
        raise ConfigError(f"{key} = {str(value)!r} starts with '-', which the command would read as an option; "
                          "name the image or module itself")


def render(spec: JobSpec, cfg: Any, cluster: Any, workdir: Path | None = None) -> str:
    """The full sbatch script for `spec` (a heterogeneous job when it runs a distributed step with components)."""
    from triglot.launch import hetjob

    env = comm_env(cfg.hardware, cluster, int(cfg.launch.cpus_per_rank))  # checks the profiles' names
    for name in spec.extra_vars:
        if not ENV_NAME.fullmatch(name):
            raise ConfigError(f"job variable name {name!r} is not a valid shell name")
    for index, module in enumerate(cluster.modules):
        not_an_option(f"cluster profile '{cluster.name}' modules[{index}]", module)
    jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True, autoescape=False)
    jinja.filters["q"] = shell_quote
    jinja.filters["comment"] = comment_text  # nothing breaks out of a comment line
    srun_extra, prefix = container_parts(cluster)
    components = hetjob.job_components(spec, cfg, cluster)
    ranks_of = hetjob.hetjob_rank_command if components else rank_command
    steps = [{"name": s.name, "comment": s.comment, "distributed": s.distributed,
              "args": " ".join(shell_word(a) for a in s.args),
              "ranks": ranks_of(s, cfg) if s.distributed else ""} for s in spec.steps]
    lines = sbatch_lines(spec, cfg, cluster)
    het = hetjob.template_values(components, cfg) if components else {}
    run_dir = spec.run_dir.resolve()
    launch = cfg.launch
    return jinja.get_template("job.sbatch.j2").render(
        title=f"triglot job '{spec.name}': " + ", ".join(s.name for s in spec.steps),
        invocation=spec.invocation, created=time.strftime("%Y-%m-%d %H:%M:%S"),
        script_name=f"{job_name(spec.name)}.sbatch",
        sbatch_lines=hetjob.hetjob_lines(lines, components, cfg, cluster) if components else lines, het=het,
        workdir=str((workdir or Path.cwd()).resolve()), python=job_python(cluster, sys.executable),
        run_dir=str(run_dir), state_dir=str(run_dir / "jobs"), config=spec.config,
        configs=sorted(spec.configs.items()),
        nodes=spec.nodes, ranks_per_node=spec.ranks_per_node, max_requeues=int(launch.max_requeues),
        extra_vars=sorted(spec.extra_vars.items()), env=sorted(env.items()),
        library=library_name(cfg.hardware), hardware_name=cfg.hardware.name,
        cluster_name=cluster.name, modules=list(cluster.modules), setup=list(cluster.setup),
        master_port_base=int(launch.master_port_base), signal_lead_s=int(launch.signal_lead_s),
        requeue=1 if launch.requeue else 0, srun_extra=srun_extra, container_prefix=prefix,
        log_dir=str(run_dir / "logs") if spec.array else "", job_name=job_name(spec.name),
        steps=steps,
    )
