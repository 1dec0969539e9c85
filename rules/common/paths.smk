# Where results live: the rules' side of workflow_scripts/layout.py (the one spelling of the
# path grammar), the wildcards' grammar, and the folders under results_dir.
import os
import re

from workflow_scripts import cell_names, layout


def _one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=_one_of(MODELS),
    dataset=_one_of(DATASETS),
    test_bin=r"\d+",
    row=cell_names.ROW_PATTERN,
    trained_row=cell_names.TRAINED_ROW_PATTERN,


def results(*parts):
    return os.path.join(RESULTS, *parts)


def heldout_dir(dataset):
    return layout.heldout_dir(RESULTS, dataset)


def test_file(dataset, test_bin, heldout):
    return layout.test_file(RESULTS, dataset, test_bin, heldout)


def pool_file(dataset, source_bin, heldout):
    return layout.pool_file(RESULTS, dataset, source_bin, heldout)


def bins_dir(dataset):
    return layout.bins_dir(RESULTS, dataset)


def training_work_dir(model, dataset, trained_row):
    return layout.training_work_dir(RESULTS, model, dataset, trained_row)


def trained_model_dir(model, dataset, trained_row):
    return layout.trained_model_dir(RESULTS, model, dataset, trained_row)


def cell_path(model, dataset, row, test_bin):
    return layout.cell(RESULTS, model, dataset, row, test_bin)


def raw_path(model, dataset, row, test_bin):
    return layout.raw_file(RESULTS, model, dataset, row, test_bin)


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
