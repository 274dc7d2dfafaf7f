"""Reference networks, model references, saved models and the training utilities."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from hwaware import checkpoint, data, train
from hwaware.errors import HwawareError
from hwaware.modelref import default_input_size, is_workload_file, load_model, load_model_file

REPO = Path(__file__).resolve().parents[1]
# Eyeriss JSSC 2017 Tables III/V as data, shipped inside the package (a fresh clone has it)
REFERENCE = REPO / "hwaware" / "eyeriss" / "data" / "eyeriss_jssc2017_alexnet.json"


def _conv_linear_records(model, input_size):
    """Run one meta-device forward and record (name, module, input shape, output shape) for every
    Conv2d/Linear call, with hooks written here (independent of hwaware.profiler)."""
    records = []
    names = {m: n for n, m in model.named_modules()}

    def hook(mod, inputs, output):
        records.append((names[mod], mod, tuple(inputs[0].shape), tuple(output.shape)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.empty(1, *input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return records


def _totals(records):
    """(weights, MACs) per image: conv M*C/groups*R*S weights and E*F times that many MACs."""
    weights = macs = 0
    for _, m, _, out in records:
        w = m.weight.numel()
        weights += w
        macs += w * (out[2] * out[3] if isinstance(m, nn.Conv2d) else 1)
    return weights, macs


def _meta_model(ref, **kw):
    with torch.device("meta"):
        return load_model(ref, **kw)


# --- paper AlexNet ----------------------------------------------------------------------------

def test_alexnet_conv_shapes_match_eyeriss_table3():
    ref = json.loads(REFERENCE.read_text())
    model = _meta_model("models/alexnet.py:alexnet")
    convs = [r for r in _conv_linear_records(model, (3, 227, 227)) if isinstance(r[1], nn.Conv2d)]
    assert len(convs) == len(ref["layers"]) == 5
    for (name, m, inp, out), paper in zip(convs, ref["layers"]):
        assert name == paper["name"].lower()
        padded_h = inp[2] + 2 * m.padding[0]
        assert padded_h == paper["H"], name
        assert inp[3] + 2 * m.padding[1] == paper["H"], name  # square
        assert m.kernel_size == (paper["R"], paper["R"]), name
        assert m.stride == (paper["U"], paper["U"]), name
        assert m.groups == paper["groups"], name
        assert m.in_channels // m.groups == paper["C"], name
        assert m.out_channels == paper["M"], name
        assert out[2] == out[3] == paper["E"] == (paper["H"] - paper["R"]) // paper["U"] + 1, name


def test_alexnet_totals_match_survey_table2():
    """Sze et al. 2017, Table II: AlexNet 61M weights, 724M MACs; CONV MACs per Eyeriss Table V."""
    records = _conv_linear_records(_meta_model("models/alexnet.py"), (3, 227, 227))
    weights, macs = _totals(records)
    assert weights == pytest.approx(61e6, rel=0.01)
    assert macs == pytest.approx(724e6, rel=0.01)
    assert [r[0] for r in records] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    # Eyeriss Table V lists the CONV MACs at batch 4 in G: 0.42, 0.9, 0.6, 0.45, 0.3
    paper = [layer["measured"]["macs_G"] for layer in json.loads(REFERENCE.read_text())["layers"]]
    for (name, m, _, out), g in zip(records[:5], paper):
        assert 4 * m.weight.numel() * out[2] * out[3] / 1e9 == pytest.approx(g, rel=0.04), name


def test_alexnet_runs_on_real_input():
    torch.manual_seed(0)
    model = load_model("models/alexnet.py", num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 227, 227))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert default_input_size(model) == (3, 227, 227)


# --- other reference networks -----------------------------------------------------------------

def test_vgg16_totals_match_survey_table2():
    """Sze et al. 2017, Table II: VGG-16 138M weights, 15.5G MACs."""
    records = _conv_linear_records(_meta_model("models/vgg16.py"), (3, 224, 224))
    weights, macs = _totals(records)
    assert weights == pytest.approx(138e6, rel=0.01)
    assert macs == pytest.approx(15.5e9, rel=0.01)
    assert len(records) == 16 and records[0][0] == "conv1_1" and records[12][0] == "conv5_3"


def test_mobilenet_v1_totals_match_howard_2017():
    """Howard et al. 2017 (MobileNets), Table 4: 1.0 MobileNet-224 has 569M mult-adds, 4.2M weights."""
    records = _conv_linear_records(_meta_model("models/mobilenet_v1.py"), (3, 224, 224))
    weights, macs = _totals(records)
    assert weights == pytest.approx(4.2e6, rel=0.01)
    assert macs == pytest.approx(569e6, rel=0.01)
    dw = [m for _, m, _, _ in records if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(dw) == 13


def test_mobilenet_v1_width_and_resolution():
    model = _meta_model("models/mobilenet_v1.py:mobilenet_v1", width_mult=0.5, input_size=128)
    assert default_input_size(model) == (3, 128, 128)
    records = _conv_linear_records(model, (3, 128, 128))
    assert records[-1][1].in_features == 512  # 1024 * 0.5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 27
    with pytest.raises(HwawareError, match="multiple of 32"):  # a ValueError from the file
        load_model("models/mobilenet_v1.py", input_size=100)


def test_small_cnn_size_and_forward():
    model = load_model("models/small_cnn.py", num_classes=7)
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n_params <= 300_000
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    out = model.eval()(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 7)
    assert default_input_size("models/small_cnn.py") == (3, 32, 32)


def test_vgg_small_shapes_and_totals():
    """Conv/Linear totals counted by hand from the plan in the docstring: weights M*C*R*S and MACs
    weights*E*F per CONV (3x3, 'same' padding), in*out per FC."""
    model = _meta_model("models/vgg_small.py")
    records = _conv_linear_records(model, (3, 32, 32))
    assert [r[0] for r in records] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    convs = [(3, 32, 32), (32, 32, 32), (32, 64, 16), (64, 64, 16), (64, 128, 8)]  # (C, M, E=F)
    weights = sum(c * m * 9 for c, m, _ in convs) + 128 * 256 + 256 * 10
    macs = sum(c * m * 9 * e * e for c, m, e in convs) + 128 * 256 + 256 * 10
    assert _totals(records) == (weights, macs)
    assert [r[3][2] for r in records[:5]] == [32, 32, 16, 16, 8]
    assert default_input_size("models/vgg_small.py") == (3, 32, 32)


def test_trained_shapes_model_names_what_it_knows(tmp_path):
    with pytest.raises(HwawareError, match="unknown model 'resnet'.*small_cnn, vgg_small"):
        train.trained_shapes_model("resnet", cache_dir=tmp_path)


# --- model references -------------------------------------------------------------------------

def test_file_refs_stem_attr_model_instance_and_kwargs(tmp_path):
    f = tmp_path / "netdef.py"
    f.write_text(textwrap.dedent("""
        from torch import nn
        INPUT_SIZE = (1, 8, 8)
        def netdef(k=3):
            return nn.Conv2d(1, 2, k)
        def other():
            return nn.Linear(2, 2)
    """))
    assert load_model(str(f)).kernel_size == (3, 3)
    assert load_model(f"{f}:netdef", k=5).kernel_size == (5, 5)
    assert isinstance(load_model(f"{f}:other"), nn.Linear)
    assert default_input_size(str(f)) == (1, 8, 8)

    g = tmp_path / "inst.py"
    g.write_text("from torch import nn\nmodel = nn.Linear(3, 4)\n")
    a, b = load_model(str(g)), load_model(str(g))
    assert isinstance(a, nn.Linear) and a is not b  # a copy each time
    with torch.no_grad():
        a.weight.zero_()
    assert b.weight.abs().sum() > 0


def test_bundled_models_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model("models/small_cnn.py:small_cnn")
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 4


def test_torchvision_and_module_refs(tmp_path, monkeypatch):
    model = load_model("torchvision:resnet18", num_classes=10)
    assert model.fc.out_features == 10
    assert default_input_size("torchvision:resnet18") == (3, 224, 224)
    assert default_input_size(model) == (3, 224, 224)
    pkg = tmp_path / "mynets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "zoo.py").write_text("from torch import nn\nINPUT_SIZE = (3, 5, 5)\ndef tiny():\n    return nn.Linear(1, 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_model("mynets.zoo:tiny"), nn.Linear)
    assert default_input_size("mynets.zoo:tiny") == (3, 5, 5)


def test_bad_refs_give_one_line_errors(tmp_path):
    def err(ref, **kw):
        with pytest.raises(HwawareError) as e:
            load_model(ref, **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "not found" in err(str(tmp_path / "missing.py"))
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise RuntimeError('no GPU in\\nhere')\n")
    msg = err(str(bad))
    assert "failed to import" in msg and "RuntimeError: no GPU in here" in msg
    f = tmp_path / "defs.py"
    f.write_text("from torch import nn\ndef build_a():\n    return nn.Linear(1, 1)\nclass Net(nn.Module):\n    pass\n")
    msg = err(f"{f}:build_b")
    assert "no callable 'build_b'" in msg and "callables found: Net, build_a" in msg and "did you mean 'build_a'" in msg
    assert "callables found: Net, build_a" in err(str(f))  # no callable named like the stem
    assert "did you mean 'resnet18'" in err("torchvision:resnet81")
    assert "not downloaded" in err("torchvision:resnet18", weights="DEFAULT")
    assert "failed to import" in err("no_such_pkg_xyz.mod:fn")
    assert "workload file" in err("models/alexnet.yaml")
    nonmodel = tmp_path / "nm.py"
    nonmodel.write_text("def nm():\n    return 3\n")
    assert "expected an nn.Module" in err(str(nonmodel))
    assert "no argument 'no_such_kwarg'" in err("models/small_cnn.py", no_such_kwarg=1)
    with pytest.raises(HwawareError, match="unknown input size"):
        default_input_size(nn.Linear(2, 2))
    assert default_input_size(nn.Linear(2, 2), default=(2,)) == (2,)


def test_is_workload_file():
    assert is_workload_file("x/alexnet.yaml") and is_workload_file("a.YML") and is_workload_file("w.json")
    assert not is_workload_file("models/alexnet.py") and not is_workload_file("m.pt")


# --- saved models -----------------------------------------------------------------------------

def test_checkpoint_round_trip_same_and_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = load_model("models/small_cnn.py", width=0.5).eval()
    path = checkpoint.save_model(model, tmp_path / "sc.pt", meta={"note": "pruned 10%"})
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)

    loaded, meta = load_model_file(path)
    assert torch.equal(loaded.eval()(x), expected)
    assert meta["input_size"] == [3, 32, 32] and meta["note"] == "pruned 10%"
    assert meta["hwaware_version"] and meta["class"].endswith("SmallCNN")
    assert isinstance(load_model(str(path)), type(model))
    assert default_input_size(str(path)) == (3, 32, 32)
    raw = torch.load(path, weights_only=True)
    assert raw["state_dict"].keys() == model.state_dict().keys()

    # a model whose source file disappears after saving
    src = tmp_path / "gone.py"
    src.write_text("from torch import nn\nclass Gone(nn.Linear):\n    pass\ndef gone():\n    return Gone(2, 2)\n")
    gone = checkpoint.save_model(load_model(str(src)), tmp_path / "gone.pt")
    src.unlink()

    # A fresh interpreter has never imported these model files: the loader must rebuild the bundled
    # models/small_cnn.py from the recorded reference; the user file gone.py is imported only with
    # consent, and then its absence is a one-line error.
    torch.save(x, tmp_path / "x.pt")
    code = textwrap.dedent(f"""
        import torch
        from hwaware.modelref import load_model_file
        from hwaware.errors import HwawareError
        m, _ = load_model_file({str(path)!r})
        torch.save(m.eval()(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
        for trust in (False, True):
            try:
                load_model_file({str(gone)!r}, trust_source=trust)
            except HwawareError as e:
                print("ERROR:", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)
    first, second = proc.stdout.strip().splitlines()
    assert "--trust-source" in first and str(src) in first
    assert "not found" in second and str(src) in second


def test_checkpoint_errors(tmp_path):
    model = load_model("models/small_cnn.py", width=0.25)
    source = REPO / "models" / "small_cnn.py"
    before = source.read_bytes()
    with pytest.raises(HwawareError, match="must end in .pt"):
        checkpoint.save_model(model, source)
    assert source.read_bytes() == before
    with pytest.raises(HwawareError, match="meta must hold JSON values"):
        checkpoint.save_model(model, tmp_path / "bad.pt", meta={"f": lambda: 0})
    assert not (tmp_path / "bad.pt").exists()

    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(HwawareError, match="not a readable hwaware saved model"):
        load_model_file(tmp_path / "corrupt.pt")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(HwawareError, match="not a hwaware saved model.*state_dict"):
        load_model_file(tmp_path / "sd.pt")
    with pytest.raises(HwawareError, match="not found"):
        load_model_file(tmp_path / "none.pt")


# --- training utilities -----------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Train on one intra-op thread: on a shared 2-core machine two threads spin-wait for each
    other and a step costs several times more CPU (measured 0.05 s vs 0.45 s per step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fit_then_evaluate_clearly_above_chance(one_thread):
    """A half-width small_cnn sees 3000 training images twice (~5 s of CPU)."""
    torch.manual_seed(0)
    model = load_model("models/small_cnn.py", width=0.5)
    loader = data.make_loader("builtin:shapes", "train", batch_size=64, limit=3000)
    calls = []
    result = train.fit(model, loader, epochs=2, lr=3e-3, optimizer="adam", schedule="cosine",
                       progress=False, after_step=lambda m, step: calls.append(step))
    assert result.steps == 2 * 47 == len(calls) and calls[-1] == result.steps
    assert result.epochs == pytest.approx(2.0) and len(result.epoch_losses) == 2
    assert result.epoch_losses[1] < result.epoch_losses[0]
    test = data.make_loader("builtin:shapes", "test", batch_size=250)
    model.train()
    acc = train.evaluate(model, test)
    assert model.training  # mode restored
    assert acc >= 0.40, acc


def test_fit_is_deterministic_and_respects_max_steps(one_thread):
    states = []
    for _ in range(2):
        loader = data.make_loader("builtin:shapes?n_train=200", "train", batch_size=32, seed=3)
        torch.manual_seed(1)
        model = load_model("models/small_cnn.py", width=0.25)
        res = train.fit(model, loader, epochs=5, max_steps=4, lr=0.05, progress=False)
        assert res.steps == 4 and res.epochs == pytest.approx(4 / 7)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_fit_hook_signatures_and_errors():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    loader = data.make_loader("builtin:shapes?n_train=64", "train", batch_size=32)
    seen = []
    train.fit(model, loader, progress=False, after_step=lambda: seen.append("none"))
    train.fit(model, loader, progress=False, after_step=lambda m: seen.append(type(m).__name__))
    assert seen == ["none", "none", "Sequential", "Sequential"]
    with pytest.raises(HwawareError, match="unknown optimizer 'sgdd'"):
        train.fit(model, loader, optimizer="sgdd")
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(HwawareError, match="diverged"):
        train.fit(model, loader, progress=False)
    with pytest.raises(HwawareError, match="no samples"):
        train.evaluate(model, [])


def test_trained_small_cnn_caches_by_key(tmp_path, monkeypatch):
    calls = []

    def fake_fit(model, loader, **kw):  # no real training here: the bench measures that
        calls.append(kw["epochs"])
        with torch.no_grad():
            model.fc.bias.fill_(float(kw["epochs"]))
        return train.FitResult(1, 1.0, 0.5, 0.5, (0.5,), 0.0)

    monkeypatch.setattr(train, "fit", fake_fit)
    rng_before = torch.random.get_rng_state()
    a = train.trained_small_cnn(cache_dir=tmp_path, epochs=1, progress=False)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # caller's RNG untouched
    assert calls == [1] and not a.training
    assert len(list(tmp_path.glob("small_cnn-shapes-*.pt"))) == 1
    b = train.trained_small_cnn(cache_dir=tmp_path, epochs=1)
    assert calls == [1]  # cache hit: no training
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    monkeypatch.setenv("HWAWARE_CACHE", str(tmp_path))
    c = train.trained_small_cnn(epochs=2, progress=False)  # another key: trained again
    assert calls == [1, 2] and c.fc.bias.detach()[0].item() == 2.0
    assert len(list(tmp_path.glob("small_cnn-shapes-*.pt"))) == 2
