"""The sgemm the numba kernels call (deep/fast/blas.py): products against float64 numpy for every
transposition and edge shape, results independent of the arrays' alignment (what a resumed run's
bit-identical numbers rely on), and the inputs it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.deep.fast.blas import BLAS, matmul


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), k=st.integers(0, 40), n=st.integers(0, 40), ta=st.booleans(), tb=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_matmul_equals_float64_product(m, k, n, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, m) if ta else (m, k)).astype(np.float32)
    b = rng.normal(size=(n, k) if tb else (k, n)).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)  # every entry is written (k = 0: zeros)
    matmul(a, b, out, ta, tb)
    ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * max(k, 1))
    assert BLAS in ("MKL (torch)", "OpenBLAS (scipy)")


def _at_offset(x: np.ndarray, floats: int) -> np.ndarray:
    """A copy of x whose data starts ``floats`` float32s past a 64-byte boundary."""
    buf = np.empty(x.size + 32, np.float32)
    start = (floats - buf.ctypes.data // 4) % 16
    out = buf[start:start + x.size].reshape(x.shape)
    out[...] = x
    return out


@pytest.mark.parametrize("m, k, n, ta, tb", [(256, 23, 256, False, True), (64, 256, 12, False, True),
                                             (256, 256, 17, True, False), (40, 1, 256, False, False)])
def test_matmul_does_not_depend_on_alignment(m, k, n, ta, tb):
    """SAC's layer shapes (first layer, head, a first-layer weight gradient, a 1-wide outer product)
    from arrays at every 4-byte offset within a cache line: the same bits each time."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(k, m) if ta else (m, k)).astype(np.float32)
    b = rng.normal(size=(n, k) if tb else (k, n)).astype(np.float32)
    results = []
    for off in range(16):
        out = _at_offset(np.zeros((m, n), np.float32), (off * 7) % 16)
        matmul(_at_offset(a, off), _at_offset(b, (off * 3) % 16), out, ta, tb)
        results.append(out.copy())
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_matmul_refuses_what_sgemm_cannot_read():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        matmul(x[:, ::2], x[:2], np.empty((4, 4), np.float32))
    with pytest.raises(Exception, match="float32"):  # numba's TypingError: float64 would be read as float32
        matmul(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)))


@pytest.mark.parametrize("source", ["scipy", "mkl"])
def test_both_candidate_sgemms_compute_a_product(source):
    """The two addresses ``blas`` may bind (scipy's OpenBLAS is the fallback when torch has no MKL)
    are Fortran sgemm with 32-bit sizes: called through ctypes, column-major C = A·B."""
    import ctypes

    from policylab.deep.fast import blas

    address = blas._scipy_sgemm() if source == "scipy" else blas._torch_mkl_symbol("sgemm_")
    if address is None:
        pytest.skip("this torch has no MKL")
    sgemm = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)(address)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    c = np.zeros((2, 3), np.float32)  # column-major (3, 2)
    fa, fb = np.asfortranarray(a), np.asfortranarray(b)
    ref = [ctypes.c_char(b"N"), ctypes.c_char(b"N"), ctypes.c_int(3), ctypes.c_int(2), ctypes.c_int(5),
           ctypes.c_float(1.0), None, ctypes.c_int(3), None, ctypes.c_int(5), ctypes.c_float(0.0), None, ctypes.c_int(3)]
    args = [ctypes.addressof(r) if r is not None else None for r in ref]
    args[6], args[8], args[11] = fa.ctypes.data, fb.ctypes.data, c.ctypes.data
    sgemm(*args)
    np.testing.assert_allclose(c.T, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 12), k=st.integers(1, 70), sizes=st.lists(st.integers(1, 70), min_size=1, max_size=3),
       pad=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
def test_packed_matmul_equals_float64_product(m, k, sizes, pad, seed):
    """MKL's packed product from numba (``pack_weights`` + ``packed_matmul``, the decoder's one-token step):
    out = a Wᵀ for each of several weights packed into one buffer, written into strided rows of a wider array."""
    from policylab.deep.fast import blas

    if not blas.PACKED:
        pytest.skip("this torch has no MKL")
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(n, k)).astype(np.float32) for n in sizes]
    packed, offsets = blas.pack_weights(weights, m)
    assert packed.ctypes.data % 64 == 0 and all(o % 16 == 0 for o in offsets)
    a = rng.normal(size=(m, k + pad)).astype(np.float32)[:, :k]  # rows strided when pad > 0
    for w, offset in zip(weights, offsets):
        wide = np.full((m, w.shape[0] + pad), np.nan, np.float32)
        blas.packed_matmul(a, packed, offset, wide[:, : w.shape[0]])
        np.testing.assert_allclose(wide[:, : w.shape[0]], a.astype(np.float64) @ w.T.astype(np.float64),
                                   rtol=1e-5, atol=1e-5 * k)
        assert np.isnan(wide[:, w.shape[0] :]).all()  # nothing written past out's columns


def test_packed_matmul_refuses_strided_columns():
    from policylab.deep.fast import blas

    if not blas.PACKED:
        pytest.skip("this torch has no MKL")
    w = np.ones((3, 4), np.float32)
    packed, offsets = blas.pack_weights([w], 2)
    with pytest.raises(ValueError, match="contiguous columns"):
        blas.packed_matmul(np.ones((2, 8), np.float32)[:, ::2], packed, offsets[0], np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="m rows"):
        blas.packed_matmul(np.ones((3, 4), np.float32), packed, offsets[0], np.empty((2, 3), np.float32))
