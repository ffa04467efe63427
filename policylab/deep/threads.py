"""Thread pinning for small-network training: one thread for torch and every loaded BLAS."""

from __future__ import annotations

__all__ = ["single_threaded_math"]


def single_threaded_math() -> None:
    """One thread for torch (and its MKL, whose sgemm the numba kernels of the numpy backends call,
    ``fast.blas``) and for every loaded BLAS (numpy's and scipy's OpenBLAS, their fallback). Small
    networks run fastest this way, and float32 sums do not depend on the thread count, so a seed
    gives the same numbers on any machine."""
    import scipy.linalg.cython_blas  # noqa: F401 (load the BLAS numba calls, so it is limited too)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
