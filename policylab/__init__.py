"""policylab: reinforcement learning from MDPs to GRPO/DPO, one pure function per equation.

Importing the package is cheap (no numpy, torch or scipy): subpackages are imported by name
(``from policylab import planning``), and the typed user errors are exported here.
"""

from policylab.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    InputError,
    InputTypeError,
    InvalidMDPError,
    MissingFileError,
    PolicylabError,
    RunLockedError,
    UsageError,
)

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "InputError",
    "InputTypeError",
    "InvalidMDPError",
    "MissingFileError",
    "PolicylabError",
    "RunLockedError",
    "UsageError",
    "__version__",
]
