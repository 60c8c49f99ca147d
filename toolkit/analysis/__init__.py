"""Analyses of trained models: per-layer speech-text consistency (``consistency``)."""
