"""Config composition, overrides, hashing and every error path a user can hit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from triglot.config import ConfigError, compose, config_hash, load_config, save_config
from triglot.config.loader import find_config_root

QUICKSTART = "configs/experiments/quickstart.yaml"


def test_composition_layers_in_order(repo_root: Path) -> None:
    cfg = load_config(repo_root / QUICKSTART)
    # group file (configs/model/tiny.yaml) over schema defaults
    assert cfg.model.name == "tiny" and cfg.model.hidden_size == 64
    # experiment over group files and defaults
    assert cfg.run.name == "quickstart"
    assert cfg.run.dir == "runs/quickstart"  # interpolation resolved
    # hardware: auto resolves to the detected profile
    assert cfg.hardware.name == "cpu"


def test_dotted_and_group_overrides(repo_root: Path) -> None:
    cfg = load_config(repo_root / QUICKSTART, ["train.lr=0.001", "model=125m", "run.name=other"])
    assert cfg.train.lr == pytest.approx(0.001)
    assert cfg.model.name == "125m" and cfg.model.hidden_size == 768
    assert cfg.run.dir == "runs/other"


def test_hash_is_stable_and_tracks_changes(repo_root: Path, tmp_path: Path) -> None:
    a = load_config(repo_root / QUICKSTART)
    b = load_config(repo_root / QUICKSTART)
    c = load_config(repo_root / QUICKSTART, ["train.lr=0.001"])
    assert config_hash(a) == config_hash(b) != config_hash(c)
    saved = save_config(c, tmp_path / "config.yaml")
    assert config_hash(load_config(saved)) == config_hash(c)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lrr=0.001", "train.lr"),
        ("trian.lr=1", "'train'"),
        ("train.hidden_size=8", "model.hidden_size"),
    ],
)
def test_unknown_key_names_nearest(repo_root: Path, override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="unknown config key") as err:
        load_config(repo_root / QUICKSTART, [override])
    assert expected in str(err.value)


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("run:\n  nmae: x\n")
    with pytest.raises(ConfigError, match=r"run\.nmae.*did you mean 'run\.name'"):
        load_config(exp)


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.lr=abc", "train.lr", "float"),
        ("run.seed=1.5", "run.seed", "int"),
        ("hardware.precision=fp8", "hardware.precision", "one of fp32, fp16, bf16"),
        ("tracking.mode=loud", "tracking.mode", "one of auto, online, offline, disabled"),
    ],
)
def test_wrong_type_names_key_value_and_type(repo_root: Path, override: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(repo_root / QUICKSTART, [override])
    message = str(err.value)
    assert key in message and override.split("=")[1] in message and expected in message


def test_unknown_group_file_suggests(repo_root: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load_config(repo_root / QUICKSTART, ["model=tny"])


def test_malformed_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        compose({}, ["train.lr"])
    with pytest.raises(ConfigError, match="cannot parse overrides"):
        compose({}, ["run.name='; rm -rf ~ #"])


def test_every_shipped_yaml_validates(repo_root: Path) -> None:
    root = find_config_root(repo_root / QUICKSTART)
    for group in ("model", "hardware", "data"):
        files = sorted((root / group).glob("*.yaml"))
        assert files, f"no {group} configs shipped"
        for file in files:
            cfg = compose({"defaults": {group: file.stem}})
            assert cfg[group].name == file.stem
    for exp in sorted((root / "experiments").glob("*.yaml")):
        load_config(exp)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triglot", *args], capture_output=True, text=True, timeout=120)


def test_cli_config_show_override_and_error(repo_root: Path) -> None:
    ok = _cli("config", "show", QUICKSTART, "train.lr=0.001")
    assert ok.returncode == 0, ok.stderr
    assert "lr: 0.001" in ok.stdout and "config hash:" in ok.stdout
    bad = _cli("config", "show", QUICKSTART, "train.lrr=0.001")
    assert bad.returncode == 2
    assert "train.lr" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_overrides_after_options(repo_root: Path) -> None:
    from triglot.cli import parse_args

    args = parse_args(["eval", QUICKSTART, "train.lr=0.1", "--checkpoint", "ckpt", "train.seq_len=64"])
    assert args.checkpoint == "ckpt" and args.overrides == ["train.lr=0.1", "train.seq_len=64"]
    with pytest.raises(SystemExit):
        parse_args(["config", "show", QUICKSTART, "--bogus"])
    with pytest.raises(SystemExit):
        parse_args(["hardware", "train.lr=1"])


def test_override_into_a_list_item(repo_root: Path) -> None:
    cfg = load_config(repo_root / QUICKSTART, ["data.sources.0.language=yue"])
    assert cfg.data.sources[0].language == "yue"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(repo_root / QUICKSTART, ["data.sources.99.language=yue"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(repo_root / QUICKSTART, ["data.sources.0.formatt=jsonl"])


@pytest.mark.parametrize("override, key", [
    ("train.steps=0", "train.steps"), ("train.steps=-5", "train.steps"),
    ("train.global_batch_size=0", "train.global_batch_size"), ("train.micro_batch_size=-1", "train.micro_batch_size"),
    ("train.micro_batch_sizes=[4,0]", "train.micro_batch_sizes"), ("train.seq_len=0", "train.seq_len"),
    ("train.lr=0", "train.lr"), ("run.nproc_per_node=0", "run.nproc_per_node"), ("launch.nodes=0", "launch.nodes"),
    ("model.num_layers=0", "model.num_layers"), ("sft.train.steps=-1", "sft.train.steps"),
])
def test_impossible_numbers_are_refused_when_the_config_loads(repo_root: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(repo_root / QUICKSTART, [override])


def test_zero_means_default_where_the_schema_says_so(repo_root: Path) -> None:
    cfg = load_config(repo_root / QUICKSTART, ["train.micro_batch_size=0", "train.checkpoint.every=0"])
    assert cfg.train.micro_batch_size == 0


@pytest.mark.parametrize("attention", ["flex_attention", "flash_attention_2"])
def test_gpu_only_attention_is_refused_on_a_cpu_profile(repo_root: Path, attention: str) -> None:
    with pytest.raises(ConfigError, match=rf"hardware\.attention = {attention} needs a GPU.*use hardware\.attention=sdpa"):
        load_config(repo_root / QUICKSTART, ["hardware=cpu", f"hardware.attention={attention}"])
    cfg = load_config(repo_root / QUICKSTART, ["hardware=nvidia-h100", f"hardware.attention={attention}"])
    assert cfg.hardware.attention.value == attention


def test_flash_attention_without_flash_attn_is_a_config_error(repo_root: Path) -> None:
    import importlib.util

    from triglot.train.model import attention_implementation

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    cfg = load_config(repo_root / QUICKSTART, ["hardware=nvidia-h100", "hardware.attention=flash_attention_2"])
    with pytest.raises(ConfigError, match="flash_attention_2 needs the flash-attn package"):
        attention_implementation(cfg.hardware)
    cfg = load_config(repo_root / QUICKSTART, ["hardware=nvidia-h100", "hardware.attention=flex_attention"])
    assert attention_implementation(cfg.hardware) == "flex_attention"


@pytest.mark.parametrize("body, message", [
    (b"\xff\xfe\x00bad", r"not UTF-8 text"),
    (b"x: &a [*a]\n", r"a YAML alias refers to itself"),
    (b"defaults: tiny\n", r"defaults \(.*\) is 'tiny'; write it as a mapping"),
    (b"defaults: {modle: 125m}\n", r"defaults\.modle .* is not a config group; did you mean 'model'\?"),
    (b"defaults: {model: 1}\n", r"defaults\.model .* is 1; name a file of configs/model/"),
    (b"data: {sources: {a: 1}}\n", r"config key 'data\.sources' is a mapping; it must be a list"),
    (b"train: {mixture: [en]}\n", r"config key 'train\.mixture' is a list; it must be a mapping"),
    (b"train: 5\n", r"config key 'train' \(.*\) is 5; it must be a mapping of settings"),
    (b"data: {sources: [{paths: [/x.jsonl]}]}\n", r"config key 'data\.sources\[0\]\.name' .* is required"),
    (b"run: {stages: [[train]]}\n", r"run\.stages\[0\]"),
])
def test_malformed_experiment_files_name_what_is_wrong(tmp_path: Path, body: bytes, message: str) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_bytes(body)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_folder_given_as_the_config_and_bad_command_line_shapes(tmp_path: Path, repo_root: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a YAML config file"):
        load_config(tmp_path / "dir.yaml")
    for override, message in [("train.lr=${", "cannot parse overrides"),
                              ("data.sources.a.format=x", r"'data\.sources' is a mapping; it must be a list"),
                              ("train.optimizer=3", r"'train\.optimizer' \(command line\) is 3; it must be a mapping")]:
        with pytest.raises(ConfigError, match=message):
            load_config(repo_root / QUICKSTART, [override])


@pytest.mark.parametrize("override, message", [
    ("data.rows_per_part=0", r"data\.rows_per_part = 0 is impossible"),
    ("data.unit_bytes=0", r"data\.unit_bytes = 0 is impossible"),
    ("tokenizer.vocab_size=99999999999", r"tokenizer\.vocab_size = 99999999999 is too large"),
    ("run.seed=-1", r"run\.seed = -1 is impossible"),
    ("run.seed=99999999999999999999999", r"run\.seed = .* is too large"),
    ("train.optimizer.betas=[0.9]", r"train\.optimizer\.betas = \[0\.9\]: give two numbers"),
    ("train.lr=inf", r"train\.lr = inf is impossible: use a finite value above 0"),
    ("train.val_fraction=2", r"train\.val_fraction = 2\.0 is impossible"),
    ("train.mixture={en: -1.0}", r"train\.mixture\.en = -1\.0"),
    ("eval.batch_size=-1", r"eval\.batch_size = -1 is impossible"),
    ("sft.train.lr=-1", r"sft\.train\.lr = -1 is impossible"),
    ("dpo.train.steps=-1", r"dpo\.train\.steps = -1 is impossible"),
    ("tokenizer.character_coverage=2", r"tokenizer\.character_coverage = 2"),
])
def test_values_that_would_fail_mid_stage_are_refused_when_the_config_loads(repo_root: Path, override: str,
                                                                             message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(repo_root / QUICKSTART, ["tokenizer.backend=sentencepiece", override])


@pytest.mark.parametrize("override, message", [
    ("train.deepspeed={zero_optimization: [1]}", r"train\.deepspeed\.zero_optimization = \[1\]: DeepSpeed reads a mapping"),
    ("train.deepspeed={optimizer: 5}", r"train\.deepspeed\.optimizer = 5: DeepSpeed reads a mapping"),
    ("train.deepspeed={zero_optimization: {offload_optimizer: cpu}}",
     r"train\.deepspeed\.zero_optimization\.offload_optimizer = 'cpu'"),
    ("train.deepspeed={train_batch_size: 7}", r"triglot sets train_batch_size from train\.global_batch_size"),
])
def test_deepspeed_sections_that_deepspeed_cannot_read_are_refused(repo_root: Path, override: str,
                                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(repo_root / QUICKSTART, [override])
    load_config(repo_root / QUICKSTART, ["train.deepspeed={zero_optimization: {reduce_bucket_size: 1000}}"])


def test_output_folders_that_can_never_be_made_are_refused(tmp_path: Path, repo_root: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for override, message in [
        (f"run.dir={tmp_path / 'afile'}", r"run\.dir = .*afile is a file, not a folder"),
        (f"eval.output_dir={tmp_path / 'afile' / 'x'}", r"eval\.output_dir = .*afile is a file, not a folder"),
        (f"run.dir={tmp_path / ('a' * 300)}", r"run\.dir = .*longer than the 255 bytes"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(repo_root / QUICKSTART, [override])
    load_config(repo_root / QUICKSTART, [f"run.dir={tmp_path / 'not' / 'yet'}"])  # made by the stage


def test_a_stage_folder_the_stage_cannot_write_is_a_user_error(tmp_path: Path, repo_root: Path) -> None:
    """What only shows when the stage writes (here data/ is a file inside run.dir) exits 2, naming the file."""
    from triglot.testing import test_env

    (tmp_path / "data").write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "triglot", "data", "clean", str(repo_root / QUICKSTART),
                           "hardware=cpu", f"run.dir={tmp_path}", "data.workers=1"],
                          cwd=repo_root, env=test_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if "triglot: cannot write" in line]
    assert f"cannot write {tmp_path / 'data'}" in line and "Not a directory" in line
