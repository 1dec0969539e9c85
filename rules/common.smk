# Helpers the rules share, one file per concern (no rules here). Order matters only for what runs at
# include time: settings first (RESULTS, MODELS, DATASETS, REPO), then the job environment and the
# paths (shell prefix, wildcard constraints), then what the rules call when Snakemake asks.
include: "common/settings.smk"
include: "common/environment.smk"
include: "common/paths.smk"
include: "common/resources.smk"
include: "common/arguments.smk"
include: "common/targets.smk"
include: "common/lock.smk"
