# What a run makes: every cell, table and figure of the configured grid (rule all).


def every_cell_of(model, dataset):
    """Every cell of a (model, dataset) in this config: the base model, each trained row per seed and,
    with in_context.k, each in-context row per seed. The tables read them all, so adding a seed re-runs
    that seed's jobs and the tables and figures built from them, nothing else."""
    return [
        layout.cell(RESULTS, model, dataset, row, test_bin)
        for row in row_names(dataset)
        for test_bin in bin_ids(dataset)
    ]


def summary_figures():
    """One change-by-distance figure per dataset, one grid of every dataset per model."""
    return [
        layout.summary_figure(RESULTS, kind, name, ext)
        for kind, names in (("change_by_distance", DATASETS), ("change_grid", MODELS))
        for name in names
        for ext in ("png", "pdf")
    ]


def final_outputs():
    """Tables, figures, and every cell: cells are results in their own right, so a deleted or
    missing cell file is re-made even when the tables built from it look up to date."""
    outputs = [layout.run_table(RESULTS, name, ext) for name in ("cells", "seeds") for ext in ("csv", "parquet")]
    outputs += summary_figures()
    for model in MODELS:
        for dataset in DATASETS:
            outputs += figures_of(model, dataset) + every_cell_of(model, dataset)
    return outputs
