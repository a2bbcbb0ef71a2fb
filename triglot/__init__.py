"""triglot: trilingual (English, Mandarin, Cantonese) LLM data, training and evaluation pipeline.

This core package holds what every stage shares: config schema and loading, hardware profiles,
run tracking, stage manifests, the packed-token format and the command line.
"""

__version__ = "0.1.0"
