"""policylab: reinforcement learning from MDPs to GRPO/DPO, one pure function per equation.

Importing the package is cheap (no numpy, torch or scipy): subpackages are imported by name
(``from policylab import planning``), and the typed user errors of :mod:`policylab.errors`
(``PolicylabError``, ``ConfigError``, ``InputError``, …) are exported here.
"""

from policylab import errors
from policylab.errors import *  # exactly errors.__all__

__version__ = "0.1.0"
__all__ = [*errors.__all__, "__version__"]
