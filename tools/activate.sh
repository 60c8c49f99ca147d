# Source me: activates the Concord venv and the environment every recipe uses.
_concord_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -f "$_concord_root/tools/venv/bin/activate" ]; then
  echo "Concord is not installed: run $_concord_root/tools/install.sh" >&2
  return 1 2>/dev/null || exit 1
fi
. "$_concord_root/tools/venv/bin/activate"
export PATH="$_concord_root/utils:$PATH"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONUNBUFFERED=1
unset _concord_root
