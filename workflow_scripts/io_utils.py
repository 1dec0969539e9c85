"""Atomic writes: a crash never leaves a half-written file that looks complete."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(obj, path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def atomic_write_parquet(table, path) -> None:
    _atomic(path, lambda tmp: table.to_parquet(tmp, index=False))


OUR_CODE = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "tasks")


def raised_by_our_code(error: BaseException) -> bool:
    """Whether the innermost frame of the error's traceback is in workflow_scripts/ or tasks/."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).resolve()
    return any(where.is_relative_to(folder) for folder in OUR_CODE)


def one_line_errors(main):
    """Run a step's main(); an input problem ends it with one line, `error: ...`, last in the job log.

    Our own checks raise these errors with a message that names the field and the fix: that line is
    all the log needs. The same error types raised inside a library (vLLM's KV-cache sizing, a
    DeepSpeed or transformers config error) also get their full traceback above that line: the
    message alone rarely says where it came from."""
    import functools
    import sys
    import traceback

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ValueError, FileNotFoundError, KeyError, PermissionError) as error:
            message = error.args[0] if error.args else repr(error)
            if not raised_by_our_code(error):
                traceback.print_exc()
                message = f"{type(error).__name__} in {library_of(error)} (traceback above): {message}"
            sys.stderr.flush()
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def library_of(error: BaseException) -> str:
    """The top-level package whose code raised the error (e.g. 'transformers'), from its innermost frame."""
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__", "?").split(".")[0]


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
