# Activates the Concord environment (venv, utils/ on PATH, LC_ALL=C, OMP_NUM_THREADS=1).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../TEMPLATE/path.sh"
