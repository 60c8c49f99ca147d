"""The committed study reports are what their committed cells say: each regenerates byte for byte
from its recipe's ``study/`` cells with the command its header names (a report edited by hand, a
report left stale after new cells, or a report-code change that silently alters a committed figure
fails here)."""
import re
from pathlib import Path

import pytest

from toolkit.analysis import study

EGS = Path(__file__).resolve().parents[1] / "egs"


@pytest.mark.parametrize("recipe, grid, report", [("mini", "conf/study.yaml", "STUDY.md"),
                                                  ("mini", "conf/study_pruned.yaml", "STUDY_pruned.md"),
                                                  ("mini", "conf/study_heldout.yaml", "STUDY_heldout.md"),
                                                  ("multilingual", "conf/study.yaml", "STUDY.md")])
def test_a_committed_report_regenerates_from_its_cells(recipe, grid, report, tmp_path):
    root = EGS / recipe
    committed = (root / report).read_text()
    command = re.search(r"^Command: `(.*)`\. Code:", committed, re.M)
    assert command, f"{report}: no 'Command:' line in its header"
    regenerated = study.write_report(root / grid, root, tmp_path / report, command.group(1)).read_text()
    if regenerated != committed:
        diff = [f"- {a}\n+ {b}" for a, b in zip(committed.splitlines(), regenerated.splitlines()) if a != b]
        pytest.fail(f"egs/{recipe}/{report} is not what its cells say (regenerate it: cd egs/{recipe} && "
                    f"python -m toolkit.bin.study report --grid {grid} --out {report} --command '<its Command>'); "
                    f"first differing lines:\n" + "\n".join(diff[:5]))
