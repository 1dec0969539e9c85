# Where results live: the wildcards' grammar, and the patterns of the per-row rules' files. Every
# results path is spelled once, in workflow_scripts/lib/layout.py; the rules call it as
# layout.<path>(RESULTS, ...), as the steps, grid_status and the tests do.
import functools
import re

from workflow_scripts.lib import cell_names, layout


def _one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=_one_of(MODELS),
    dataset=_one_of(DATASETS),
    test_bin=r"\d+",
    row=cell_names.ROW_PATTERN,
    trained_row=cell_names.TRAINED_ROW_PATTERN,


@functools.cache  # the same files for every row of a dataset: its generate, score and sizing ask per job
def test_files(dataset, heldout):
    """(test_bin, test_file) for every test bin of a dataset."""
    return tuple((b, layout.test_file(RESULTS, dataset, b, heldout)) for b in bin_ids(dataset))


# Output patterns of the per-row rules: layout's paths with the wildcards in place of the values, so
# the rules declare exactly the files the steps, grid_status and the tests look for.
def row_pattern(function, *args, row="{row}"):
    """function(RESULTS, *args, "{model}", "{dataset}", row) for a layout function of a row's file."""
    return function(RESULTS, *args, "{model}", "{dataset}", row)


def bin_patterns(function, n_bins):
    """A layout function of a row's file on one test bin, for every test bin: raw files, cells."""
    return [function(RESULTS, "{model}", "{dataset}", "{row}", b) for b in range(n_bins)]


def samples_of(model, dataset):
    """The per-question files beside a (model, dataset)'s cells: what the bootstrap resamples."""
    return [layout.samples(path) for path in every_cell_of(model, dataset)]


def figures_of(model, dataset):
    names = ("accuracy", "change_vs_base", "training_loss")
    return [layout.pair_figure(RESULTS, model, dataset, name, ext) for name in names for ext in ("png", "pdf")]
