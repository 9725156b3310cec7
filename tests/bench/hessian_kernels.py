#!/usr/bin/env python3
# The two micro-measurements behind the calibration driver's Hessian choices (docs/performance.md), with
# Debian's torch on the same OpenBLAS that kick's LibTorch uses:
#   1. the reference inverse-Hessian factor chain (cholesky -> cholesky_inverse -> upper cholesky) on one
#      thread against all threads, at SmolLM2's widths: why kick factors each group on one thread;
#   2. accumulating X^T X over a 4096-token batch with BLAS ssyrk against GEMMs over the block upper
#      triangle (kick's fallback) and the full product.
# Run: OMP_WAIT_POLICY=passive /usr/bin/python3 tests/bench/hessian_kernels.py [--threads 2]
import argparse
import ctypes
import time

import torch


def best_ms(fn, repeats=7):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def factor_chain(h):
    lower = torch.linalg.cholesky(h)
    return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| width | factor chain, 1 thread ms | factor chain, %d threads ms |" % args.threads)
    print("|---:|---:|---:|")
    for width in (576, 1536):
        x = torch.randn(8192, width)
        h = x.t() @ x / 8192
        h.diagonal().add_(0.01 * h.diagonal().mean())
        torch.set_num_threads(1)
        one = best_ms(lambda: factor_chain(h))
        torch.set_num_threads(args.threads)
        many = best_ms(lambda: factor_chain(h))
        print(f"| {width} | {one:.1f} | {many:.1f} |")

    blas = ctypes.CDLL("libblas.so.3")
    torch.set_num_threads(args.threads)
    print("\n| width | ssyrk ms (GFLOP/s of the half) | block-upper GEMMs ms | full GEMM ms |")
    print("|---:|---:|---:|---:|")
    for width in (576, 1536):
        x = torch.randn(4096, width)
        h = torch.zeros(width, width)
        n, k = ctypes.c_int(width), ctypes.c_int(x.shape[0])
        alpha, beta = ctypes.c_float(1.0), ctypes.c_float(1.0)

        def syrk():
            blas.ssyrk_(b"L", b"N", ctypes.byref(n), ctypes.byref(k), ctypes.byref(alpha),
                        ctypes.c_void_p(x.data_ptr()), ctypes.byref(n), ctypes.byref(beta),
                        ctypes.c_void_p(h.data_ptr()), ctypes.byref(n))

        def block_upper(block=128):
            for j in range(0, width, block):
                w = min(block, width - j)
                h[j:j + w, j:].addmm_(x[:, j:j + w].t(), x[:, j:])

        def full():
            h.addmm_(x.t(), x)

        s = best_ms(syrk)
        rate = width * width * x.shape[0] / s / 1e6
        print(f"| {width} | {s:.1f} ({rate:.0f}) | {best_ms(block_upper):.1f} | {best_ms(full):.1f} |")


if __name__ == "__main__":
    main()
