"""Clean stage: read raw corpora, normalise, identify language, filter, scrub PII and deduplicate.

Entry point: `data_pipeline.clean.run_clean_stage(cfg, force)`; `triglot data clean` calls it.
"""
