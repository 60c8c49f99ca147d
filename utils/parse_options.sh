#!/usr/bin/env bash
# Kaldi-style option parsing. Source it from a script AFTER setting the defaults:
#
#   nj=4; use_gpu=false; train_config=conf/train.yaml
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh || exit 1
#   # positional arguments are left in "$@"
#
# --foo-bar X and --foo-bar=X set foo_bar (dashes become underscores). Only variables
# the script already defined are accepted, so a misspelt option is an error, not a new
# variable. A variable whose default is true/false accepts only true/false.
# --config FILE sources FILE (lines of var=value) before the command-line options, so
# the command line wins whatever the order. --help / -h prints $help_message, exits 0.
# "--" ends the options. Works under set -euo pipefail.

__po_fail() { echo "$0: $*" >&2; exit 1; }

# Config files first (Kaldi semantics): explicit options override them.
__po_args=("$@")
for ((__po_i = 0; __po_i < ${#__po_args[@]}; __po_i++)); do
  __po_a=${__po_args[__po_i]}
  [ "$__po_a" = "--" ] && break
  __po_cfg=
  case "$__po_a" in
    --config) __po_cfg=${__po_args[__po_i + 1]-}
              [ -n "$__po_cfg" ] || __po_fail "option --config needs a value" ;;
    --config=*) __po_cfg=${__po_a#--config=} ;;
  esac
  if [ -n "$__po_cfg" ]; then
    [ -r "$__po_cfg" ] || __po_fail "cannot read config file '$__po_cfg' (from --config)"
    # shellcheck disable=SC1090
    . "$__po_cfg" || __po_fail "error while sourcing config file '$__po_cfg'"
  fi
done
unset __po_args __po_i __po_a __po_cfg

while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%b\n' "$help_message"; else echo "$0: no help found."; fi
      exit 0 ;;
    --config) shift 2 ;;
    --config=*) shift ;;
    --?*)
      __po_opt=${1%%=*}
      __po_name=${__po_opt#--}
      __po_name=${__po_name//-/_}
      # the name first: a misspelt last option is "invalid", not "needs a value"
      [[ "$__po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || __po_fail "invalid option $__po_opt"
      [ -n "${!__po_name+set}" ] || __po_fail "invalid option $__po_opt (no variable '$__po_name' in this script; see --help)"
      if [[ "$1" == *=* ]]; then
        __po_val=${1#*=}; shift
      else
        [ $# -ge 2 ] || __po_fail "option $1 needs a value"
        __po_val=$2; shift 2
      fi
      __po_old=${!__po_name}
      if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
        [ "$__po_val" = true ] || [ "$__po_val" = false ] \
          || __po_fail "option $__po_opt expects \"true\" or \"false\", got '$__po_val'"
      fi
      printf -v "$__po_name" '%s' "$__po_val"
      unset __po_opt __po_name __po_val __po_old ;;
    *) break ;;
  esac
done
unset -f __po_fail
true
