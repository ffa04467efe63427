"""Exceptions shared by every layer."""


class PolicylabError(Exception):
    """Base class for policylab errors."""


class InvalidMDPError(PolicylabError, ValueError):
    """An MDP's P, R, gamma, initial or terminal arrays are malformed.

    The message names the offending state/action and value.
    """
