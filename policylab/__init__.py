"""policylab: reinforcement learning from MDPs to GRPO/DPO, one pure function per equation.

Importing the package is cheap (no numpy, torch or scipy): subpackages are imported by name
(``from policylab import planning``). User mistakes raise subclasses of ``PolicylabError``; the
common ones are exported here, all of them live in :mod:`policylab.errors`.
"""

from policylab.errors import ConfigError, InputError, InvalidMDPError, PolicylabError

__version__ = "0.1.0"
__all__ = ["ConfigError", "InputError", "InvalidMDPError", "PolicylabError", "__version__"]
