#!/usr/bin/python3
"""Plain-PyTorch twin of kick's whole compression pipeline (lib/compress/driver.cpp), for the compression
benchmark (tests/bench/compress_bench.sh) and as an end-to-end check that kick's compressed model is what
the reference pipelines produce.

It owns: a small safetensors reader, a plain LLaMA decoder layer (RMSNorm, rotate-half RoPE with the
config's rope_theta, grouped-query attention, SwiGLU) built from nn.Linear modules, and the layer-by-layer
calibration loop of the reference repositories (IST-DASLab/sparsegpt llama.py, locuslab/wanda prune.py,
IST-DASLab/gptq llama.py, mit-han-lab/llm-awq auto_scale.py/auto_clip.py): embed the calibration windows,
then per decoder layer run it with forward hooks on its Linears that accumulate statistics, solve every
Linear, and re-run the compressed layer to produce the next layer's inputs. The per-matrix algorithms come
from compress_twin.py. It times forward passes, statistics (time inside the hooks) and solve separately,
reports peak RSS, and compares its weights with the model.safetensors kick wrote.

Where the twin follows kick rather than a reference, the place is marked KICK:
- the calibration windows are kick's own (--calibration, written by `kick compress --save-calibration`);
- statistics count tokens, not sequences (every consumer is invariant to that overall scale);
- the next layer's inputs come from the compressed layer for every method (llm-awq feeds the next layer
  from the unquantized, scaled layer and quantizes at the very end);
- AWQ searches its scales and clipping on kick's strided token sample (every stride-th token of each
  forward batch, about 2048 tokens in all) and measures the scale-search error on the group's own Linear
  outputs (compress_twin.awq_scales) instead of the whole attention/MLP block;
- the relative output error of every Linear on the same sample is computed as compression.json reports it
  (--no-errors skips it; the references have no such report).
Options kick has that this benchmark does not use (true-sequential, N:M, act-order, recipes) are not offered.

Run with Debian's interpreter (torch 1.13 + numpy):
  /usr/bin/python3 tests/reference/compress_pipeline_twin.py -m HF_DIR --method gptq --bits 4 --group-size 64 \
      --calibration calib.safetensors --kick-output KICK_OUT_DIR --json result.json
"""
import argparse
import json
import math
import mmap
import os
import resource
import struct
import sys
import time

PROCESS_START = time.perf_counter()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compress_twin  # noqa: E402

LINEAR_NAMES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# Linears that read the same input, in kick's order (driver.cpp linear_groups).
GROUPS = [("attn_in", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
          ("attn_out", ["self_attn.o_proj"]),
          ("mlp_in", ["mlp.gate_proj", "mlp.up_proj"]),
          ("mlp_out", ["mlp.down_proj"])]
GROUP_OF = {name: key for key, names in GROUPS for name in names}
ERROR_SAMPLE_TOKENS = 2048   # driver.cpp kErrorSampleTokens
AWQ_CLIP_SAMPLES = 512       # AwqConfig::clip_samples
PRUNING = ("magnitude", "wanda", "sparsegpt")
CALIBRATED = ("wanda", "sparsegpt", "gptq", "awq")


# ---------- safetensors ----------

TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool}


class SafeTensors:
    """Tensors of one .safetensors file: views of a copy-on-write map (in-place edits never reach the
    file), or with mapped=False fresh copies read on demand (memory freed when dropped)."""

    def __init__(self, path, mapped=True):
        self.path = path
        self._file = open(path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY) if mapped else None
        head = os.pread(self._file.fileno(), 8, 0)
        if len(head) < 8:
            raise ValueError(f"{path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise ValueError(f"{path}: header length {n} runs past the end of the file")
        self.header = json.loads(os.pread(self._file.fileno(), n, 8))
        self._base = 8 + n

    def names(self):
        return [k for k in self.header if k != "__metadata__"]

    def get(self, name):
        info = self.header.get(name)
        if info is None:
            raise KeyError(f"{self.path}: no tensor {name}")
        if info["dtype"] not in TORCH_DTYPES:
            raise ValueError(f"{self.path}: tensor {name}: dtype {info['dtype']} not supported")
        dtype = TORCH_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        size = torch.tensor([], dtype=dtype).element_size()
        if end - begin != count * size:
            raise ValueError(f"{self.path}: tensor {name}: data_offsets {begin}..{end} do not hold shape {info['shape']}")
        if count == 0:
            return torch.zeros(info["shape"], dtype=dtype)
        if self._map is not None:
            return torch.frombuffer(self._map, dtype=dtype, count=count, offset=self._base + begin).view(info["shape"])
        data = bytearray(os.pread(self._file.fileno(), end - begin, self._base + begin))
        return torch.frombuffer(data, dtype=dtype).view(info["shape"])


# ---------- the decoder layer (HF LlamaDecoderLayer, eager attention) ----------

class RMSNorm(torch.nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def linear_module(weight):
    module = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    module.weight = torch.nn.Parameter(weight, requires_grad=False)
    return module


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(torch.nn.Module):
    def __init__(self, weights, config):
        super().__init__()
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads", self.heads)
        self.head_dim = config.get("head_dim", config["hidden_size"] // self.heads)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, name, linear_module(weights["self_attn." + name]))

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        repeat = self.heads // self.kv_heads  # HF repeat_kv
        k = k[:, :, None].expand(b, self.kv_heads, repeat, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
        v = v[:, :, None].expand(b, self.kv_heads, repeat, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.o_proj(out)


class MLP(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        for name in ("gate_proj", "up_proj", "down_proj"):
            setattr(self, name, linear_module(weights["mlp." + name]))

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(torch.nn.Module):
    def __init__(self, weights, config):
        super().__init__()
        eps = config.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(weights["input_layernorm"], eps)
        self.self_attn = Attention(weights, config)
        self.post_attention_layernorm = RMSNorm(weights["post_attention_layernorm"], eps)
        self.mlp = MLP(weights)

    def linear(self, name):
        return self.get_submodule(name)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


def rotary_tables(config, seqlen):
    head_dim = config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
    theta = config.get("rope_theta", 10000.0)
    # inv_freq in float64 then float32 (HF computes it in float32; they differ by at most an ulp).
    inv_freq = (1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)).float()
    freqs = torch.arange(seqlen, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[None, None], emb.sin()[None, None]


def causal_mask(seqlen):
    return torch.full((seqlen, seqlen), float("-inf")).triu(1)[None, None]


# ---------- statistics (hooks) ----------

class LinearStatistics:
    """What one hook accumulates: the reference's add_batch (H, SparseGPT/GPTQ) or scaler_row (Wanda)."""

    def __init__(self, columns, method):
        self.tokens = 0
        self.hessian = torch.zeros(columns, columns) if method in ("sparsegpt", "gptq") else None
        self.scaler_row = torch.zeros(columns) if method == "wanda" else None

    def add(self, x):
        x = x.reshape(-1, x.shape[-1]).float()
        n = x.shape[0]  # KICK: tokens
        keep = self.tokens / (self.tokens + n)
        self.tokens += n
        if self.hessian is not None:
            xt = math.sqrt(2 / self.tokens) * x.t()
            self.hessian *= keep
            self.hessian += xt.matmul(xt.t())
        if self.scaler_row is not None:
            self.scaler_row *= keep
            self.scaler_row += torch.norm(x, p=2, dim=0) ** 2 / self.tokens


class LayerCapture:
    """Forward hooks on one layer's Linears. shared=False is the references' way (one accumulator per
    Linear, so q/k/v and gate/up each accumulate the same statistics); shared=True is kick's (one per
    input group). The token sample is kept once per group either way."""

    def __init__(self, layer, method, sample_stride, shared):
        self.stats, self.samples, self.seconds, self.handles = {}, {key: [] for key, _ in GROUPS}, 0.0, []
        for name in LINEAR_NAMES:
            first_of_group = any(names[0] == name for _, names in GROUPS)
            if shared and not first_of_group:
                continue
            module = layer.linear(name)
            stats = LinearStatistics(module.in_features, method)
            key = GROUP_OF[name]
            self.stats[key if shared else name] = stats
            self.handles.append(module.register_forward_hook(self._hook(stats, key if first_of_group else None, sample_stride)))

    def _hook(self, stats, sample_key, stride):
        def hook(module, inputs, output):
            start = time.perf_counter()
            x = inputs[0]
            stats.add(x)
            if sample_key is not None:
                flat = x.reshape(-1, x.shape[-1])
                self.samples[sample_key].append(flat[::stride].float().clone())
            self.seconds += time.perf_counter() - start
        return hook

    def statistics_of(self, name, shared):
        return self.stats[GROUP_OF[name] if shared else name]

    def sample(self, key):
        return torch.cat(self.samples[key], 0) if self.samples[key] else None

    def remove(self):
        for h in self.handles:
            h.remove()


def relative_output_error(original, x, compressed, x_seen, row_fold=None):
    """driver.cpp relative_output_error: ||W x - W' x'||^2 / ||W x||^2 on the token sample; where AWQ divided
    W's rows by the next group's scales, W is the folded W / row_fold (the error measures quantization)."""
    if x is None or x.shape[0] == 0:
        return -1.0
    if row_fold is not None:
        original = original / row_fold.view(-1, 1)
    reference = x.matmul(original.t())
    diff = reference - x_seen.matmul(compressed.t())
    return (diff.pow(2).sum() / reference.pow(2).sum().clamp(min=1e-30)).item()


# ---------- solving one layer ----------

def awq_clip_rows(weight, x, args):
    # llm-awq auto_clip's output-channel batches (oc_batch_size): bounds the broadcast product's memory.
    rows = 256 if weight.shape[0] % 256 == 0 else 64
    return torch.cat([compress_twin.awq_clip(weight[r:r + rows], x, args.bits, args.group_size, n_grid=20,
                                             max_shrink=0.5, n_sample_token=AWQ_CLIP_SAMPLES)
                      for r in range(0, weight.shape[0], rows)], 0)


def solve_layer(layer, capture, args):
    """Compresses every Linear of the layer in place; returns {linear: relative output error}."""
    method = args.method
    originals = {name: layer.linear(name).weight.detach().clone() for name in LINEAR_NAMES} if args.errors else {}
    samples = {key: (capture.sample(key) if capture else None) for key, _ in GROUPS}
    seen = dict(samples)
    row_folds = {}
    if method == "awq":
        attn = layer.self_attn
        for key, names in GROUPS:
            # llm-awq skips v -> o scaling when the shapes differ (grouped-query attention).
            if key == "attn_out" and attn.v_proj.weight.shape != attn.o_proj.weight.shape:
                continue
            weights = [layer.linear(n).weight for n in names]
            # KICK: searched on the token sample, error over the group's Linear outputs.
            scales, _, _, _ = compress_twin.awq_scales(weights, samples[key], args.bits, args.group_size, n_grid=20)
            if key == "attn_in":
                layer.input_layernorm.weight.div_(scales)
            elif key == "mlp_in":
                layer.post_attention_layernorm.weight.div_(scales)
            elif key == "attn_out":
                attn.v_proj.weight.div_(scales.view(-1, 1))
                row_folds["self_attn.v_proj"] = scales
            else:
                layer.mlp.up_proj.weight.div_(scales.view(-1, 1))
                row_folds["mlp.up_proj"] = scales
            for w in weights:
                w.mul_(scales.view(1, -1))
            seen[key] = samples[key] / scales.view(1, -1)
    errors = {}
    for key, names in GROUPS:
        for name in names:
            w = layer.linear(name).weight
            if method == "magnitude":
                new = compress_twin.magnitude(w, args.sparsity)
            elif method == "wanda":
                new = compress_twin.wanda(w, capture.statistics_of(name, args.shared_stats).scaler_row, args.sparsity)
            elif method == "sparsegpt":
                new, _ = compress_twin.sparsegpt(w, capture.statistics_of(name, args.shared_stats).hessian,
                                                 args.sparsity, blocksize=args.blocksize, percdamp=args.percdamp)
            elif method == "rtn":
                new = compress_twin.rtn(w, args.bits, args.group_size, False)
            elif method == "gptq":
                new, _ = compress_twin.gptq(w, capture.statistics_of(name, args.shared_stats).hessian, args.bits, False,
                                            groupsize=args.group_size, blocksize=args.blocksize, percdamp=args.percdamp)
            else:  # awq: llm-awq auto_clip skips q/k
                if name in ("self_attn.q_proj", "self_attn.k_proj"):
                    new = compress_twin.pseudo_quantize_tensor(w, args.bits, args.group_size)
                else:
                    new = compress_twin.awq_quantize(w, awq_clip_rows(w, seen[key], args), args.bits, args.group_size)
            w.copy_(new)
            if args.errors:  # KICK: compression.json's output_error_sample
                errors[name] = relative_output_error(originals[name], samples[key], w, seen[key], row_folds.get(name))
    return errors


# ---------- the pipeline ----------

def compress(args, config, layers, embed, windows, timing, kick):
    """Layer by layer, as the reference repositories do. Returns {layer: {linear: output error}}. With
    kick's output at hand each layer is compared as soon as it is solved (untimed); --follow-kick then
    continues from kick's weights for that layer, so that every layer is solved from the inputs kick
    saw and the comparison measures each layer's solve rather than the drift of earlier layers."""
    errors = {}
    calibrate = args.method in CALIBRATED
    if calibrate:
        n, seqlen = windows.shape
        start = time.perf_counter()
        inputs = F.embedding(windows, embed)
        outputs = torch.empty_like(inputs)
        cos, sin = rotary_tables(config, seqlen)
        mask = causal_mask(seqlen)
        timing["forward"] += time.perf_counter() - start
        # KICK: the token sample (for AWQ's searches and the error report), strided per forward batch.
        sample_floor = max(AWQ_CLIP_SAMPLES, ERROR_SAMPLE_TOKENS) if args.method == "awq" else ERROR_SAMPLE_TOKENS
        sample_stride = max(1, n * seqlen // sample_floor)
    for index, layer in enumerate(layers):
        capture = None
        if calibrate:
            start = time.perf_counter()
            capture = LayerCapture(layer, args.method, sample_stride, args.shared_stats)
            for w in range(0, n, args.forward_batch):
                layer(inputs[w:w + args.forward_batch], cos, sin, mask)
            capture.remove()
            timing["statistics"] += capture.seconds
            timing["forward"] += time.perf_counter() - start - capture.seconds
        start = time.perf_counter()
        errors[index] = solve_layer(layer, capture, args)
        timing["solve"] += time.perf_counter() - start
        if kick is not None:
            start = time.perf_counter()
            kick.compare_layer(index, layer)
            if args.follow_kick:
                kick.adopt_layer(index, layer)
            timing["compare"] += time.perf_counter() - start
        if calibrate:  # KICK: for AWQ too, the next inputs come from the compressed layer
            start = time.perf_counter()
            for w in range(0, n, args.forward_batch):
                outputs[w:w + args.forward_batch] = layer(inputs[w:w + args.forward_batch], cos, sin, mask)
            inputs, outputs = outputs, inputs
            timing["forward"] += time.perf_counter() - start
        if args.progress:
            print(f"twin: layer {index + 1}/{len(layers)} done, {time.perf_counter() - PROCESS_START:.1f}s", file=sys.stderr)
    return errors


def load_model(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    if config.get("rope_scaling") not in (None, {}):
        raise ValueError(f"{folder}/config.json: rope_scaling {config['rope_scaling']} is not plain RoPE")
    st = SafeTensors(os.path.join(folder, "model.safetensors"))
    for name in st.names():
        if st.header[name]["dtype"] != "F32":
            raise ValueError(f"{st.path}: tensor {name} is {st.header[name]['dtype']}; the twin runs fp32 folders only")
    layers = []
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        weights = {name: st.get(prefix + name + ".weight") for name in LINEAR_NAMES}
        weights["input_layernorm"] = st.get(prefix + "input_layernorm.weight")
        weights["post_attention_layernorm"] = st.get(prefix + "post_attention_layernorm.weight")
        layers.append(DecoderLayer(weights, config))
    return config, layers, st.get("model.embed_tokens.weight"), st


def layer_tensors(layer):
    """(name under model.layers.N., weight) of every tensor a decoder layer owns."""
    names = [(n, layer.linear(n).weight) for n in LINEAR_NAMES]
    return names + [("input_layernorm", layer.input_layernorm.weight),
                    ("post_attention_layernorm", layer.post_attention_layernorm.weight)]


def save_model(folder, source, layers):
    """The compressed model as model.safetensors (+ config.json) in folder, every tensor of the source file
    with the layers' current weights in place of the originals: the artifact `kick compress` writes, with the
    same durability (written to a temporary name, fsynced, renamed), so that both sides do the same work."""
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name in source.names():
        tensors[name] = None  # filled below; keeps the source's order
    for i, layer in enumerate(layers):
        for name, weight in layer_tensors(layer):
            tensors[f"model.layers.{i}.{name}.weight"] = weight
    header, offset = {}, 0
    for name in tensors:
        if tensors[name] is None:
            tensors[name] = source.get(name)
        t = tensors[name] = tensors[name].detach().contiguous()
        size = t.numel() * t.element_size()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    final = os.path.join(folder, "model.safetensors")
    temporary = final + ".tmp"
    with open(temporary, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for t in tensors.values():
            f.write(t.numpy().data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    with open(os.path.join(os.path.dirname(source.path), "config.json")) as src, \
         open(os.path.join(folder, "config.json"), "w") as dst:
        dst.write(src.read())


class KickOutput:
    """kick's compressed folder, compared with the twin's layers one at a time."""

    def __init__(self, folder, method):
        self.model = SafeTensors(os.path.join(folder, "model.safetensors"), mapped=False)
        with open(os.path.join(folder, "compression.json")) as f:
            self.report = json.load(f)["stages"][-1]["report"]
        self.method = method
        self.tensors = {}

    def layer_tensors(self, index, layer):
        return layer_tensors(layer)

    def compare_layer(self, index, layer):
        for name, twin in self.layer_tensors(index, layer):
            ref = self.model.get(f"model.layers.{index}.{name}.weight")
            d = (twin - ref).abs()
            entry = {"max_abs": d.max().item(), "diff_sq": d.double().pow(2).sum().item(),
                     "ref_sq": ref.double().pow(2).sum().item(), "numel": ref.numel(),
                     "equal": (d <= 1e-6 + 1e-4 * ref.abs()).sum().item()}
            entry["rel_fro"] = math.sqrt(entry["diff_sq"] / max(entry["ref_sq"], 1e-300))
            if self.method in PRUNING and name in LINEAR_NAMES:
                entry["mask_agree"] = ((twin == 0) == (ref == 0)).sum().item()
            self.tensors[f"model.layers.{index}.{name}"] = entry

    def adopt_layer(self, index, layer):
        """Replaces the layer's weights by kick's, so the next layer's inputs are those kick saw."""
        for name, twin in self.layer_tensors(index, layer):
            twin.copy_(self.model.get(f"model.layers.{index}.{name}.weight"))

    def summary(self, errors):
        linears = {k: v for k, v in self.tensors.items() if k.rsplit(".", 2)[-2] in ("self_attn", "mlp")}
        total = sum(v["numel"] for v in linears.values())
        error_diffs = []
        for i, per_linear in errors.items():
            reported = self.report["layers"][i]["linears"]
            for name, value in per_linear.items():
                kick_value = reported[name]["output_error_sample"]
                error_diffs.append(abs(value - kick_value) / max(abs(kick_value), 1e-12))
        error_diffs.sort()
        worst = max(self.tensors.items(), key=lambda kv: kv[1]["rel_fro"])
        pruning = self.method in PRUNING
        return {"max_abs_diff": max(v["max_abs"] for v in self.tensors.values()),
                "rel_fro_diff": math.sqrt(sum(v["diff_sq"] for v in linears.values()) /
                                          max(sum(v["ref_sq"] for v in linears.values()), 1e-300)),
                "worst_tensor": worst[0], "worst_rel_fro": worst[1]["rel_fro"],
                "entries": total,
                "unequal_entries": total - sum(v["equal"] for v in linears.values()),
                "mask_disagreements": total - sum(v["mask_agree"] for v in linears.values()) if pruning else None,
                "output_error_max_rel_diff": error_diffs[-1] if error_diffs else None,
                "output_error_median_rel_diff": error_diffs[len(error_diffs) // 2] if error_diffs else None}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", required=True, help="HF folder (fp32 model.safetensors + config.json), e.g. from kick convert")
    p.add_argument("--method", required=True, choices=["magnitude", "wanda", "sparsegpt", "rtn", "gptq", "awq"])
    p.add_argument("--calibration", help="kick's --save-calibration file (input_ids int64 [nsamples, seqlen])")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--percdamp", type=float, default=0.01)
    p.add_argument("--blocksize", type=int, default=128)
    p.add_argument("--forward-batch", type=int, default=8, help="windows per layer forward (kick's default; the references use 1)")
    p.add_argument("--shared-stats", action="store_true", help="one accumulator per input group as kick (default: one per Linear, as the references)")
    p.add_argument("--no-errors", dest="errors", action="store_false", help="skip the per-Linear output error kick reports")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kick-output", help="kick compress output folder to compare with")
    p.add_argument("--follow-kick", action="store_true",
                   help="after comparing each layer, continue from kick's weights (needs --kick-output)")
    p.add_argument("--json", help="write timings and the comparison here")
    p.add_argument("--save", metavar="DIR", help="write the compressed model here (model.safetensors, fsynced), timed as kick's save is")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    if args.method in CALIBRATED and not args.calibration:
        p.error(f"--method {args.method}: needs --calibration")
    if args.follow_kick and not args.kick_output:
        p.error("--follow-kick: needs --kick-output")
    if args.method not in PRUNING and args.group_size <= 0:
        p.error("--group-size: the twin runs grouped quantization only (a positive group size)")

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    timing = {"load": 0.0, "forward": 0.0, "statistics": 0.0, "solve": 0.0, "compare": 0.0, "save": 0.0}
    start = time.perf_counter()
    config, layers, embed, model_file = load_model(args.model)
    windows = None
    if args.method in CALIBRATED:
        windows = SafeTensors(args.calibration, mapped=False).get("input_ids")
        if windows.dim() != 2:
            raise ValueError(f"{args.calibration}: input_ids has shape {list(windows.shape)} (expected [nsamples, seqlen])")
    timing["load"] = time.perf_counter() - start

    kick = KickOutput(args.kick_output, args.method) if args.kick_output else None
    start = time.perf_counter()
    errors = compress(args, config, layers, embed, windows, timing, kick)
    # The comparison (reading kick's file) is not the twin's work: its time and the memory of kick's
    # tensors it touched are left out below (the RSS only approximately: pages stay resident).
    timing["total"] = time.perf_counter() - start - timing["compare"]
    if args.save:
        start = time.perf_counter()
        save_model(args.save, model_file, layers)
        timing["save"] = time.perf_counter() - start
    result = {"method": args.method, "threads": args.threads, "forward_batch": args.forward_batch,
              "shared_stats": args.shared_stats, "follow_kick": args.follow_kick,
              "calibration": list(windows.shape) if windows is not None else None,
              "seconds": timing, "wall_seconds": time.perf_counter() - PROCESS_START - timing["compare"],
              "cpu_seconds": cpu_seconds(), "peak_rss_mib": peak_rss_mib()}
    print(f"twin {args.method}: wall {result['wall_seconds']:.1f}s (load {timing['load']:.1f}s, forward "
          f"{timing['forward']:.1f}s, statistics {timing['statistics']:.1f}s, solve {timing['solve']:.1f}s, "
          f"save {timing['save']:.1f}s), "
          f"cpu {result['cpu_seconds']:.1f}s, peak RSS {result['peak_rss_mib']:.0f} MiB")
    if kick is not None:
        summary = kick.summary(errors if args.errors else {})
        result["agreement"] = summary
        result["tensors"] = kick.tensors
        line = (f"twin vs kick{' (following kick layer by layer)' if args.follow_kick else ''}: max |diff| "
                f"{summary['max_abs_diff']:.3g}, relative Frobenius {summary['rel_fro_diff']:.3g} (worst "
                f"{summary['worst_tensor']} {summary['worst_rel_fro']:.3g}), {summary['unequal_entries']} of "
                f"{summary['entries']} Linear entries differ")
        if summary["mask_disagreements"] is not None:
            line += f", {summary['mask_disagreements']} mask positions disagree"
        if summary["output_error_max_rel_diff"] is not None:
            line += (f", reported output errors differ by {summary['output_error_median_rel_diff']:.2g} (median) / "
                     f"{summary['output_error_max_rel_diff']:.2g} (max) relative")
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
