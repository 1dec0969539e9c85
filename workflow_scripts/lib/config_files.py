"""Reading a config file as written: a key given twice in one mapping is an error, not the last one wins.

YAML loaders (Snakemake's, PyYAML's) keep the last of two equal keys without a word, so `n_bins: 3`
then `n_bins: 4` further down would silently be 4. Used by rules/common/checks.smk for every config file the
workflow reads, and by the tools that read config files themselves (grid_status, plan: `resolved`).
The schema (config/schema.yaml) is the one home of every default; `schema_defaults` reads a section's.
"""

from __future__ import annotations

from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def duplicate_keys(path) -> list[str]:
    """One line per key given twice in the same mapping of a YAML (or JSON) file: the key and both lines."""
    text = Path(path).read_text()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    problems: list[str] = []

    def walk(node, where):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                dotted = f"{where}.{name}" if where else name
                if name in seen:
                    problems.append(
                        f"{path}: key {dotted!r} is given twice (lines {seen[name] + 1} and {key.start_mark.line + 1}); "
                        "fix: keep one of them"
                    )
                else:
                    seen[name] = key.start_mark.line
                walk(value, dotted)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{where}[{index}]")

    walk(root, "")
    return problems


def load(path) -> dict:
    """A config file's contents; refuses one that gives a key twice, naming the key and both lines."""
    problems = duplicate_keys(path)
    if problems:
        raise SystemExit("error: " + "\nerror: ".join(problems))
    return yaml.safe_load(Path(path).read_text()) or {}


def resolved(paths) -> dict:
    """The config as the workflow sees it: the files merged in order (later files win, as with
    --configfile), each refused if it gives a key twice, then the schema's defaults filled in."""
    from snakemake.utils import update_config, validate

    config: dict = {}
    for path in paths:
        update_config(config, load(path))
    config["results_dir"], config["models"], config["datasets"]  # noqa: B018 (fail early, by name)
    validate(config, str(SCHEMA))
    return config


def schema_defaults(section: str) -> dict:
    """The defaults of one top-level section of the schema ({key: default}), for code outside a run
    (tests, benchmarks) that needs the study's settings without restating them."""
    properties = yaml.safe_load(SCHEMA.read_text())["properties"][section]["properties"]
    return {key: value["default"] for key, value in properties.items() if "default" in value}
