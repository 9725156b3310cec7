#!/usr/bin/python3
"""Plain-PyTorch twin of kick's compression cores (lib/compress), written after the reference code of
locuslab/wanda (lib/prune.py, lib/layerwrapper.py), IST-DASLab/sparsegpt (sparsegpt.py),
IST-DASLab/gptq (gptq.py, quant.py) and mit-han-lab/llm-awq (auto_scale.py, auto_clip.py, quantizer.py).

It generates small seeded problems, runs every method and writes inputs and outputs to
tests/fixtures/compress/ (raw little-endian float32 .bin files and index.json) for tests/unit/test_compress.cpp.
Where kick deliberately departs from a reference the twin follows kick; each place is marked KICK.

Run with Debian's interpreter, which has torch 1.13:  /usr/bin/python3 tests/reference/compress_twin.py
"""
import json
import math
import os
import sys

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "compress")


# ---------- quantizer (gptq quant.py: Quantizer.find_params perchannel, quantize) ----------

def find_params(x, bits, sym):
    maxq = torch.tensor(2 ** bits - 1)
    tmp = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1)[0], tmp)
    xmax = torch.maximum(x.max(1)[0], tmp)
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)
        tmp = xmin < 0
        if torch.any(tmp):
            xmin[tmp] = -xmax[tmp]
    tmp = (xmin == 0) & (xmax == 0)
    xmin[tmp] = -1
    xmax[tmp] = +1
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    return scale.reshape(-1, 1), zero.reshape(-1, 1), maxq


def quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def rtn(W, bits, groupsize, sym):
    rows, cols = W.shape
    g = groupsize if groupsize > 0 else cols
    R = W.reshape(-1, g)
    scale, zero, maxq = find_params(R, bits, sym)
    return quantize(R, scale, zero, maxq).reshape(rows, cols)


# ---------- magnitude and wanda (wanda lib/prune.py) ----------

def nm_mask(metric, n, m):
    mask = torch.zeros_like(metric) == 1
    for ii in range(metric.shape[1]):
        if ii % m == 0:
            tmp = metric[:, ii:(ii + m)].float()
            mask.scatter_(1, ii + torch.topk(tmp, n, dim=1, largest=False)[1], True)
    return mask


def magnitude(W, ratio, n=0, m=0):
    metric = torch.abs(W)
    if n != 0:
        mask = nm_mask(metric, n, m)
    else:
        # KICK: exactly int(numel * ratio) pruned (stable order); the reference keeps metric <= sorted[k].
        k = int(W.numel() * ratio)
        mask = torch.zeros(W.numel(), dtype=torch.bool)
        mask[torch.sort(metric.flatten(), stable=True)[1][:k]] = True
        mask = mask.reshape(W.shape)
    out = W.clone()
    out[mask] = 0
    return out


def wanda(W, scaler_row, ratio, n=0, m=0):
    metric = torch.abs(W) * torch.sqrt(scaler_row.reshape((1, -1)))
    if n != 0:
        mask = nm_mask(metric, n, m)
    else:
        mask = torch.zeros_like(metric) == 1
        indices = torch.sort(metric, dim=-1, stable=True)[1][:, :int(metric.shape[1] * ratio)]
        mask.scatter_(1, indices, True)
    out = W.clone()
    out[mask] = 0
    return out


# ---------- Hessian (sparsegpt/gptq add_batch) ----------

def hessian(X, batch):
    H = torch.zeros((X.shape[1], X.shape[1]))
    nsamples = 0
    for start in range(0, X.shape[0], batch):
        inp = X[start:start + batch]
        tmp = inp.shape[0]  # KICK: tokens, not sequences, are counted (the scale cancels everywhere)
        inp = inp.t()
        H *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = math.sqrt(2 / nsamples) * inp.float()
        H += inp.matmul(inp.t())
    return H


def inverse_factor(H, percdamp):
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(H.shape[0])
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    return torch.linalg.cholesky(H, upper=True)


# ---------- SparseGPT (sparsegpt.py fasterprune) ----------

def sparsegpt(W, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=.01, quant=None):
    W = W.clone().float()
    H = H.clone()
    columns = W.shape[1]
    if quant is not None:
        scale, zero, maxq = find_params(W, quant["bits"], quant["sym"])
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Losses = torch.zeros(W.shape[0])
    Hinv = inverse_factor(H, percdamp)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            # KICK: exactly int(numel * sparsity) of the block (stable order); the reference keeps tmp <= sorted[k].
            k = int(tmp.numel() * sparsity)
            mask1 = torch.zeros(tmp.numel(), dtype=torch.bool)
            mask1[torch.sort(tmp.flatten(), stable=True)[1][:k]] = True
            mask1 = mask1.reshape(tmp.shape)
        else:
            mask1 = torch.zeros_like(W1) == 1
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            if quant is not None:
                q = quantize(q.unsqueeze(1), scale, zero, maxq).flatten()
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        Losses += torch.sum(Losses1, 1) / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, torch.sum(Losses).item()


# ---------- GPTQ (gptq.py fasterquant) ----------

def gptq(W, H, bits, sym, groupsize=-1, blocksize=128, percdamp=.01, actorder=False, static_groups=False):
    W = W.clone().float()
    H = H.clone()
    columns = W.shape[1]
    scale, zero, maxq = find_params(W, bits, sym)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        groups = [find_params(W[:, i:(i + groupsize)], bits, sym) for i in range(0, columns, groupsize)]
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)
    Losses = torch.zeros_like(W)
    Q = torch.zeros_like(W)
    Hinv = inverse_factor(H, percdamp)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != -1:
                if not static_groups:
                    if (i1 + i) % groupsize == 0:
                        scale, zero, maxq = find_params(W[:, (i1 + i):(i1 + i + groupsize)], bits, sym)
                else:
                    idx = i1 + i
                    if actorder:
                        idx = perm[idx]
                    scale, zero, maxq = groups[idx // groupsize]
            q = quantize(w.unsqueeze(1), scale, zero, maxq).flatten()
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        Losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    if actorder:
        Q = Q[:, invperm]
    return Q, torch.sum(Losses).item()


# ---------- AWQ (llm-awq auto_scale.py, auto_clip.py, quantizer.py) ----------

def pseudo_quantize_tensor(w, n_bit, q_group_size):
    # The reference's zero-point quantizer, kept as it is: kick uses the GPTQ grid instead, and the
    # fixtures prove the two agree on groups that straddle zero.
    org_w_shape = w.shape
    if q_group_size > 0:
        w = w.reshape(-1, q_group_size)
    max_val = w.amax(dim=1, keepdim=True)
    min_val = w.amin(dim=1, keepdim=True)
    max_int = 2 ** n_bit - 1
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    zeros = (-torch.round(min_val / scales)).clamp_(0, max_int)
    w = (torch.clamp(torch.round(w / scales) + zeros, 0, max_int) - zeros) * scales
    return w.reshape(org_w_shape)


def awq_scales(weights, x, n_bit, group_size, n_grid=20):
    # KICK: the error is over the group's Linear outputs (the reference runs the enclosing block).
    x_max = x.abs().view(-1, x.shape[-1]).mean(0)
    org_out = [x.matmul(w.t()) for w in weights]
    best_error, best_ratio, best_scales, history = float("inf"), -1, None, []
    for ratio in range(n_grid):
        ratio = ratio * 1 / n_grid
        scales = x_max.pow(ratio).clamp(min=1e-4).view(-1)
        scales = scales / (scales.max() * scales.min()).sqrt()
        squared, count = 0.0, 0
        for w, o in zip(weights, org_out):
            q = pseudo_quantize_tensor(w * scales.view(1, -1), n_bit, group_size) / scales.view(1, -1)
            squared += (o - x.matmul(q.t())).pow(2).sum().item()
            count += o.numel()
        loss = squared / count
        history.append(loss)
        if loss < best_error:
            best_error, best_ratio, best_scales = loss, ratio, scales
    return best_scales, best_ratio, best_error, history[0]


def awq_clip(w, input_feat, n_bit, group_size, n_grid=20, max_shrink=0.5, n_sample_token=512):
    group_size = group_size if group_size > 0 else w.shape[1]
    input_feat = input_feat.view(-1, input_feat.shape[-1])
    input_feat = input_feat.reshape(1, input_feat.shape[0], -1, group_size)
    # KICK: a stride of at least 1 (the reference's tokens // 512 is 0 below 512 tokens).
    input_feat = input_feat[:, 0::max(1, input_feat.shape[1] // n_sample_token)]
    w = w.reshape(w.shape[0], 1, -1, group_size)
    org_max_val = w.abs().amax(dim=-1, keepdim=True)
    best_max_val = org_max_val.clone()
    min_errs = torch.ones_like(org_max_val) * 1e9
    org_out = (input_feat * w).sum(dim=-1)
    for i_s in range(int(max_shrink * n_grid)):
        max_val = org_max_val * (1 - i_s / n_grid)
        cur_w = torch.clamp(w, -max_val, max_val)
        q_w = pseudo_quantize_tensor(cur_w, n_bit, group_size)
        cur_out = (input_feat * q_w).sum(dim=-1)
        err = (cur_out - org_out).pow(2).mean(dim=1).view(min_errs.shape)
        cur_best_idx = err < min_errs
        min_errs[cur_best_idx] = err[cur_best_idx]
        best_max_val[cur_best_idx] = max_val[cur_best_idx]
    return best_max_val.squeeze(1).squeeze(-1)


def awq_quantize(w, max_val, n_bit, group_size):
    org_shape = w.shape
    w = w.reshape(*max_val.shape[:2], -1)
    w = torch.clamp(w, -max_val.unsqueeze(-1), max_val.unsqueeze(-1)).reshape(org_shape)
    return pseudo_quantize_tensor(w, n_bit, group_size)


# ---------- fixtures ----------

def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rows, cols, tokens = 64, 128, 256
    mixing = torch.eye(cols) + 0.3 * torch.randn(cols, cols) / math.sqrt(cols)
    X = torch.randn(tokens, cols) @ mixing  # correlated channels, as real activations are
    outliers = [3, 50, 97, 120]
    X[:, outliers] *= 20
    W = torch.randn(rows, cols) * 0.05
    W2 = torch.randn(32, cols) * 0.05
    H = hessian(X, batch=64)
    scaler = (X ** 2).sum(0) / tokens

    os.makedirs(OUT, exist_ok=True)
    index = {"tensors": {}, "scalars": {}}

    def put(name, t):
        t = t.detach().float().contiguous()
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(t.numpy().astype("<f4").tobytes())
        index["tensors"][name] = list(t.shape)

    for name, t in [("X", X), ("W", W), ("W2", W2), ("H", H), ("scaler", scaler)]:
        put(name, t)

    put("magnitude_50", magnitude(W, 0.5))
    put("magnitude_2of4", magnitude(W, 0, 2, 4))
    put("wanda_50", wanda(W, scaler, 0.5))
    put("wanda_2of4", wanda(W, scaler, 0, 2, 4))
    for name, kw in [("sparsegpt_50", dict(sparsity=0.5)),
                     ("sparsegpt_2of4", dict(sparsity=0, prunen=2, prunem=4)),
                     ("sparsegpt_50_q4", dict(sparsity=0.5, quant={"bits": 4, "sym": False}))]:
        out, loss = sparsegpt(W, H, blocksize=48, **kw)
        put(name, out)
        index["scalars"][name + "_loss"] = loss

    for sym in (False, True):
        for g in (-1, 32):
            put(f"rtn_b4_g{g}_{'sym' if sym else 'asym'}", rtn(W, 4, g, sym))
    gptq_cases = [(False, -1, False, False), (True, -1, False, False), (False, 32, False, False),
                  (True, 32, False, False), (False, 32, True, False), (False, -1, True, False),
                  (False, 32, False, True), (True, 32, True, True)]
    for sym, g, act, static in gptq_cases:
        name = f"gptq_b4_g{g}_{'sym' if sym else 'asym'}{'_act' if act else ''}{'_static' if static else ''}"
        out, loss = gptq(W, H, 4, sym, groupsize=g, blocksize=48, actorder=act, static_groups=static)
        put(name, out)
        index["scalars"][name + "_loss"] = loss

    scales, ratio, error, error_at_1 = awq_scales([W, W2], X, 4, 32)
    put("awq_scales", scales)
    index["scalars"].update(awq_best_alpha=ratio, awq_error=error, awq_error_at_1=error_at_1)
    clip = awq_clip(W, X, 4, 32, n_sample_token=64)
    put("awq_clip", clip)
    put("awq_quantized", awq_quantize(W, clip, 4, 32))

    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    print("wrote", len(index["tensors"]), "tensors to", os.path.normpath(OUT))


if __name__ == "__main__":
    sys.exit(main())
