"""Atomic writes: a crash never leaves a half-written file that looks complete. Named reads: a file a
step cannot parse (truncated, empty, another program's bytes, JSON of the wrong shape) ends the step
with one line naming the file and the fix."""

from __future__ import annotations

import contextlib
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


# The fix for a broken file a rule makes: Snakemake re-makes a missing output, never a damaged one.
REMAKE = "fix: delete it and run snakemake again to re-make it"


def remake_folder(path) -> str:
    """The fix for a broken file inside a folder a rule makes as a whole (the bins, a model): Snakemake
    re-makes the folder, not one file in it."""
    folder = Path(path).parent
    return REMAKE if str(folder) == "." else f"fix: delete {folder} and run snakemake again to re-make it"


def _brief(error: BaseException) -> str:
    """The parser's own complaint, on one line (pandas' messages end in a newline)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


@contextlib.contextmanager
def reading(path, what: str, kind: str, fix: str, *errors: type[BaseException]):
    """Inside: one file is read and parsed. What cannot be (a missing, truncated or foreign file) raises
    one error naming the file and the fix, instead of a parser's traceback that names neither.
    `errors`: a parser's own exception types beyond OSError and ValueError (pyarrow's, zipfile's)."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist; {fix}") from None
    except (OSError, ValueError, *errors) as error:
        raise ValueError(f"{what} {path} could not be read as {kind} ({_brief(error)}); {fix}") from error


def json_type(value) -> str:
    """JSON's name for a parsed value's type, for a message about a file of the wrong shape."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def read_json(path, what: str, fix: str = REMAKE) -> dict:
    """A JSON file that holds an object (every JSON file the steps read does)."""
    with reading(path, what, "JSON", fix):
        value = json.loads(Path(path).read_text())
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path} holds {json_type(value)}, not a JSON object; {fix}")
    return value


def json_lines(path, what: str, fix: str = REMAKE):
    """(line number, object) for each non-blank line of a JSON-lines file, read as it is iterated."""
    with reading(path, what, "JSON lines", fix):
        handle = open(path, "rb")  # bytes: a line that is not UTF-8 is named below like any bad line
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:  # UnicodeDecodeError included
                raise ValueError(f"{what} {path} line {number} is not JSON ({_brief(error)}); {fix}") from None
            if not isinstance(value, dict):
                raise ValueError(f"{what} {path} line {number} holds {json_type(value)}, not a JSON object; {fix}")
            yield number, value


def read_parquet(path, what: str, fix: str = REMAKE, columns=()):
    """A parquet file as a DataFrame, with the `columns` the caller needs."""
    import pandas as pd
    import pyarrow

    with reading(path, what, "parquet", fix, pyarrow.ArrowException):
        table = pd.read_parquet(path)
    return _with_columns(table, path, what, fix, columns)


def read_csv(path, what: str, fix: str = REMAKE, columns=(), **options):
    """A CSV (or TSV: `options` go to pandas.read_csv) file as a DataFrame, with the `columns` the caller needs."""
    import pandas as pd

    with reading(path, what, "CSV", fix):
        table = pd.read_csv(path, **options)
    return _with_columns(table, path, what, fix, columns)


def _with_columns(table, path, what: str, fix: str, columns):
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{what} {path} has no column(s) {missing} (it has {list(table.columns)}); {fix}")
    return table


OUR_CODE = (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2] / "tasks")


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
