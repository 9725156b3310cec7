"""Tests of the `kick` Python module (run by CTest with /usr/bin/python3 and Debian's python3-torch):
the bindings' compression of a weight equals the plain-PyTorch twin's fixtures the C++ tests use, a model
compressed through the bindings equals the one `kick compress` writes, and errors arrive as kick.Error."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
import torch

import kick

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "compress"
INDEX = json.loads((FIXTURES / "index.json").read_text())
KICK_BIN = os.environ.get("KICK_BIN", str(ROOT / "build" / "apps" / "kick"))
SCRATCH = pathlib.Path(os.environ.get("KICK_TEST_TMP", "/tmp")) / "python_bindings"


def fixture(name):
    shape = INDEX["tensors"][name]
    return torch.from_numpy(np.fromfile(FIXTURES / f"{name}.bin", dtype=np.float32).reshape(shape))


def test_prune_one_weight_equals_the_twin():
    W, scaler, H = fixture("W"), fixture("scaler"), fixture("H")
    magnitude = kick.prune("magnitude", W, sparsity=0.5)
    assert torch.equal(magnitude["weight"], fixture("magnitude_50"))
    wanda = kick.prune("wanda", W, scaler, sparsity=0.5)
    assert torch.equal(wanda["weight"], fixture("wanda_50"))
    assert int(wanda["mask"].sum()) == W.numel() // 2
    wanda_nm = kick.prune("wanda", W, scaler, pattern="2:4")
    assert torch.equal(wanda_nm["weight"], fixture("wanda_2of4"))
    sparsegpt = kick.prune("sparsegpt", W, H, sparsity=0.5, blocksize=48)
    expected = fixture("sparsegpt_50")
    assert (sparsegpt["weight"] - expected).abs().max() <= 1e-5 * W.abs().max()
    assert torch.equal(sparsegpt["weight"] == 0, expected == 0)
    assert sparsegpt["stats"]["error"] == pytest.approx(INDEX["scalars"]["sparsegpt_50_loss"], rel=1e-4)


def test_quantize_one_weight_equals_the_twin_and_gptq_beats_rtn():
    W, H = fixture("W"), fixture("H")
    rtn = kick.quantize("rtn", W, bits=4, group_size=32)
    assert torch.equal(rtn["weight"], fixture("rtn_b4_g32_asym"))
    gptq = kick.quantize("gptq", W, H, bits=4, group_size=32, blocksize=48)
    assert (gptq["weight"] - fixture("gptq_b4_g32_asym")).abs().max() <= 1e-4 * W.abs().max()
    assert gptq["codes"].dtype == torch.uint8 and gptq["codes"].shape == W.shape
    # Proxy loss tr((W - Q) H (W - Q)^T): GPTQ's is the smaller.
    def loss(Q):
        D = W - Q
        return float(torch.trace(D @ H @ D.T))
    assert loss(gptq["weight"]) <= loss(rtn["weight"])


def test_input_statistics_feed_the_solvers():
    X = fixture("X")
    stats = kick.input_statistics(X)
    assert torch.allclose(stats["hessian"], 2.0 / X.shape[0] * X.T @ X, rtol=1e-4, atol=1e-5)
    assert torch.allclose(stats["squared_norms"], (X * X).mean(0), rtol=1e-5)
    assert stats["tokens"] == X.shape[0]


def test_compress_model_equals_kick_compress(tmp_path_factory):
    SCRATCH.mkdir(parents=True, exist_ok=True)
    cli_dir = SCRATCH / "cli_wanda"
    subprocess.run([KICK_BIN, "compress", "-m", "stories260K", "--method", "wanda", "--sparsity", "0.5", "--nsamples", "4",
                    "--seqlen", "64", "-t", "1", "--overwrite", "-o", str(cli_dir)], check=True, capture_output=True)
    model = kick.load_model("stories260K", threads=1)
    report = kick.compress_model(model, "wanda", sparsity=0.5, nsamples=4, seqlen=64)
    assert report["overall_sparsity"] == pytest.approx(0.5, abs=1e-6)
    from_cli = kick.load_model(str(cli_dir), threads=1)
    for layer in range(model.num_layers):
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            assert torch.equal(model.linear(layer, name), from_cli.linear(layer, name)), (layer, name)
    saved = SCRATCH / "py_wanda"
    kick.save_model(model, str(saved), overwrite=True)
    described = json.loads((saved / "compression.json").read_text())
    assert described["stages"][0]["method"] == "wanda"
    ids = model.encode("Once upon a time")
    assert torch.equal(kick.load_model(str(saved), threads=1).logits(ids), model.logits(ids))


def test_evaluate_returns_the_summary():
    model = kick.load_model("stories260K", threads=1)
    summary = kick.evaluate(model, "factoid_qa", protocol="strict", limit=3, out_dir=str(SCRATCH / "eval"))
    assert summary["task"] == "factoid_qa"
    assert summary["examples"] == 3
    assert "factoid_em" in summary["metrics"]


def test_errors_are_kick_errors_with_the_reason():
    W = fixture("W")
    with pytest.raises(kick.Error, match="n < m|N >= M|n >= m"):
        kick.prune("wanda", W, fixture("scaler"), pattern="4:4")
    with pytest.raises(kick.Error, match="needs its statistic"):
        kick.prune("sparsegpt", W)
    with pytest.raises(kick.Error, match="group"):
        kick.quantize("rtn", W, bits=4, group_size=100)
    with pytest.raises(kick.Error, match="nonexistent"):
        kick.load_model("/nonexistent/model.gguf")
