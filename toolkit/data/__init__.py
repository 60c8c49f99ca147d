"""Kaldi-style data directories: read, write, validate, fix, subset, combine; batching."""
