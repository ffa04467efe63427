"""policylab: reinforcement learning from MDPs to GRPO/DPO, one pure function per equation."""

from policylab.errors import InvalidMDPError, PolicylabError

__version__ = "0.1.0"
__all__ = ["InvalidMDPError", "PolicylabError", "__version__"]
