"""Which functions of ours AutoGraph converts: none may be (:mod:`alexnet_exp.graphs` says why).

AutoGraph converts a function in ``api._convert_actual``, cached conversions included, so a
spy there sees every conversion. It is TensorFlow's private API: should it move, installing
the spy fails loudly, and the tests that rely on it fail rather than pass unchecked.
"""

import os
from collections.abc import Callable
from pathlib import Path

PACKAGE = str(Path(__file__).resolve().parents[2] / "alexnet_exp")
SPYING = "# spying"  # the line a process spied on writes first


def ours(entity) -> str | None:
    """``module:qualname`` of ``entity`` when the package defined it, else None."""
    module = getattr(entity, "__module__", None) or ""
    code = getattr(entity, "__code__", None) or getattr(getattr(entity, "__func__", None),
                                                        "__code__", None)
    if module.split(".")[0] != "alexnet_exp" and not (
            code is not None and code.co_filename.startswith(PACKAGE)):
        return None
    return f"{module}:{getattr(entity, '__qualname__', repr(entity))}"


def install(record: Callable[[str], None]) -> Callable[[], None]:
    """Call ``record`` with each of our functions AutoGraph converts from now on; returns the
    function that takes the spy out again."""
    from tensorflow.python.autograph.impl import api

    convert = api._convert_actual

    def spy(entity, program_ctx):
        name = ours(entity)
        if name is not None:
            record(name)
        return convert(entity, program_ctx)

    api._convert_actual = spy

    def uninstall():
        api._convert_actual = convert

    return uninstall


def install_to_file(log: str) -> None:
    """:func:`install`, each conversion a line appended to ``log``."""
    def record(name: str) -> None:
        with open(log, "a") as f:
            f.write(name + "\n")

    install(record)
    record(SPYING)


def sitecustomize(folder: Path, log: Path) -> dict[str, str]:
    """A ``sitecustomize.py`` in ``folder`` that spies on a child process (our console
    scripts), appending each conversion to ``log``; returns the child's environment for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"sys.path.append({str(Path(__file__).parents[1])!r})\n"
        "from helpers.autograph import install_to_file\n"
        f"install_to_file({str(log)!r})\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder),
                                                        os.environ.get("PYTHONPATH")]))}
