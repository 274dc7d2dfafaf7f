"""Energy-aware quantization: greedy per-layer widths, largest energy share first, within an accuracy drop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwaware.cli import main as cli_main
from hwaware.errors import HwawareError
from hwaware.eyeriss import Scorer
from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.convert import calibrate_batchnorm
from hwaware.fixedpoint.quantize import BitWidthSearch
from hwaware.modelref import load_model
from hwaware.profiler import profile
from hwaware.train import evaluate


@pytest.fixture(scope="module")
def setup():
    from hwaware.data import make_loader

    torch.manual_seed(3)
    model = load_model("models/small_cnn.py:small_cnn", width=0.25)
    x = torch.cat([xb for xb, _ in make_loader("builtin:shapes", "train", batch_size=64, limit=160)])
    calibrate_batchnorm(model, list(x.split(64)))
    with torch.no_grad():  # labels = the float model's own classes: float top-1 is 100%
        val = [(xb, model(xb).argmax(1)) for xb in x[32:].split(64)]
    return model, x[:32], val


def test_greedy_search_order_limits_and_energy(setup):
    model, calib, val = setup
    search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=2.0, widths=(8, 4),
                            samples=32)
    trials = list(search.steps())
    res = search.result
    # order: energy of each layer at 16 bits, scored independently, per batch of 1 image (hwaware's
    # one batch convention: recipes, summary.md and `hwaware quantize` all report per batch of 1)
    wl = profile(model, calib[:16], progress=False).with_batch(1)
    assert res.batch == 1 and "per batch of 1)" in res.table()
    energies = {ls.name: ls.energy_total for ls in Scorer("eyeriss_v1").score(wl).layers}
    assert list(res.order) == sorted(energies, key=lambda k: -energies[k])
    assert (trials[0].layer, trials[0].bits) == ("*", 8)  # the start: every layer at 8 bits
    assert set(res.bits) == set(energies) and set(res.bits.values()) <= {16, 8, 4}
    for t in trials:
        assert t.accepted == (t.drop <= 2.0)
    # a rejected layer is never tried again
    rejected = [t.layer for t in trials if not t.accepted]
    assert len(rejected) == len(set(rejected))
    # the chosen widths keep the accuracy (measured again, independently of the search)
    fixed = convert(model, calib, bits={k: v for k, v in res.bits.items() if v < 16}, mode=res.mode,
                    rounding=res.rounding, overflow=res.overflow, samples=32)
    acc = evaluate(fixed, val)
    assert acc == pytest.approx(res.accuracy) and 100 * (res.float_accuracy - acc) <= 2.0
    assert res.float_accuracy == 1.0
    # energies: the scorer with the layers' widths replaced
    sc = Scorer("eyeriss_v1")

    def energy(bits):
        layers = tuple(lay.replace(weight_bits=bits.get(lay.name, 16), act_bits=bits.get(lay.name, 16))
                       for lay in wl.layers)
        return sc.score(type(wl)(layers, wl.unmodeled, wl.source)).total.energy_total

    assert res.energy == pytest.approx(energy(res.bits))
    assert res.energy_8 == pytest.approx(energy({k: 8 for k in energies}))
    # uniform trials first (start, then all layers one step down together while that holds)
    k = next((i for i, t in enumerate(trials) if t.layer != "*"), len(trials))
    assert all(t.layer != "*" for t in trials[k:])
    assert [t.bits for t in trials[:k]] == [8, 4][:k] and all(t.accepted for t in trials[:k - 1])
    if k < len(trials):  # first per-layer step: the layer whose step saves the most energy
        w0 = min([t.bits for t in trials[:k] if t.accepted], default=16)
        u = {name: w0 for name in energies}
        step = max(w for w in (8, 4) if w < w0)
        saved = {name: energy(u) - energy({**u, name: step}) for name in energies}
        assert trials[k].layer == max(saved, key=saved.get) and trials[k].bits == step
    assert res.energy_8 < res.energy_16 and res.energy <= res.energy_16
    assert res.saved_vs_16 == pytest.approx(1 - res.energy / res.energy_16)
    assert "energy saved" in res.table() and json.dumps(res.to_dict())


def test_bad_options(setup):
    model, calib, val = setup
    with pytest.raises(HwawareError, match="max_drop"):
        BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=-1)
    with pytest.raises(HwawareError, match="widths"):
        BitWidthSearch(model, calibration_data=calib, val_data=val, widths=(1,))


def test_cli_quantize(tmp_path, capsys):
    out = tmp_path / "q.json"
    rc = cli_main(["quantize", "models/small_cnn.py", "--data", "builtin:shapes", "--max-drop", "100",
                   "--widths", "8", "--samples", "16", "--val-samples", "32", "--out", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert set(d["bits"].values()) == {8}  # any drop allowed: every layer steps down
    assert d["batch"] == 1  # the same batch as the recipe summary's energies
    assert d["energy"] == pytest.approx(d["energy_8"])
    assert "vs uniform 16 bits" in capsys.readouterr().out
    assert cli_main(["quantize", "models/small_cnn.py", "--data", "builtin:shapes", "--widths", "a",
                     "--out", str(out)]) == 2
    # weights and inputs apart: after uniform 8 bits, each layer's weights and input step to 6 on their own
    rc = cli_main(["quantize", "models/small_cnn.py", "--data", "builtin:shapes", "--max-drop", "100", "--widths",
                   "8,6", "--descent-to", "8", "--separate-widths", "--finetune-steps", "0", "--samples", "16",
                   "--val-samples", "32", "--out", str(out), "--quiet"])
    assert rc == 0
    d = json.loads(out.read_text())
    moves = [(t["layer"], t["operand"]) for t in d["trials"][1:]]
    assert sorted(moves) == sorted((k, op) for k in d["bits"] for op in ("weights", "inputs"))
    assert set(d["bits"].values()) == {6} and d["act_bits"] == {}
    assert cli_main(["quantize", "models/small_cnn.py", "--data", "builtin:shapes", "--final-steps", "-1",
                     "--out", str(out)]) == 2


def test_fake_quantize_matches_the_backend_formats_and_rounding():
    from hwaware.fixedpoint.format import FixedFormat
    from hwaware.fixedpoint.qat import fake_quantize

    x = torch.linspace(-3, 3, 241, dtype=torch.float64)
    for f, b in ((2, 4), (0, 3), (5, 8)):
        ref = FixedFormat(f, b).dequantize(FixedFormat(f, b).quantize(x.numpy()))  # nearest, saturate
        assert torch.equal(fake_quantize(x, f, b), torch.from_numpy(ref))
    x.requires_grad_(True)
    fake_quantize(x, 2, 4).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight through


@pytest.mark.parametrize("arith", [{"mode": "eyeriss", "rounding": "floor", "overflow": "wrap"},
                                   {"mode": "eyeriss", "rounding": "nearest", "overflow": "wrap"},
                                   {"mode": "wide", "rounding": "floor", "overflow": "saturate"}])
def test_fake_quant_model_computes_what_the_integer_model_computes(setup, arith):
    """Every layer narrowed (shifts s = f_in + f_w - f_y <= 2): the fake-quantized float model and the
    integer model converted from the same weights (no bias correction) give the same outputs."""
    from hwaware.fixedpoint.qat import FakeQuant, fold_batchnorm

    model, calib, val = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    bits = {"conv1": 8, "conv2": 4, "conv3": 5, "conv4": 6, "fc": 6}
    fixed = convert(folded, calib, bits=bits, bias_correction=False, equalize=False, **arith)
    fq = FakeQuant(folded, bits, calibration_data=calib, **arith)
    ops = {op.name: op for op in fixed.int_ops}
    assert {k: ops[k].fxq.frac_bits for k in bits} == fq.input_frac  # the formats the backend chose
    assert {k: ops[k].fy.frac_bits for k in bits} == fq.out_frac
    x = torch.cat([xb for xb, _ in val])
    with torch.no_grad():
        y_fq, y_int = folded(x), fixed(x)
    w = folded.conv2.weight.detach().clone()  # the parametrized (fake-quantized) weight
    assert torch.equal(torch.from_numpy(ops["conv2"].fw.dequantize(ops["conv2"].w)).float(), w)
    assert (y_fq - y_int).abs().max() <= 1e-6 * y_int.abs().max()
    fq.remove()
    with torch.no_grad():
        assert (folded(x) - y_int).abs().max() > 1e-3  # without it the float model does differ
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("arith", [{"mode": "eyeriss", "rounding": "floor", "overflow": "wrap"},
                                   {"mode": "eyeriss", "rounding": "nearest", "overflow": "wrap"},
                                   {"mode": "wide", "rounding": "floor", "overflow": "wrap"}])
def test_fake_quant_with_clipped_formats_computes_what_the_integer_model_computes(setup, arith):
    """Formats chosen to clip (clip_formats), held fixed in the fake quantization and given to
    convert: the two compute the same, at widths down to 3 bits where shifts reach s >= 3."""
    from hwaware.fixedpoint.clip_formats import narrow_formats
    from hwaware.fixedpoint.qat import FakeQuant, fold_batchnorm

    model, calib, val = setup
    folded = fold_batchnorm(model)
    bits = {"conv1": 8, "conv2": 3, "conv3": 4, "conv4": 4, "fc": 5}
    fm = narrow_formats(folded, bits, calib, rounding=arith["rounding"])
    fixed = convert(folded, calib, bits=bits, bias_correction=False, equalize=False, narrow_formats=fm, **arith)
    fq = FakeQuant(folded, bits, calibration_data=calib, narrow_formats=fm, **arith)
    ops = {op.name: op for op in fixed.int_ops}
    assert {k: (ops[k].fxq.frac_bits, ops[k].fw.frac_bits) for k in bits} == fm
    assert {k: ops[k].fy.frac_bits for k in bits} == fq.out_frac
    x = torch.cat([xb for xb, _ in val])
    with torch.no_grad():
        y_fq, y_int = folded(x), fixed(x)
    assert (y_fq - y_int).abs().max() <= 1e-6 * y_int.abs().max()
    fq.remove()


@pytest.mark.parametrize("arith", [{"mode": "eyeriss", "rounding": "floor", "overflow": "wrap"},
                                   {"mode": "wide", "rounding": "nearest", "overflow": "saturate"}],
                         ids=["eyeriss-floor", "wide-nearest"])
def test_separate_weight_and_input_widths(setup, arith):
    """act_bits gives a layer's input its own width: the integer ops carry 3-bit weight codes and
    4-bit input codes (and a 16-bit input where only the weights narrow), and the fake quantization
    with the same widths and formats computes what the integer model computes."""
    from hwaware.fixedpoint.clip_formats import narrow_formats
    from hwaware.fixedpoint.qat import FakeQuant, fold_batchnorm

    model, calib, val = setup
    folded = fold_batchnorm(model)
    bits = {"conv1": 3, "conv2": 3, "conv3": 3, "conv4": 4, "fc": 4}
    act = {"conv1": 16, "conv2": 4, "conv3": 5, "conv4": 4, "fc": 6}
    fm = narrow_formats(folded, bits, calib, rounding=arith["rounding"], act_bits=act)
    fixed = convert(folded, calib, bits=bits, act_bits=act, bias_correction=False, equalize=False,
                    narrow_formats=fm, **arith)
    ops = {op.name: op for op in fixed.int_ops}
    assert {k: ops[k].fw.bits for k in bits} == bits
    assert {k: ops[k].fxq.bits if ops[k].fxq is not None else 16 for k in bits} == act
    assert 2 <= int(np.abs(ops["conv2"].w).max()) <= 4  # 3-bit codes: -4..3
    fq = FakeQuant(folded, bits, calibration_data=calib, narrow_formats=fm, act_bits=act, **arith)
    x = torch.cat([xb for xb, _ in val])
    with torch.no_grad():
        y_fq, y_int = folded(x), fixed(x)
    fq.remove()
    assert (y_fq - y_int).abs().max() <= 1e-6 * y_int.abs().max()
    # the same widths without act_bits compute something else (the inputs are narrowed to 3 bits)
    narrow = convert(folded, calib, bits=bits, bias_correction=False, equalize=False, narrow_formats=fm, **arith)
    with torch.no_grad():
        assert not torch.equal(narrow(x), y_int)
    with pytest.raises(HwawareError, match="act_bits names layer 'conv9'"):
        convert(folded, calib, bits=bits, act_bits={"conv9": 4})
    with pytest.raises(HwawareError, match=r"act_bits\['conv1'\] must be an integer within 2..16"):
        convert(folded, calib, bits=bits, act_bits={"conv1": 1})


def test_fake_quant_bias_correction_restores_the_mean_output(setup):
    """floor loses half a code per narrowed input on average; after correct_bias each layer's mean
    output per channel (calibration data) is the unquantized model's, to within one output code
    (the corrected bias is stored at f_y) plus what the later layers' rounding adds."""
    from hwaware.fixedpoint.qat import FakeQuant, fold_batchnorm

    model, calib, _ = setup
    ref, folded = fold_batchnorm(model), fold_batchnorm(model)
    fq = FakeQuant(folded, {"conv2": 4, "conv3": 4, "fc": 5}, calibration_data=calib)

    def means(m):
        out = {}
        hs = [dict(m.named_modules())[n].register_forward_hook(
            lambda mod, a, y, n=n: out.__setitem__(n, y.transpose(0, 1).reshape(y.shape[1], -1).mean(1)))
            for n in ("conv2", "conv3", "fc")]
        with torch.no_grad():
            m(calib)
        for h in hs:
            h.remove()
        return out

    want, before = means(ref), means(folded)
    fq.correct_bias(ref)
    after = means(folded)
    for n in want:
        lsb = 2.0 ** -fq.out_frac[n]
        assert (after[n] - want[n]).abs().max() <= lsb + 1e-6, n
        assert (before[n] - want[n]).abs().max() > 4 * lsb, n  # there was an error to correct
    fq.remove()


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_per_product_rounding_sum_is_exact(rounding, s):
    """The chip shifts every product before the sum; the correction term equals that, product by
    product (computed here from the unfolded codes in int64)."""
    from hwaware.fixedpoint.format import shift
    from hwaware.fixedpoint.qat import _rounding_sum

    g = torch.Generator().manual_seed(s)
    xc = torch.randint(-8, 8, (2, 3, 5, 5), generator=g)
    wc = torch.randint(-8, 8, (4, 3, 3, 3), generator=g)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    fx, fw = 2, 3
    got = _rounding_sum(conv, xc.double() / 2**fx, wc.double() / 2**fw, fx, fw, s, rounding, exact=True,
                        levels=16)  # 4-bit input codes
    cols = torch.nn.functional.unfold(xc.double(), 3, padding=1).long()  # N x (C*9) x L
    prods = cols[:, None, :, :] * wc.reshape(4, -1)[None, :, :, None]  # N x M x K x L
    want = (shift(prods, s, rounding).double() - prods.double() / 2**s).sum(2).reshape(2, 4, 5, 5)
    assert torch.equal(got, want)
    # a Linear layer: its products one by one, any input width
    lin = torch.nn.Linear(27, 4, bias=False)
    xl = torch.randint(-300, 300, (6, 27), generator=g)
    got = _rounding_sum(lin, xl.double() / 2**fx, wc.reshape(4, -1).double() / 2**fw, fx, fw, s, rounding,
                        exact=True, levels=1 << 10)
    prods = xl[:, None, :] * wc.reshape(4, -1)[None]
    assert torch.equal(got, (shift(prods, s, rounding).double() - prods.double() / 2**s).sum(2))


def test_search_with_quantization_aware_finetuning(setup):
    model, calib, val = setup
    train = [(xb, yb) for xb, yb in val]
    search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=5.0, widths=(6, 4),
                            samples=32, train_data=train, finetune_steps=2, finetune_lr=0.001)
    trials = list(search.steps())
    res = search.result
    assert trials and res.finetune_steps == 2 and res.model is not None
    narrowed = {k: v for k, v in res.bits.items() if v < 16}
    # the search's arithmetic; the biases and the narrow formats it trained with are kept
    assert set(res.narrow_formats) == set(narrowed)
    # ReLU'd inputs take unsigned codes: not the image (conv1), nor fc's globally averaged input
    assert set(res.unsigned_inputs) == set(narrowed) - {"conv1", "fc"}
    fixed = convert(res.model, calib, bits=narrowed or 16, samples=32, equalize=False, bias_correction=False,
                    narrow_formats=res.narrow_formats, act_bits=res.convert_act_bits() or None)
    assert evaluate(fixed, val) == pytest.approx(res.accuracy)  # reported accuracy = integer backend
    assert res.fake_quant_agreement >= 0.95 and abs(res.fake_quant_accuracy - res.accuracy) <= 0.05
    d = res.to_dict()
    assert "model" not in d and d["finetune_steps"] == 2 and json.dumps(d)
    assert "fake-quant" in res.table()
    with pytest.raises(HwawareError, match="needs train_data"):
        BitWidthSearch(model, calibration_data=calib, val_data=val, finetune_steps=3)


def test_search_with_separate_weight_and_input_widths(setup):
    """separate=True steps weights and inputs apart: the trials name their operand, a weights-only
    step leaves the input's width, the result's act_bits converts to the accuracy it reports, and its
    energy is the model's energy of those two widths (recomputed here from the workload)."""
    model, calib, val = setup
    train = [(xb, yb) for xb, yb in val]
    search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=100.0, widths=(6, 4, 3),
                            samples=32, train_data=train, finetune_steps=1, finetune_lr=0.001, separate=True,
                            descent_steps=2, final_steps=1, descent_to=4)
    trials = list(search.steps())
    res = search.result
    # uniform 8 (both), then all weights and all inputs apart at 6 and at 4 (max_drop 100: all kept)
    assert [(t.layer, t.bits, t.operand) for t in trials[:5]] == [
        ("*", 8, "both"), ("*", 6, "weights"), ("*", 6, "inputs"), ("*", 4, "weights"), ("*", 4, "inputs")]
    u6w = {k: 6 for k in search.order}
    assert trials[1].energy == pytest.approx(search.energy(u6w, {k: 8 for k in search.order}), rel=1e-12)
    assert trials[2].energy == pytest.approx(search.energy(u6w), rel=1e-12)
    assert {t.operand for t in trials[5:]} == {"weights", "inputs"}
    # max_drop 100 keeps every step: everything ends at the narrowest width, weights and inputs
    assert set(res.bits.values()) == {3} and res.act_bits == {}
    # the first per-layer move is the one that saves the most energy from uniform 4 bits
    u4 = {k: 4 for k in search.order}
    moves = {(k, "weights"): search.energy({**u4, k: 3}, u4) for k in search.order}
    moves.update({(k, "inputs"): search.energy(u4, {**u4, k: 3}) for k in search.order})
    first = trials[5]
    assert (first.layer, first.operand) == min(moves, key=moves.get) and first.bits == 3
    assert first.energy == pytest.approx(min(moves.values()), rel=1e-12)
    assert all(e < search.energy(u4) for e in moves.values())
    wl = search.workload
    want = Scorer("eyeriss_v1").score(type(wl)(tuple(lay.replace(weight_bits=3, act_bits=3) for lay in wl.layers),
                                              wl.unmodeled, wl.source)).total.energy_total
    assert res.energy == pytest.approx(want, rel=1e-9)
    assert res.final_steps == 1
    fixed = convert(res.model, calib, bits=res.bits, act_bits=res.convert_act_bits() or None, samples=32, equalize=False,
                    bias_correction=False, narrow_formats=res.narrow_formats)
    assert evaluate(fixed, val) == pytest.approx(res.accuracy)
    with pytest.raises(HwawareError, match="final_steps"):
        BitWidthSearch(model, calibration_data=calib, val_data=val, final_steps=-1)


def test_separate_descent_goes_on_with_the_weights_when_the_inputs_fail(setup, monkeypatch):
    """With separate widths the uniform descent steps all weights, then all inputs; an operand whose
    step breaks max_drop descends no further, the other goes on. Accuracy is stubbed: any input
    below 6 bits loses everything, weights never cost accuracy."""
    model, calib, val = setup
    train = [(xb, yb) for xb, yb in val]
    search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=1.0, widths=(6, 4, 3),
                            samples=32, train_data=train, finetune_steps=1, separate=True, descent_to=3)
    float_acc = evaluate(model, val)

    def stub(bits, state, formats=None, act_bits=None, steps=None):
        act = {**bits, **(act_bits or {})}
        search.last_formats = {}
        return (float_acc if min(act.values()) >= 6 else 0.0), state

    monkeypatch.setattr(search, "finetuned_accuracy", stub)
    trials = list(search.steps())
    descent = [(t.bits, t.operand, t.accepted) for t in trials if t.layer == "*"]
    assert descent == [(8, "both", True), (6, "weights", True), (6, "inputs", True), (4, "weights", True),
                       (4, "inputs", False), (3, "weights", True)]
    res = search.result
    assert set(res.bits.values()) == {3}
    assert set(res.act_bits.values()) == {6} and set(res.act_bits) == set(search.order)
    # the per-layer moves after it: no weights left to narrow, every input step fails
    assert all(t.operand == "inputs" and not t.accepted for t in trials[len(descent):])


def test_table_warns_when_the_integer_model_misses_max_drop():
    """A QAT result whose integer accuracy fell beyond max_drop is never reported silently."""
    from hwaware.fixedpoint.quantize import QuantizeResult

    kw = dict(bits={"conv1": 8}, order=("conv1",), energy_share={"conv1": 1.0}, float_accuracy=0.928,
              accuracy_16=0.928, accuracy_8=0.932, energy_16=2.0, energy_8=1.0, energy=0.9, max_drop=1.0,
              mode="eyeriss", rounding="floor", overflow="wrap", finetune_steps=8, fake_quant_accuracy=0.929,
              fake_quant_agreement=0.853)
    bad = QuantizeResult(accuracy=0.827, **kw).table()
    assert "WARNING" in bad and "10.10 points below float" in bad and "--finetune-steps 0" in bad
    assert "WARNING" not in QuantizeResult(accuracy=0.925, **kw).table()



class _Branches(torch.nn.Module):
    """Inputs of every kind: the image (c1), a max-pooled ReLU (c2), a raw conv output (c3), a residual
    sum with a ReLU (c4) and without (c5), a flattened ReLU (fc)."""

    def __init__(self) -> None:
        super().__init__()
        conv = lambda: torch.nn.Conv2d(4, 4, 3, padding=1)  # noqa: E731
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.c2, self.c3, self.c4, self.c5 = conv(), conv(), conv(), conv()
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)
        self.pool = torch.nn.MaxPool2d(2)

    def forward(self, x):
        h2 = self.c2(self.pool(torch.relu(self.c1(x))))
        h3 = self.c3(h2)
        y = self.c4(torch.relu(h3 + h2)) + self.c5(h3 + h2)
        return self.fc(torch.flatten(torch.relu(y), 1))


def test_nonnegative_inputs_follow_the_integer_graph():
    from hwaware.fixedpoint.clip_formats import input_code_bits, nonnegative_inputs

    torch.manual_seed(0)
    model = _Branches().eval()
    x = torch.randn(8, 3, 32, 32)
    got = nonnegative_inputs(convert(model, x, samples=8))
    assert got == {"c2", "c4", "fc"}
    assert input_code_bits({"c1": 3, "c2": 3, "fc": 16}, got) == {"c1": 3, "c2": 4, "fc": 16}


def test_unsigned_inputs_hold_codes_0_to_2_pow_a_minus_1(setup):
    """At 3-bit inputs, unsigned codes of the ReLU'd inputs (the search's default) against signed ones
    (``unsigned_inputs=False``): the unsigned model's narrowed inputs hold codes within 0..7 (all 8
    levels used) in a 4-bit format, its integer model computes what its fake quantization did, and
    the energy is the signed one's (the energy model moves 3 bits either way). What it buys in
    accuracy on trained networks is measured in bench/quantize_qat.py."""
    model, calib, val = setup
    train = [(xb, yb) for xb, yb in val]
    out = {}
    for unsigned in (True, False):
        torch.manual_seed(0)
        search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=100.0, widths=(3,),
                                samples=32, train_data=train, finetune_steps=2, separate=True, descent_to=3,
                                unsigned_inputs=unsigned)
        list(search.steps())
        out[unsigned] = search.result
    res = out[True]
    assert set(res.act_bits.values()) <= {3} and set(res.bits.values()) == {3}
    # signed: conv1 (the image) and fc (a global average pooling into a finer format, which may wrap)
    assert set(res.unsigned_inputs) == set(res.order) - {"conv1", "fc"} and not out[False].unsigned_inputs
    assert res.convert_act_bits() == {k: 4 for k in res.unsigned_inputs}
    assert res.energy == pytest.approx(out[False].energy, rel=1e-12)
    fixed = convert(res.model, calib, bits=res.bits, act_bits=res.convert_act_bits(), samples=32, equalize=False,
                    bias_correction=False, narrow_formats=res.narrow_formats)
    run = fixed.run(fixed.quantize_input(calib), keep=True)
    seen = set()
    for op in fixed.int_ops:
        if getattr(op, "fxq", None) is not None and op.name in res.unsigned_inputs:
            codes = op.prepare(run.values[op.inputs[0]], fixed.arith)
            assert op.fxq.bits == 4 and codes.min() >= 0 and codes.max() <= 7
            assert codes.max() == 7  # the clipped format uses the whole unsigned range
            seen.add(op.name)
    assert seen == set(res.unsigned_inputs)
    assert evaluate(fixed, val) == pytest.approx(res.accuracy)
    assert res.fake_quant_agreement >= 0.95
    assert "3u" in res.table()
