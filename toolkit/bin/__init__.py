"""Thin command-line entry points, one per recipe stage: ``python -m toolkit.bin.<name> --help``."""
