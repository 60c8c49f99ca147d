"""Training: config resolution, data loading, the loop (DDP, AMP, exact resume), checkpoints.

Entry point: ``python -m toolkit.bin.train``; pieces others call:
:func:`toolkit.train.config.resolve_config`, :func:`toolkit.train.checkpoint.average_state_dicts`,
:func:`toolkit.train.checkpoint.load_checkpoint`.
"""
