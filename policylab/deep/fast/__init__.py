"""PPO's fast CPU path: the numpy backend (``backend.py``) and its pieces — numpy mirror of the MLPs
with numba forward/backward kernels (``mlp.py``), numpy heads with their derivatives (``heads.py``),
gradient clipping and Adam on torch's optimizer state (``optim.py``). The loss derivatives it
follows live with the losses (``policylab.losses.grads``). Chosen by ``deep.backend.make_backend``.
"""

from policylab.deep.fast.backend import NumpyBackend, unsupported

__all__ = ["NumpyBackend", "unsupported"]
