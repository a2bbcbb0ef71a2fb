"""The whole run config: one typed tree whose dataclass defaults are the only source of defaults.

Sections live beside this file, one per stage; YAML files under configs/ hold only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from triglot.config.core import HardwareSection, RunSection, TrackingSection
from triglot.config.data import DataSection
from triglot.config.dpo import DpoSection
from triglot.config.eval import EvalSection
from triglot.config.launch import LaunchSection
from triglot.config.model import ModelSection
from triglot.config.sft import SftSection
from triglot.config.tokenizer import PackSection, TokenizerSection
from triglot.config.train import TrainSection

# Sections whose value in an experiment file may be a name of a file in configs/<group>/.
CONFIG_GROUPS = ("model", "hardware", "data")


@dataclass
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    pack: PackSection = field(default_factory=PackSection)
    train: TrainSection = field(default_factory=TrainSection)
    sft: SftSection = field(default_factory=SftSection)
    dpo: DpoSection = field(default_factory=DpoSection)
    eval: EvalSection = field(default_factory=EvalSection)
    launch: LaunchSection = field(default_factory=LaunchSection)
