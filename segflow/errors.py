"""Exception types, one per layer, so the CLI can show any of them as a clean message.

Every message names the bad value (a file, a key, a URI) and says how to fix it; the CLI
prints it without a traceback and exits non-zero.
"""


class SegflowError(Exception):
    """Base of every error segflow raises on purpose (bad input, bad config, bad server)."""


class ConfigError(SegflowError):
    """A recipe or a command-line option is invalid."""


class DataError(SegflowError):
    """A dataset on disk is missing, corrupt or inconsistent with its recipe."""


class StoreError(SegflowError):
    """The artifact store cannot be reached, refuses access, or holds a corrupt object."""


class ModelError(SegflowError):
    """A model cannot be built or loaded: unknown name, wrong head, missing or foreign weights."""


class TrainError(SegflowError):
    """Training stopped for a reason the user must act on (a NaN loss, a failed worker group)."""


class SearchError(SegflowError):
    """A hyperparameter search cannot start or stopped: bad search space, unknown tuner, a crashed tuner."""


class ServingError(SegflowError):
    """A model cannot be packaged or served, a server does not start, or a prediction request is refused."""


class PipelineError(SegflowError):
    """A pipeline cannot be compiled, submitted or followed (KFP endpoint, RayJob in a cluster)."""
