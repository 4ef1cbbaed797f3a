"""Names that several layers must spell the same: MLflow tag keys and environment variables.

A plain module at the bottom of the house (no imports), so the command line can name them
without loading MLflow, and tracking, the runner and the sweep callback agree by construction.
"""

# The sweep's parent run id, handed to its jobs (set before any launcher starts, so jobs in
# other processes inherit it). Not MLFLOW_RUN_ID: that would make every job log into the parent.
PARENT_RUN_ENV = "ALEXNET_EXP_PARENT_RUN_ID"
# ...and the store that parent lives in, so whichever process stops the sweep early can close
# it (MLflow's own MLFLOW_TRACKING_URI is never set: it would outrank every job's store choice).
PARENT_STORE_ENV = "ALEXNET_EXP_PARENT_STORE"
# ...and the keys the sweep varies (a JSON list, ``["norm", "dropout"]``), which name its jobs'
# runs and models: a job sees only its own overrides, not which of them the sweep varied.
SWEPT_KEYS_ENV = "ALEXNET_EXP_SWEPT_KEYS"
# On a sweep's parent and its jobs: the swept keys (space-separated), and on each job one tag
# per swept key holding its value there (``swept.norm`` = ``lrn``).
SWEPT_TAG = "alexnet_exp.swept"
SWEPT_VALUE_PREFIX = "swept."

# A run's identity: how it trains (the resolved config) and on what (the data fingerprint).
CONFIG_HASH_TAG = "alexnet_exp.config_hash"
DATA_FINGERPRINT_TAG = "alexnet_exp.data_fingerprint"

# On a sweep's parent, one tag per run that counts as a job of the sweep without being its
# child (a FINISHED run reused with sweep.reuse=experiment, a killed run resumed from elsewhere).
SWEEP_LINK_PREFIX = "alexnet_exp.sweep_member."

# failure_reason of a run that failed writing files (a full disk, a read-only folder): its last
# checkpoint is complete (state.json is the commit point), so the same command may continue it.
DISK_FAILURE = "disk"

# The resolved training data folder of a run: export finds its parity images there, and the
# report groups runs by it (``~/x`` and ``/home/me/x`` are one data set).
DATA_ROOT_TAG = "data_root"

# The run's data fingerprint as an artifact (the file list), which a later run of the same
# config diffs against to say what changed in its data.
FINGERPRINT_ARTIFACT = "data/fingerprint.json"
