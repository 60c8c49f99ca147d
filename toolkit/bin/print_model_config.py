"""Print the resolved model config (every default filled in) and parameter counts.

Usage:
    python -m toolkit.bin.print_model_config                       # defaults
    python -m toolkit.bin.print_model_config --config toolkit/resources/conf/model_tiny.yaml
    python -m toolkit.bin.print_model_config --config conf/train.yaml --vocab-size 256 \
        --num-phones 60 --count-parameters --out exp/x/model_config.yaml

Unknown keys in model_conf or a component's *_conf are errors naming the key. The
output is YAML (``model`` + ``model_conf``); ``--count-parameters`` builds the model and
prints parameters per component to stderr.
"""
from __future__ import annotations

import argparse
import sys

from toolkit.utils.config import dump_yaml, load_yaml
from toolkit.utils.cli import cli


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML with model / model_conf (other top-level keys are ignored)")
    p.add_argument("--vocab-size", type=int, default=None, help="override/set vocab_size")
    p.add_argument("--num-phones", type=int, default=None, help="override/set num_phones")
    p.add_argument("--count-parameters", action="store_true", help="build the model, print counts")
    p.add_argument("--out", help="also write the resolved YAML here (atomically)")
    args = p.parse_args(argv)

    from toolkit.models import build_model, count_parameters, resolve_model_config

    config = load_yaml(args.config) if args.config else {}
    for key, val in (("vocab_size", args.vocab_size), ("num_phones", args.num_phones)):
        if val is not None:
            config[key] = val
    resolved = resolve_model_config(config)
    out = {k: resolved[k] for k in ("model", "model_conf")}
    for key in ("vocab_size", "num_phones"):
        if key in config:
            out[key] = config[key]
    sys.stdout.write(dump_yaml(out, args.out))
    if args.count_parameters:
        config.setdefault("vocab_size", 256)
        config.setdefault("num_phones", 64)
        counts = count_parameters(build_model(config))
        print(f"# parameters (vocab_size={config['vocab_size']}, num_phones={config['num_phones']}):",
              file=sys.stderr)
        for name, n in counts.items():
            print(f"#   {name:18s} {n:>12,d}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
