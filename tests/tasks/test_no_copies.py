"""The task scaffolding has one home: no block of four or more lines is repeated across ``tasks/``."""
from __future__ import annotations

import glob
import os
from collections import defaultdict

TASKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tasks")
#: the two-line entry point every runnable module ends with (``main`` / ``if __name__ == "__main__"``)
IDIOM = ("def main(", 'if __name__ == "__main__":')


def repeated_blocks(paths, size: int = 4, root: str | None = None) -> dict:
    """Windows of ``size`` consecutive code lines (stripped; blank lines, comments and imports skipped)
    found at more than one place, with their places (paths relative to ``root``, else file names)."""
    seen = defaultdict(list)
    for path in paths:
        with open(path) as f:
            lines = [(i + 1, s) for i, line in enumerate(f) if (s := line.strip())
                     and not s.startswith(("#", "from ", "import "))]
        for k in range(len(lines) - size + 1):
            window = tuple(s for _, s in lines[k:k + size])
            if not any(s.startswith(IDIOM) for s in window):
                seen[window].append((os.path.relpath(path, root) if root else os.path.basename(path), lines[k][0]))
    return {w: places for w, places in seen.items() if len(places) > 1}


def test_the_detector_finds_a_copied_block(tmp_path):
    block = "".join(f"x{i} = compute({i}, option=True)\n" for i in range(4))
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text(f"def {name}():\n    return '{name}'\n{block}")
    found = repeated_blocks(sorted(glob.glob(str(tmp_path / "*.py"))))
    assert len(found) == 1 and [p for p, _ in next(iter(found.values()))] == ["a.py", "b.py"]


def test_no_block_is_repeated_in_the_tasks():
    paths = sorted(glob.glob(os.path.join(TASKS, "**", "*.py"), recursive=True))
    assert len(paths) > 40 and any(os.sep + "common" + os.sep in p for p in paths)  # the sub-packages are read
    found = repeated_blocks(paths, root=TASKS)
    assert not found, "\n\n".join(f"{places}:\n" + "\n".join(w) for w, places in found.items())
