"""The fast CPU paths: PPO's numpy backend (``backend.py``), DQN's TD step (``qlearning.py``) and
SAC's gradient step (``sac.py``), and their pieces — numpy mirror of the MLPs with numba
forward/backward kernels (``mlp.py``) and the sgemm they call (``blas.py``: MKL's from torch's
library when it has one, else scipy's OpenBLAS), numpy heads with their derivatives (``heads.py``), Adam on
torch's optimizer state (``optim.py``). The loss derivatives they follow live with the losses
(``policylab.losses.grads``). Chosen by ``deep.backend.make_backend`` (PPO) and the algorithms'
``backend`` field through ``deep.backend.choose_backend`` (DQN, SAC).
"""

from policylab.deep.fast.backend import NumpyBackend, unsupported

__all__ = ["NumpyBackend", "unsupported"]
