# Sourced by every recipe's path.sh: the Concord venv, utils/ on PATH, C locale.
CONCORD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CONCORD_ROOT
# shellcheck disable=SC1091
. "$CONCORD_ROOT/tools/activate.sh" || return 1
export PYTHONPATH="$CONCORD_ROOT${PYTHONPATH:+:$PYTHONPATH}"
