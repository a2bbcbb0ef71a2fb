"""Preference tuning (DPO, IPO, SimPO) on the training core: pairs, reference log-probs, loss, trainer, stage."""
