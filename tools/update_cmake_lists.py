"""Rewrite the file lists of DIRVNet/CMakeLists.txt from what is on disk.

    python tools/update_cmake_lists.py

DIRVNETLIB_PYTHON_SCRIPTS gets every DIRVNetLib/**/*.py, DIRVNETLIB_RESOURCES every file under
model_weights/ and every non-Python file under DIRVNetLib/ (bytecode caches excluded), sorted.
Testing/Python/test_extension_files.py fails while a list is out of date.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CMAKE = ROOT / "DIRVNet" / "CMakeLists.txt"


def files_under(folder, keep):
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and keep(p)
    )


def replace_list(text, variable, items):
    body = "".join(f"  {item}\n" for item in items)
    new, count = re.subn(rf"set\({variable}\n.*?\n  \)", f"set({variable}\n{body}  )", text, flags=re.DOTALL)
    if count != 1:
        raise SystemExit(f"set({variable} ...) not found in {CMAKE}")
    return new


if __name__ == "__main__":
    text = CMAKE.read_text()
    text = replace_list(text, "DIRVNETLIB_PYTHON_SCRIPTS", files_under("DIRVNetLib", lambda p: p.suffix == ".py"))
    resources = files_under("model_weights", lambda p: True) + files_under("DIRVNetLib", lambda p: p.suffix != ".py")
    text = replace_list(text, "DIRVNETLIB_RESOURCES", resources)
    CMAKE.write_text(text)
    print(f"updated {CMAKE.relative_to(ROOT)}")
