"""Kaldi-style data directories: read, write, validate, fix, subset, combine; datasets."""
