#!/usr/bin/python3
"""Coefficients of the polynomial p(r) ~ 2^r on [-1/2, 1/2] used by
ssm::detail::exp2_nonpositive (include/ssm/detail/exp.hpp).

A near-minimax fit: least squares of the relative error on Chebyshev nodes in
the monomial basis, with p(0) = 1 fixed so that 2^0 is exact. Prints the
coefficients c1..c{deg} as float32 literals and the worst relative error of
their float32 Horner evaluation.

    /usr/bin/python3 scripts/fit_exp_poly.py [degree]
"""
import sys

import numpy as np

deg = int(sys.argv[1]) if len(sys.argv) > 1 else 6
nodes = 0.5 * np.cos(np.pi * (np.arange(4000) + 0.5) / 4000)
f = 2.0**nodes
V = np.stack([nodes**k for k in range(1, deg + 1)], axis=1) / f[:, None]
c, *_ = np.linalg.lstsq(V, (f - 1) / f, rcond=None)
c32 = c.astype(np.float32)
print("coefficients c1..c%d:" % deg)
for k, ck in enumerate(c32, start=1):
    print("  c%d = %.9ef" % (k, ck))

r = np.linspace(-0.5, 0.5, 400001).astype(np.float32)
acc = np.float32(c32[-1])
for ck in c32[-2::-1]:
    acc = (acc * r + ck).astype(np.float32)
p = (acc * r + np.float32(1)).astype(np.float32)
err = np.max(np.abs(p.astype(np.float64) / 2.0 ** r.astype(np.float64) - 1))
print("max relative error of the float32 Horner evaluation: %.3e (float eps %.3e)"
      % (err, np.finfo(np.float32).eps))
