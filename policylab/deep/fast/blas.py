"""The matrix product the numba kernels of ``fast`` call: ``matmul(a, b, out, ta, tb)``,
out ← op(a) op(b) on float32 row-major arrays, through one BLAS ``sgemm``.

Which ``sgemm``: MKL's, the one inside torch's own library (the torch backend's products, and
Stable-Baselines3's, run on it), when this torch has MKL; otherwise scipy's OpenBLAS, the one
numba's ``np.dot`` calls. Why: single-threaded on this machine's AVX-512 core MKL's float32 product
is ~15 % faster at (256 × 256) · (256 × 256) and ~30 % faster for the narrow first and last layers
(17–23 inputs, 12 outputs; measured layer by layer) — SAC's step is mostly such products: its
HalfCheetah step went from 5.6 to 4.9 ms with this alone (``benchmarks/off_policy.py --halfcheetah``).
(1–2-wide outputs at batch 64 are ~1–3 µs slower; DQN's and PPO's numpy steps still got faster.)
Both are plain float32 GEMMs: the numbers agree to float rounding, and each is the same from run to
run (one thread; MKL's result does not depend on the arrays' alignment, checked in the tests).

The kernels call the product by a symbol name (``SYMBOL``), bound to the chosen function's address
when this module is imported, so numba's on-disk cache of the kernels stays valid across processes.

``packed_matmul`` is MKL's product with a weight that MKL repacked for a given row count
(``cblas_sgemm_compute``, bound the same way as ``SYMBOL_PACKED``; ``PACKED`` says whether this torch has
it): the weights torch's ``mkl._mkl_reorder_linear_weight`` returns, as ``mkl._mkl_linear`` multiplies
them, called from a numba kernel (the lean LLM decoder's one-token step, ``llm.decodestep``).
"""

from __future__ import annotations

import ctypes
import functools
import os

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = ["BLAS", "PACKED", "matmul", "pack_offsets", "pack_weights", "packed_matmul"]

SYMBOL = "policylab_fast_sgemm"
SYMBOL_PACKED = "policylab_fast_sgemm_compute"


def _torch_mkl_symbol(symbol: str) -> int | None:
    """Address of MKL's function ``symbol`` (32-bit integers) exported by torch's CPU library, or None."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        try:
            return ctypes.cast(getattr(ctypes.CDLL(os.path.join(lib_dir, name)), symbol), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    return None


def _scipy_sgemm() -> int:
    """Address of scipy's ``sgemm`` (the BLAS numba's ``np.dot`` calls), from its Cython C-API capsule."""
    import scipy.linalg.cython_blas as blas

    capsule = blas.__pyx_capi__["sgemm"]
    get_name, get_pointer = ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _bind() -> tuple[str, bool]:
    address = _torch_mkl_symbol("sgemm_")
    name = "MKL (torch)"
    if address is None:
        address, name = _scipy_sgemm(), "OpenBLAS (scipy)"
    llvm.add_symbol(SYMBOL, address)
    packed = _torch_mkl_symbol("cblas_sgemm_compute")
    if packed is not None:
        llvm.add_symbol(SYMBOL_PACKED, packed)
    return name, packed is not None


BLAS, PACKED = _bind()  # the sgemm the kernels call, for notes and the benchmark; whether packed_matmul works


@intrinsic
def _sgemm(typingctx, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
    """Fortran ``sgemm(transa, transb, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)`` (column-major
    c ← op(a) op(b)); ``trans*`` booleans, sizes int, ``a``/``b``/``c`` float32 arrays (their data
    pointers; the arrays stay alive as arguments of the call). Scalars go by reference, as Fortran takes them."""
    if not all(isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 2 for x in (a, b, c)):
        raise TypingError(f"sgemm takes 2-D float32 arrays, got {a}, {b}, {c}")
    sig = types.void(transa, transb, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, signature, args):
        i8, i32, f32 = ir.IntType(8), ir.IntType(32), ir.FloatType()

        def ref(value):
            return cgutils.alloca_once_value(builder, value)

        def trans(flag):  # 'T' or 'N'
            return ref(builder.select(builder.trunc(flag, ir.IntType(1)), ir.Constant(i8, ord("T")),
                                      ir.Constant(i8, ord("N"))))

        def size(value, ty):
            return ref(builder.trunc(context.cast(builder, value, ty, types.int64), i32))

        def data(value, ty):
            return builder.bitcast(context.make_array(ty)(context, builder, value).data, f32.as_pointer())

        ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_ = args
        ty = signature.args
        c8, c32, cf = ir.PointerType(i8), ir.PointerType(i32), ir.PointerType(f32)
        fnty = ir.FunctionType(ir.VoidType(), [c8, c8, c32, c32, c32, cf, cf, c32, cf, c32, cf, cf, c32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, SYMBOL)
        builder.call(fn, [trans(context.cast(builder, ta, ty[0], types.boolean)),
                          trans(context.cast(builder, tb, ty[1], types.boolean)),
                          size(m_, ty[2]), size(n_, ty[3]), size(k_, ty[4]), ref(ir.Constant(f32, 1.0)),
                          data(a_, ty[5]), size(lda_, ty[6]), data(b_, ty[7]), size(ldb_, ty[8]),
                          ref(ir.Constant(f32, 0.0)), data(c_, ty[9]), size(ldc_, ty[10])])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, inline="always")
def matmul(a, b, out, ta=False, tb=False):
    """out ← op(a) op(b), op = transpose where ``ta``/``tb``; C-contiguous 2-D float32 arrays,
    ``out`` (m, n). Row-major out is column-major outᵀ = op(b)ᵀ op(a)ᵀ: one Fortran sgemm with the
    operands swapped, each read in place (no copies)."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("matmul needs C-contiguous arrays")
    m, n = out.shape
    k = a.shape[0] if ta else a.shape[1]
    if (a.shape[1] if ta else a.shape[0]) != m or (b.shape[1] if tb else b.shape[0]) != k or (b.shape[0] if tb else b.shape[1]) != n:
        raise ValueError("matmul: shapes of a, b and out do not match")  # as np.dot refused them
    if m == 0 or n == 0:
        return
    if k == 0:
        out[...] = 0.0
        return
    _sgemm(tb, ta, n, m, k, b, max(b.shape[1], 1), a, max(a.shape[1], 1), out, max(n, 1))


_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162  # CBLAS / MKL enum values


@functools.cache
def _pack_functions():
    """MKL's ``cblas_sgemm_pack_get_size`` and ``cblas_sgemm_pack`` (C interface, 32-bit integers) via ctypes."""
    size_fn = ctypes.CFUNCTYPE(ctypes.c_size_t, *[ctypes.c_int] * 4)(_torch_mkl_symbol("cblas_sgemm_pack_get_size"))
    pack_fn = ctypes.CFUNCTYPE(None, *[ctypes.c_int] * 6, ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                               ctypes.c_void_p)(_torch_mkl_symbol("cblas_sgemm_pack"))
    return size_fn, pack_fn


def pack_offsets(shapes: list, rows: int):
    """Where :func:`pack_weights` puts weights of ``shapes`` [(n, k), …] packed for ``rows`` rows: offsets
    (floats) of each weight's slot and, last, the total. Each slot is ``cblas_sgemm_pack_get_size`` long
    (rounded to 64 B): MKL writes a small header at its start and the packed data from a later aligned address."""
    import numpy as np

    size_fn, _ = _pack_functions()
    sizes = [-(-size_fn(_B_MATRIX, rows, n, k) // 64) * 16 for n, k in shapes]  # floats, 64-B multiples
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def pack_weights(weights: list, rows: int, empty=None):
    """``weights`` (n, k) float32 arrays packed by MKL (``cblas_sgemm_pack``, as the B of ``rows``-row
    products x Wᵀ: the layout torch's ``mkl._mkl_reorder_linear_weight`` makes) one after the other into one
    64-byte-aligned float32 buffer, from ``empty(n)`` (a 64-byte-aligned float32 array of ≥ n elements; default
    a new one). Returns (buffer, offsets): weight i starts at ``buffer[offsets[i]]``. Only where ``PACKED``.
    A weight may also be a pair ((n, k), make): ``make()`` gives the array when it is packed, dropped right
    after (so weights computed for packing exist one at a time, not all at once)."""
    import numpy as np

    _, pack_fn = _pack_functions()
    offsets = pack_offsets([w[0] if isinstance(w, tuple) else w.shape for w in weights], rows)
    total = int(offsets[-1])
    if empty is None:
        raw = np.empty(total + 16, np.float32)
        buffer = raw[(-raw.ctypes.data % 64) // 4 :][:total]
    else:
        buffer = empty(total)[:total]
        if buffer.ctypes.data % 64 or buffer.dtype != np.float32 or buffer.size != total:
            raise ValueError("pack_weights: empty(n) must give a 64-byte-aligned float32 array of ≥ n elements")
    for w, start in zip(weights, offsets):
        w = np.ascontiguousarray(w[1]() if isinstance(w, tuple) else w, dtype=np.float32)
        n, k = w.shape
        pack_fn(_ROW_MAJOR, _B_MATRIX, _TRANS, rows, n, k, 1.0, w.ctypes.data, k, buffer[start:].ctypes.data)
        del w  # a made weight: gone before the next is made
    return buffer, offsets[:-1]


@intrinsic
def _sgemm_compute(typingctx, m, n, k, a, lda, packed, offset, c, ldc):
    """MKL's ``cblas_sgemm_compute(RowMajor, NoTrans, Packed, m, n, k, a, lda, B, k, 0, c, ldc)``:
    c ← a Bᵀ with B (n, k) packed by ``cblas_sgemm_pack`` at ``packed[offset]``; ``a``, ``packed``, ``c``
    float32 arrays (their data pointers)."""
    if not all(isinstance(x, types.Array) and x.dtype == types.float32 for x in (a, packed, c)):
        raise TypingError(f"sgemm_compute takes float32 arrays, got {a}, {packed}, {c}")
    sig = types.void(m, n, k, a, lda, packed, offset, c, ldc)

    def codegen(context, builder, signature, args):
        i32, f32 = ir.IntType(32), ir.FloatType()
        cf = ir.PointerType(f32)

        def size(value, ty):
            return builder.trunc(context.cast(builder, value, ty, types.int64), i32)

        def data(value, ty):
            return builder.bitcast(context.make_array(ty)(context, builder, value).data, cf)

        m_, n_, k_, a_, lda_, p_, off_, c_, ldc_ = args
        ty = signature.args
        fnty = ir.FunctionType(ir.VoidType(), [i32] * 6 + [cf, i32, cf, i32, f32, cf, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, SYMBOL_PACKED)
        k32 = size(k_, ty[2])
        b = builder.gep(data(p_, ty[5]), [context.cast(builder, off_, ty[6], types.int64)])
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), ir.Constant(i32, _NO_TRANS), ir.Constant(i32, _PACKED),
                          size(m_, ty[0]), size(n_, ty[1]), k32, data(a_, ty[3]), size(lda_, ty[4]), b, k32,
                          ir.Constant(f32, 0.0), data(c_, ty[7]), size(ldc_, ty[8])])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, inline="always")
def packed_matmul(a, packed, offset, out):
    """out ← a Wᵀ for a (m, k) and W (n, k) packed for m rows by :func:`pack_weights` at ``packed[offset]``
    (only where ``PACKED``), out (m, n); rows of ``a`` and ``out`` may be strided (views of wider arrays),
    their columns contiguous."""
    m, n = out.shape
    if a.shape[0] != m or a.strides[1] != 4 or out.strides[1] != 4:
        raise ValueError("packed_matmul: a and out need m rows of contiguous columns")
    _sgemm_compute(m, n, a.shape[1], a, a.strides[0] // 4, packed, offset, out, out.strides[0] // 4)
