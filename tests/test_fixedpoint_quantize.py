"""Energy-aware quantization: greedy per-layer widths, largest energy share first, within an accuracy drop."""

from __future__ import annotations

import json

import pytest
import torch

from hwaware.cli import main as cli_main
from hwaware.errors import HwawareError
from hwaware.eyeriss import Scorer
from hwaware.fixedpoint import convert
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
    # order: energy of each layer at 16 bits, scored independently
    wl = profile(model, calib[:16], progress=False)
    energies = {ls.name: ls.energy_total for ls in Scorer("eyeriss_v1").score(wl).layers}
    assert list(res.order) == sorted(energies, key=lambda k: -energies[k])
    assert trials[0].layer == res.order[0] and trials[0].bits == 8  # largest share, one step down first
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
    assert d["energy"] == pytest.approx(d["energy_8"])
    assert "vs uniform 16 bits" in capsys.readouterr().out
    assert cli_main(["quantize", "models/small_cnn.py", "--data", "builtin:shapes", "--widths", "a",
                     "--out", str(out)]) == 2
