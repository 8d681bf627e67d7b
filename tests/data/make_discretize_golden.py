#!/usr/bin/python3
"""Writes discretize_golden.json: scipy.signal.cont2discrete on random stable
systems, the oracle of tests/test_discretize.cpp.

Run with Debian's python (it has numpy and scipy; results were made with
scipy 1.10.1, numpy 1.24.2):

    /usr/bin/python3 tests/data/make_discretize_golden.py

Deterministic: one fixed numpy seed, and numpy's run-time SIMD dispatch
switched off (x86-64): with it, scipy's complex expm came out differently in
the last bit from run to run (presumably numpy SIMD/FMA loops that depend on
alignment). The output is written next to this script, wherever it is run
from.

Format:
    {"scipy": version, "numpy": version, "seed": int,
     "systems": [{"name": str, "diagonal": bool, "complex": bool,
                  "A": M, "B": M, "C": M, "D": M,
                  "results": [{"method": str, "alpha": float or null,
                               "dt": float,
                               "A": M, "B": M, "C": M, "D": M}]}]}
- A matrix M is a list of rows (row-major). In a complex system every entry
  is a pair [re, im]; in a real one a plain number.
- For a diagonal system the continuous A is stored as an N x 1 column holding
  its diagonal (scipy is given np.diag of it); the discrete results are
  always scipy's dense matrices, N x N.
- "method" is scipy's name: zoh, foh, impulse (only for D = 0), bilinear,
  euler, backward_diff, gbt (then "alpha" is set; null otherwise).
- Numbers are written with Python's repr (shortest round-trip), so a double
  parser gets scipy's values bit for bit.
"""

import json
import os
import platform

if platform.machine() in ("x86_64", "AMD64"):  # before numpy is imported
    os.environ["NPY_DISABLE_CPU_FEATURES"] = (
        "SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2 AVX512F AVX512CD "
        "AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL")

import numpy as np
import scipy
import scipy.linalg
import scipy.signal

SEED = 20240517
DTS = [1e-3, 0.1, 1.0, 3.0]
DTS_N16 = [1e-3, 0.1, 3.0]  # fewer for N = 16, to keep the file near 1 MB
METHODS = [("zoh", None), ("foh", None), ("impulse", None),
           ("bilinear", None), ("euler", None), ("backward_diff", None),
           ("gbt", 0.25), ("gbt", 0.8)]

rng = np.random.default_rng(SEED)


def randn(*shape, complex_=False):
    x = rng.standard_normal(shape)
    if complex_:
        x = x + 1j * rng.standard_normal(shape)
    return x


def well_conditioned(n, complex_=False):
    """A random n x n matrix with condition number below ~3: I plus a small
    perturbation, so that A = V diag(lambda) V^-1 is mildly non-normal."""
    return np.eye(n) + 0.3 * randn(n, n, complex_=complex_) / np.sqrt(n)


def real_stable(n, rate_lo=0.1, rate_hi=5.0):
    """Real A = V blockdiag(...) V^-1: real eigenvalues in -[rate_lo, rate_hi]
    and, for n >= 2, complex-conjugate pairs -s +- i w as 2x2 blocks."""
    blocks = []
    remaining = n
    while remaining > 0:
        s = rng.uniform(rate_lo, rate_hi)
        if remaining >= 2 and rng.uniform() < 0.6:
            w = rng.uniform(0.5, 4.0)
            blocks.append(np.array([[-s, w], [-w, -s]]))
            remaining -= 2
        else:
            blocks.append(np.array([[-s]]))
            remaining -= 1
    V = well_conditioned(n)
    return V @ scipy.linalg.block_diag(*blocks) @ np.linalg.inv(V)


def real_stable_sym_skew(n):
    """A = -(M M^T + 0.1 I) + (S - S^T): its symmetric part is negative
    definite, so every eigenvalue has real part <= -0.1."""
    M = randn(n, n) / np.sqrt(n)
    S = randn(n, n) / np.sqrt(n)
    return -(M @ M.T + 0.1 * np.eye(n)) + (S - S.T)


def complex_stable(n):
    lam = -rng.uniform(0.1, 3.0, n) + 1j * rng.uniform(-4.0, 4.0, n)
    V = well_conditioned(n, complex_=True)
    return V @ np.diag(lam) @ np.linalg.inv(V)


def io_matrices(n, p, q, complex_, zero_d):
    B = randn(n, p, complex_=complex_)
    C = randn(q, n, complex_=complex_)
    D = np.zeros((q, p)) if zero_d else randn(q, p, complex_=complex_)
    if complex_:
        D = D.astype(complex)
    return B, C, D


def encode(M):
    M = np.atleast_2d(M)
    if np.iscomplexobj(M):
        return [[[float(z.real), float(z.imag)] for z in row] for row in M]
    return [[float(x) for x in row] for row in M]


def system(name, A, B, C, D, diagonal=False):
    """Runs every method and dt on (A, B, C, D); A is the diagonal (an
    N-vector) when `diagonal`."""
    complex_ = any(np.iscomplexobj(M) for M in (A, B, C, D))
    if complex_:
        A, B, C, D = (np.asarray(M, dtype=complex) for M in (A, B, C, D))
    dense_A = np.diag(A) if diagonal else A
    assert np.all(np.linalg.eigvals(dense_A).real < 0), name
    results = []
    for dt in DTS if len(dense_A) < 16 else DTS_N16:
        for method, alpha in METHODS:
            if method == "impulse" and np.any(D != 0):
                continue
            kwargs = {"alpha": alpha} if alpha is not None else {}
            Ad, Bd, Cd, Dd, _ = scipy.signal.cont2discrete(
                (dense_A, B, C, D), dt, method=method, **kwargs)
            results.append({"method": method, "alpha": alpha, "dt": dt,
                            "A": encode(Ad), "B": encode(Bd),
                            "C": encode(Cd), "D": encode(Dd)})
    return {"name": name, "diagonal": diagonal, "complex": complex_,
            "A": encode(np.reshape(A, (-1, 1)) if diagonal else A),
            "B": encode(B), "C": encode(C), "D": encode(D),
            "results": results}


def dense_real(name, n, p, q, zero_d, make_A=real_stable):
    return system(name, make_A(n), *io_matrices(n, p, q, False, zero_d))


def dense_complex(name, n, p, q, zero_d):
    return system(name, complex_stable(n), *io_matrices(n, p, q, True, zero_d))


def main():
    systems = [
        dense_real("real N1 P1 Q1", 1, 1, 1, zero_d=False),
        dense_real("real N2 P1 Q1 D=0", 2, 1, 1, zero_d=True),
        dense_real("real N3 P2 Q1", 3, 2, 1, zero_d=False),
        dense_real("real N3 P1 Q2 D=0 sym+skew", 3, 1, 2, zero_d=True,
                   make_A=real_stable_sym_skew),
        dense_real("real N5 P3 Q2 D=0", 5, 3, 2, zero_d=True),
        dense_real("real N8 P2 Q2", 8, 2, 2, zero_d=False),
        dense_real("real N8 P3 Q1 stiff", 8, 3, 1, zero_d=False,
                   make_A=lambda n: real_stable(n, 0.01, 40.0)),
        dense_real("real N16 P1 Q1 D=0", 16, 1, 1, zero_d=True),
        dense_real("real N16 P2 Q2 sym+skew", 16, 2, 2, zero_d=False,
                   make_A=real_stable_sym_skew),
        dense_complex("complex N2 P1 Q1 D=0", 2, 1, 1, zero_d=True),
        dense_complex("complex N5 P2 Q2", 5, 2, 2, zero_d=False),
        dense_complex("complex N8 P1 Q2 D=0", 8, 1, 2, zero_d=True),
    ]
    # Diagonal systems: real rates; S4D-Lin (-1/2 + i pi n); S4D-Inv-like.
    n = 5
    systems.append(system("diagonal real N5 P2 Q1 D=0",
                          -rng.uniform(0.05, 8.0, n),
                          *io_matrices(n, 2, 1, False, zero_d=True),
                          diagonal=True))
    n = 8
    systems.append(system("diagonal complex S4D-Lin N8 P1 Q1 D=0",
                          -0.5 + 1j * np.pi * np.arange(n),
                          *io_matrices(n, 1, 1, True, zero_d=True),
                          diagonal=True))
    n = 16
    systems.append(system("diagonal complex S4D-Inv N16 P2 Q2",
                          -0.5 + 1j * (n / np.pi) * (n / (2 * np.arange(n) + 1) - 1),
                          *io_matrices(n, 2, 2, True, zero_d=False),
                          diagonal=True))

    out = {"scipy": scipy.__version__, "numpy": np.__version__, "seed": SEED,
           "systems": systems}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "discretize_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {len(systems)} systems, "
          f"{sum(len(s['results']) for s in systems)} cases, "
          f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
