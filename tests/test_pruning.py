"""Magnitude pruning, least-squares restoration, and the pruning loop (hwaware.compress)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwaware.compress.energy_aware import capture_io, energy_order, least_squares_restore
from hwaware.compress.magnitude import Masks, load_pruned_state_dict, magnitude_masks
from hwaware.compress.prune import PruneConfig, Pruner, measure, prune
from hwaware.errors import HwawareError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster and does not fight other processes for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small_cnn(**kw):
    spec = importlib.util.spec_from_file_location("_t_small_cnn", ROOT / "models" / "small_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.small_cnn(**kw)


# -- magnitude masks ------------------------------------------------------------------------------


def test_layer_scope_prunes_exact_smallest_per_layer():
    torch.manual_seed(0)
    model = _small_cnn(width=0.5)
    masks = magnitude_masks(model, 0.6, scope="layer")
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = mod.weight.detach().abs().reshape(-1)
            k = round(0.6 * w.numel())
            thr = w.sort().values[k - 1]  # the k-th smallest |w|
            m = masks.masks[name].reshape(-1)
            assert int((~m).sum()) == k
            assert bool((w[~m] <= thr).all()) and bool((w[m] >= thr).all())


def test_global_scope_uses_one_threshold():
    torch.manual_seed(0)
    model = _small_cnn(width=0.5)
    masks = magnitude_masks(model, 0.7, scope="global")
    allw = torch.cat([m.weight.detach().abs().reshape(-1) for m in model.modules()
                      if isinstance(m, (nn.Conv2d, nn.Linear))])
    k = round(0.7 * allw.numel())
    thr = allw.sort().values[k - 1]
    assert masks.sparsity() == pytest.approx(k / allw.numel())
    for name, mod in model.named_modules():
        if name in masks.masks:
            w = mod.weight.detach().abs()
            assert bool((w[~masks.masks[name]] <= thr).all())
            assert bool((w[masks.masks[name]] >= thr).all())
    # layers differ: the threshold is global, not per layer
    assert len({round(s, 2) for s in masks.layer_sparsity().values()}) > 1


def test_masks_survive_finetuning():
    from hwaware.train import fit

    torch.manual_seed(0)
    model = _small_cnn(width=0.25)
    masks = magnitude_masks(model, 0.5, scope="global")
    masks.apply(model)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in masks.masks}
    data = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(3)]
    fit(model, data, epochs=1, lr=0.1, progress=False, after_step=masks.apply)
    for name, mod in model.named_modules():
        if name in masks.masks:
            assert bool((mod.weight[~masks.masks[name]] == 0).all())
            assert not torch.equal(mod.weight, before[name])  # the kept weights did train
    assert Masks.from_model(model).sparsity() == pytest.approx(masks.sparsity())


def test_state_dict_round_trip_with_module_prefix_and_torch_prune_format():
    import torch.nn.utils.prune as tprune

    torch.manual_seed(0)
    model = _small_cnn(width=0.25)
    masks = magnitude_masks(model, 0.8, scope="layer")
    masks.apply(model)
    x = torch.randn(2, 3, 32, 32)
    want = model.eval()(x)
    # DataParallel / DDP save a 'module.' prefix
    wrapped = nn.DataParallel(model)
    sd = wrapped.state_dict()
    assert all(k.startswith("module.") for k in sd)
    fresh = _small_cnn(width=0.25).eval()
    got = load_pruned_state_dict(fresh, sd)
    assert torch.equal(fresh(x), want)
    assert got.sparsity() == pytest.approx(masks.sparsity())
    # torch.nn.utils.prune keeps weight_orig + weight_mask: folded, never skipped
    other = _small_cnn(width=0.25)
    tprune.l1_unstructured(other.conv2, "weight", amount=0.5)
    fresh = _small_cnn(width=0.25)
    got = load_pruned_state_dict(fresh, other.state_dict())
    assert torch.equal(fresh.conv2.weight, other.conv2.weight)
    assert got.layer_sparsity()["conv2"] == pytest.approx(0.5)
    bad = dict(other.state_dict())
    del bad["conv2.weight_mask"]
    with pytest.raises(HwawareError, match="weight_mask"):
        load_pruned_state_dict(_small_cnn(width=0.25), bad)
    with pytest.raises(HwawareError, match="missing conv1.weight"):
        load_pruned_state_dict(_small_cnn(width=0.25), {k: v for k, v in model.state_dict().items()
                                                          if k != "conv1.weight"})


def test_bad_sparsity_and_scope():
    model = _small_cnn(width=0.25)
    with pytest.raises(HwawareError, match=r"\[0, 1\)"):
        magnitude_masks(model, 1.0)
    with pytest.raises(HwawareError, match="did you mean 'global'"):
        magnitude_masks(model, 0.5, scope="globl")
    with pytest.raises(HwawareError, match="did you mean 'conv2'"):
        magnitude_masks(model, {"conv22": 0.5})


# -- least-squares restoration --------------------------------------------------------------------


def _conv_cases():
    torch.manual_seed(0)
    return [
        (nn.Conv2d(6, 8, 3, padding=1, stride=2), torch.randn(16, 6, 12, 12)),
        (nn.Conv2d(8, 6, 3, padding=1, groups=2), torch.randn(16, 8, 10, 10)),
        (nn.Conv1d(5, 7, 3, padding=2, dilation=2), torch.randn(16, 5, 20)),
        (nn.Linear(24, 10), torch.randn(200, 24)),
    ]


@pytest.mark.parametrize("case", range(4))
def test_restoration_recovers_a_sparse_layer_exactly(case):
    """Outputs produced by a sparse weight W* are fit back to W* on its own support."""
    layer, x = _conv_cases()[case]
    with torch.no_grad():
        support = torch.rand_like(layer.weight) > 0.5
        true_w = layer.weight * support
        layer.weight.copy_(true_w)
        y = layer(x)
        layer.weight.add_(torch.randn_like(layer.weight))  # a different dense starting point
    w = least_squares_restore(layer, x, y, support, ridge=0.0)
    torch.testing.assert_close(w, true_w, atol=1e-4, rtol=1e-4)
    assert bool((w[~support] == 0).all())


def _correlated_like(x: torch.Tensor) -> torch.Tensor:
    """Non-negative inputs with the spatial / cross-feature correlation of real feature maps."""
    g = torch.Generator().manual_seed(1)
    if x.dim() > 2:
        coarse = torch.randn(*x.shape[:2], *(s // 2 for s in x.shape[2:]), generator=g)
        return F.relu(F.interpolate(coarse, size=x.shape[2:]) + 0.5)
    return F.relu(torch.randn(x.shape[0], 6, generator=g) @ torch.randn(6, x.shape[1], generator=g) + 0.5)


@pytest.mark.parametrize("case", range(4))
def test_restoration_beats_plain_magnitude_pruning(case):
    """Same mask, same sparsity: refitting the kept weights lowers the output error. Plain pruning is
    one feasible point of the least-squares problem, so the fit can never be worse; on correlated
    inputs (what real layers see) it is much better."""
    layer, x = _conv_cases()[case]
    mask = magnitude_masks(nn.Sequential(layer), 0.7).masks["0"]
    for inputs, factor in ((F.relu(x), 1.0), (_correlated_like(x), 0.8)):
        with torch.no_grad():
            y = layer(inputs)
            plain = copy.deepcopy(layer)
            restored = copy.deepcopy(layer)
            plain.weight.mul_(mask)
            restored.weight.copy_(least_squares_restore(layer, inputs, y, mask))
            err_plain = float((plain(inputs) - y).pow(2).mean())
            err_restored = float((restored(inputs) - y).pow(2).mean())
        assert err_restored < factor * err_plain
        assert int((restored.weight != 0).sum()) <= int(mask.sum())  # same sparsity (or more)


def test_capture_io_and_energy_order():
    model = _small_cnn(width=0.25).train()
    x, y = capture_io(model, model.conv2, torch.randn(3, 3, 32, 32))
    assert x.shape == (3, 8, 16, 16) and y.shape == (3, 16, 16, 16)
    assert model.training  # mode restored
    order = energy_order({"a": 1.0, "b": 5.0, "c": 2.0, "a#1": 3.0})
    assert order == ["b", "a", "c"]  # a = 1 + 3 (two calls of one module)
    assert energy_order({"a": 1.0, "b": 5.0}, candidates={"a"}) == ["a"]


# -- measurement relations --------------------------------------------------------------------------


def test_pruning_never_raises_macs_weights_or_energy():
    from hwaware.compress.surgery import prune_channels
    from hwaware.eyeriss import Scorer

    torch.manual_seed(0)
    model = _small_cnn(width=0.5).eval()
    calib = torch.randn(8, 3, 32, 32)
    scorer = Scorer("eyeriss_v1")
    base = measure(model, calib, scorer=scorer)
    # unstructured: only the last layer (its input activations are untouched by the pruning)
    last = copy.deepcopy(model)
    magnitude_masks(last, {"fc": 0.9}).apply(last)
    m = measure(last, calib, scorer=scorer)
    assert m.energy <= base.energy and m.nonzero_weights < base.nonzero_weights
    assert m.nonzero_macs <= base.nonzero_macs and m.macs == base.macs
    # per layer increasing sparsity of one conv: weight count and non-zero MACs fall monotonically
    prev = base
    for s in (0.3, 0.6, 0.9):
        pruned = copy.deepcopy(model)
        magnitude_masks(pruned, {"conv3": s}).apply(pruned)
        cur = measure(pruned, calib, scorer=scorer)
        assert cur.nonzero_weights < prev.nonzero_weights
        assert cur.layer_sparsity["conv3"] == pytest.approx(s, abs=1e-3)
        prev = cur
    # structured: strictly fewer MACs, weights, and less energy
    small = prune_channels(model, calib, "conv2", 16)
    s = measure(small, calib, scorer=scorer)
    assert s.macs < base.macs and s.weights < base.weights and s.energy < base.energy


# -- the loop -----------------------------------------------------------------------------------


def _toy_data():
    g = torch.Generator().manual_seed(0)
    train = [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(4)]
    val = [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))]
    return train, val


def _density(model):
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return float(sum((w != 0).sum() for w in ws) / sum(w.numel() for w in ws))


@pytest.mark.parametrize("method", ["energy", "magnitude", "structured", "l1-filter"])
def test_loop_respects_accuracy_limit_and_never_raises_energy(method):
    """A fake accuracy = 100% x fraction of non-zero weights (or of weights left, structured): the
    loop must stop where the allowed drop is used up and return the best model with a message."""
    torch.manual_seed(0)
    model = _small_cnn(width=0.25).eval()
    original = copy.deepcopy(model.state_dict())
    n0 = sum(p.numel() for p in model.parameters())

    def fake_accuracy(m):
        if method in ("structured", "l1-filter"):
            return sum(p.numel() for p in m.parameters()) / n0
        return _density(m)

    train, val = _toy_data()
    cfg = PruneConfig(method=method, target_energy=0.05, max_drop=45.0, step=0.4, min_step=0.2,
                      local_steps=1, global_steps=1, finetune_every=3, final_steps=1, max_steps=10)
    pruner = Pruner(model, train=train, val=val, config=cfg, evaluate_fn=fake_accuracy)
    steps = list(pruner.steps())
    result = pruner.result()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # input untouched
    prune_steps = [s for s in steps if s.kind == "prune"]
    assert any(s.accepted for s in prune_steps) and any(not s.accepted for s in prune_steps)
    current = result.baseline.energy
    for s in steps:  # a proposal is accepted iff within the drop limit and the energy fell
        if s.kind == "prune":
            drop = 100 * (1.0 - s.metrics.accuracy)
            assert s.accepted == (drop <= 45.0 + 1e-9 and s.metrics.energy < current), s
        if s.accepted:
            assert s.metrics.energy <= current * 1.01
            current = s.metrics.energy
    assert result.final.energy == current
    assert result.accuracy_drop <= 45.0 + 1e-9
    assert result.final.macs <= result.baseline.macs and result.final.nonzero_macs <= result.baseline.nonzero_macs
    assert not result.target_reached
    assert "not reachable" in result.message or "max_steps" in result.message
    if method in ("energy", "magnitude"):
        assert result.masks is not None
        assert 1 - _density(result.model) == pytest.approx(result.masks.sparsity(), abs=1e-6)


def test_max_latency_refuses_steps_that_map_slower():
    """``max_latency``: a proposal is accepted only while the Eyeriss latency stays within that fraction
    of the start's; a limit no pruned model can meet refuses every proposal, naming the latency."""
    torch.manual_seed(0)
    train, val = _toy_data()
    kw = {"train": train, "val": val, "method": "structured", "target_energy": 0.3, "max_drop": 100.0, "step": 0.4,
          "min_step": 0.2, "local_steps": 0, "global_steps": 0, "final_steps": 0, "max_steps": 6}
    free = prune(_small_cnn(width=0.25), **kw)
    start = free.baseline.latency_ms
    assert any(s.accepted for s in free.history)
    none = prune(_small_cnn(width=0.25), max_latency=0.01, **kw)  # 1% of the start: unreachable
    props = [s for s in none.history if s.kind == "prune"]
    assert props and not any(s.accepted for s in props)
    assert all("> max_latency" in s.message for s in props)
    assert none.final.energy == none.baseline.energy
    limit = 1.0
    capped = prune(_small_cnn(width=0.25), max_latency=limit, **kw)
    for s in capped.history:
        if s.kind == "prune" and s.accepted:
            assert s.metrics.latency_ms <= limit * start + 1e-12, s
        if s.kind == "prune" and "> max_latency" in s.message:
            assert s.metrics.latency_ms > limit * start and not s.accepted
    with pytest.raises(HwawareError, match="max_latency is a fraction"):
        PruneConfig(max_latency=-1.0)


def test_loop_stops_at_energy_target():
    torch.manual_seed(0)
    train, val = _toy_data()
    result = prune(_small_cnn(width=0.25), train=train, val=val, method="structured", target_energy=0.9,
                   max_drop=100.0, local_steps=0, final_steps=0, global_steps=0)
    assert result.target_reached and "target reached" in result.message
    assert result.energy_ratio <= 0.9
    with pytest.raises(HwawareError, match="did you mean 'energy'"):
        prune(_small_cnn(width=0.25), train=train, val=val, method="energi")
    with pytest.raises(HwawareError, match="unknown pruning option 'target'"):
        prune(_small_cnn(width=0.25), train=train, val=val, target=0.3)

def _count_steps(monkeypatch):
    """Count the optimizer steps every fine-tuning call of the loop asks for (an independent tally)."""
    from hwaware import train as train_mod

    asked = []
    real = train_mod.finetune

    def counting(model, loader, steps, **kw):
        asked.append(steps)
        return real(model, loader, steps, **kw)

    monkeypatch.setattr(train_mod, "finetune", counting)
    return asked


@pytest.mark.parametrize("method", ["magnitude", "structured"])
def test_finetune_budget_is_spent_exactly(method, monkeypatch):
    """With a budget every method trains exactly that many optimizer steps: proposals stop while the
    final fine-tune still fits, and the final fine-tune gets what is left (the fake accuracy never
    drops and these methods always lower the energy, so proposals are accepted)."""
    torch.manual_seed(0)
    train, val = _toy_data()
    asked = _count_steps(monkeypatch)
    cfg = PruneConfig(method=method, target_energy=0.01, max_drop=100.0, step=0.3, local_steps=3,
                      global_steps=4, finetune_every=2, final_steps=5, max_steps=40, finetune_budget=23)
    pruner = Pruner(_small_cnn(width=0.25).eval(), train=train, val=val, config=cfg, evaluate_fn=lambda m: 1.0)
    steps = list(pruner.steps())
    assert sum(asked) == 23 == pruner.finetune_steps_used
    assert steps[-1].kind == "final" and asked[-1] >= 5
    assert "budget" in pruner.result().message
    with pytest.raises(HwawareError, match="finetune_budget"):
        PruneConfig(final_steps=10, finetune_budget=5)


# -- command line -------------------------------------------------------------------------------

_TINY = "builtin:shapes?n_train=128&n_val=64&n_test=64"
_FAST = ["--max-steps", "2", "--local-steps", "1", "--global-steps", "1", "--final-steps", "1",
         "--batch-size", "32", "--calib-size", "8", "--no-progress"]


def _saved_small_cnn(path):
    from hwaware.checkpoint import save_model

    torch.manual_seed(0)
    save_model(_small_cnn(width=0.25), path, model_ref="models/small_cnn.py:small_cnn", model_args={"width": 0.25})
    return path


def test_cli_prunes_saves_and_never_touches_the_input(tmp_path, capsys):
    from hwaware.modelref import load_model_file
    from hwaware.cli import main

    src = _saved_small_cnn(tmp_path / "in.pt")
    before = src.read_bytes()
    out = tmp_path / "out.pt"
    rc = main(["prune", str(src), "--method", "magnitude", "--data", _TINY, "--out", str(out),
               "--max-drop", "100", "--target-energy", "0.99", "--logdir", str(tmp_path / "tb"), *_FAST])
    text = capsys.readouterr().out
    assert rc == 0 and out.exists() and src.read_bytes() == before
    assert not (tmp_path / "out.ckpt.pt").exists()  # removed once the run completed
    for row in ("Eyeriss energy", "latency (ms)", "non-zero MACs", "val accuracy", "test accuracy"):
        assert row in text
    assert "target reached" in text
    model, meta = load_model_file(out)
    assert meta["prune"]["config"]["method"] == "magnitude"
    assert any(f.name.startswith("events.out.tfevents") for f in (tmp_path / "tb").iterdir())
    # refusing to overwrite the input, one line, exit code 2
    rc = main(["prune", str(src), "--data", _TINY, "--out", str(src), *_FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "never overwritten" in err and len(err.strip().splitlines()) == 1


def test_cli_interrupt_leaves_a_loadable_checkpoint(tmp_path, capsys, monkeypatch):
    from hwaware.modelref import load_model_file
    from hwaware.cli import main

    original = Pruner.steps

    def interrupted(self):
        for step in original(self):
            yield step
            if step.accepted:
                raise KeyboardInterrupt

    monkeypatch.setattr(Pruner, "steps", interrupted)
    src = _saved_small_cnn(tmp_path / "in.pt")
    out = tmp_path / "out.pt"
    rc = main(["prune", str(src), "--method", "structured", "--data", _TINY, "--out", str(out),
               "--max-drop", "100", *_FAST])
    assert rc == 130 and not out.exists()
    ckpt = tmp_path / "out.ckpt.pt"
    assert "best model so far" in capsys.readouterr().err
    model, meta = load_model_file(ckpt)
    assert meta["prune"]["partial"] is True
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert model.conv1.out_channels < 8 or model.conv4.out_channels < 32 or model.conv2.out_channels < 16


def test_structured_nothing_prunable_says_why_by_group():
    """Every group blocked: the error says nothing can be pruned and lists each group's reason."""
    from hwaware.compress.channel_graph import ChannelGraph

    class Literal(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 30 * 30, 10)

        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 3600))  # a literal size blocks the conv's group

    graph = ChannelGraph(Literal(), torch.randn(1, 3, 32, 32))
    assert not graph.prunable_groups()
    msg = graph.why_nothing_prunable("structured pruning")
    assert msg.startswith("structured pruning: nothing can be pruned: none of the 2 channel groups")
    assert "'conv' passes through 'view' with a literal size 3600" in msg and "'fc' feeds the model output" in msg


# -- channel level: L1 filter ranking, the l1-filter baseline, restoration of the consumers --------


def test_l1_and_l2_filter_rankings_differ_where_the_norms_do():
    """Filter 0 = [1, 1, 1, 1] (L1 4, L2 2) and filter 1 = [3, 0, 0, 0] (L1 3, L2 3): Li et al.'s L1
    rule keeps filter 0 first, the L2 rule filter 1."""
    from hwaware.compress.surgery import ChannelGraph

    model = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2))
    graph = ChannelGraph(model, torch.randn(1, 1, 4, 4))
    assert graph.ranking("0", p=1) == [0, 1]
    assert graph.ranking("0") == [1, 0]
    with pytest.raises(HwawareError, match="norm must be 1 or 2"):
        graph.ranking("0", p=3)


def test_l1_filter_picks_the_weakest_filters_and_never_looks_at_energy():
    """The l1-filter baseline orders the channel groups by the smallest mean |w| of any filter
    (computed here independently) and one proposal removes round(fraction x size) filters of the
    first group, those of smallest L1 norm."""
    torch.manual_seed(0)
    model = _small_cnn(width=0.25).eval()
    with torch.no_grad():  # make conv1's weakest filter the weakest of the network
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        first.weight[1].mul_(1e-3)
    train, val = _toy_data()
    cfg = PruneConfig(method="l1-filter", step=0.5, local_steps=0, max_drop=100.0)
    pruner = Pruner(model, train=train, val=val, config=cfg, evaluate_fn=lambda m: 1.0)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    weakest = {n: float(m.weight.detach().reshape(m.weight.shape[0], -1).abs().mean(1).min()) for n, m in convs.items()}
    cands = pruner._criterion.candidates(pruner)
    assert cands == sorted(cands, key=lambda n: weakest[n])  # every conv is a group named by its producer
    name = cands[0]
    assert convs[name] is first
    note = pruner._criterion.propose(pruner, name, 0.5)
    assert "filter L1" in note
    w = first.weight.detach()
    n_keep = w.shape[0] - round(0.5 * w.shape[0])
    kept = sorted(torch.argsort(-w.reshape(w.shape[0], -1).abs().sum(1), stable=True)[:n_keep].tolist())
    assert 1 not in kept
    assert torch.equal(dict(pruner.model.named_modules())[name].weight.detach(), w[kept])


def _two_convs(width: int) -> nn.Sequential:
    """conv a (3 -> width channels), ReLU, conv b (width -> 5): one channel group, one consumer."""
    model = nn.Sequential()
    model.add_module("a", nn.Conv2d(3, width, 3, padding=1))
    model.add_module("relu", nn.ReLU())
    model.add_module("b", nn.Conv2d(width, 5, 3, padding=1))
    return model


def test_restore_consumers_recovers_a_duplicated_channel_exactly():
    """Channel 3 of conv a duplicates channel 0 and is the one removed (smallest L2, tie broken to
    the higher index); the consumer b refit by least squares on the remaining channels reproduces
    its unpruned output (it only needs to add channel 3's weights to channel 0's)."""
    from hwaware.compress.energy_aware import restore_consumers
    from hwaware.compress.surgery import ChannelGraph

    torch.manual_seed(0)
    model = _two_convs(4)
    with torch.no_grad():
        model.a.weight.mul_(10.0)
        model.a.weight[0] = 0.1 * torch.randn(3, 3, 3)
        model.a.weight[3] = model.a.weight[0]
        model.a.bias[3] = model.a.bias[0]
    model.eval()
    x = torch.randn(16, 3, 8, 8)
    graph = ChannelGraph(model, x[:1])
    assert graph.ranking("a")[-1] == 3
    small = graph.prune("a", 1).eval()
    with torch.no_grad():
        before = (small(x) - model(x)).abs().max().item()
    assert restore_consumers(model, small, graph.group("a").consumers, x, ridge=0.0) == ["b"]
    with torch.no_grad():
        after = (small(x) - model(x)).abs().max().item()
    assert before > 1e-2
    assert after < 1e-4 * max(1.0, model(x).abs().max().item())


def test_restore_consumers_keeps_zero_weights_and_fits_each_filter_on_its_kept_weights():
    """A weight-pruned consumer keeps its zeros through the channel-level refit, and each of its
    filters is the ordinary least-squares fit over that filter's kept weights (computed here
    independently with torch.linalg.lstsq on the unfolded input)."""
    from hwaware.compress.energy_aware import restore_consumers
    from hwaware.compress.surgery import ChannelGraph

    torch.manual_seed(0)
    model = _two_convs(6)
    with torch.no_grad():
        model.b.weight.mul_(torch.rand(model.b.weight.shape) > 0.6)  # about 60% zeros
    model.eval()
    x = torch.randn(16, 3, 8, 8)
    graph = ChannelGraph(model, x[:1])
    small = graph.prune("a", 2).eval()
    mask = small.b.weight.detach() != 0
    assert 0.5 < 1 - mask.float().mean().item() < 0.7
    assert restore_consumers(model, small, graph.group("a").consumers, x, ridge=0.0) == ["b"]
    w = small.b.weight.detach()
    assert torch.equal(w != 0, mask)  # no zero weight revived, none lost
    with torch.no_grad():
        cols = F.unfold(small.relu(small.a(x)), 3, padding=1).transpose(1, 2).reshape(-1, 4 * 9).double()
        target = (model(x) - model.b.bias.view(1, -1, 1, 1)).flatten(2).transpose(1, 2).reshape(-1, 5).double()
    for m in range(5):
        keep = mask[m].reshape(-1).nonzero().squeeze(1)
        expect = torch.linalg.lstsq(cols[:, keep], target[:, m:m + 1]).solution.squeeze(1)
        assert torch.allclose(w[m].reshape(-1)[keep].double(), expect, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["structured", "l1-filter"])
def test_channel_pruning_keeps_the_zero_weights_of_a_weight_pruned_model(method):
    """Channel methods on a model whose weights are 80% zero (magnitude-pruned): no zero weight is
    revived by the refit or the fine-tunes (the non-zero count only falls, step after step), the
    result's masks are its zeros, and the energy falls (no densification: the first proposal is
    accepted when accuracy does not matter)."""
    torch.manual_seed(0)
    model = _small_cnn(width=0.25).eval()
    magnitude_masks(model, 0.8, scope="global").apply(model)
    train, val = _toy_data()

    def nonzero(m):
        return sum(int((w != 0).sum()) for w in (x.weight for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))))

    cfg = PruneConfig(method=method, target_energy=0.01, max_drop=100.0, step=0.25, local_steps=2,
                      global_steps=2, finetune_every=1, final_steps=2, max_steps=2)
    pruner = Pruner(model, train=train, val=val, config=cfg, evaluate_fn=lambda m: 1.0)
    before = nonzero(model)
    seen = []
    for step in pruner.steps():
        now = nonzero(pruner.model)
        assert now <= before, step
        before = now
        seen.append(step)
    first = seen[0]
    assert first.kind == "prune" and first.accepted, first
    assert first.metrics.energy < pruner.baseline.energy
    result = pruner.result()
    assert result.final.nonzero_weights <= 0.2 * result.baseline.weights + 1
    assert 1 - _density(result.model) == pytest.approx(result.masks.sparsity(), abs=1e-6)
