"""The tests' synthetic training inputs: they live in :mod:`toolkit.bench.synthetic_data`
(concord-gpu-check's DDP run trains on them too)."""
from toolkit.bench.synthetic_data import write_lang_dir, write_paired_set, write_seqstore, write_text_set  # noqa: F401
