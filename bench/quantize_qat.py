"""Energy-aware bit widths with quantization-aware fine-tuning vs uniform 8 bits (issue 17, item 1).

On networks trained on builtin:shapes (``--models``: the small CNN and a ResNet-18, models/resnet18.py)
the search starts from uniform 8 bits and narrows layers by energy saved per accuracy lost, with
``--finetune-steps`` of fake-quantized fine-tuning per per-layer trial (``--descent-steps`` per all-layers
trial; weights and inputs stepped apart unless ``--joint``; narrowed layers in clipped formats chosen
for the least error, fixedpoint/clip_formats.py), and reports the Eyeriss energy of
the chosen widths against uniform 8 bits, the top-1 of the integer backend converted from the
fine-tuned model, and the anchor (HAQ, Wang et al. CVPR 2019: 1.9x less energy than fixed 8 bits
at negligible accuracy loss, on BitFusion). The first table says what the energy model allows at
all: uniform widths relative to uniform 8 bits, and the share of the energy that does not scale
with the operand width (partial sums stay 16-bit in the RF, array and GLB: the chip accumulates
at 16 bits whatever the operands, JSSC 2017 Sec. III; the MAC scales as w_bits x a_bits / 256, an
ifmap or weight access as bits / 16).

Then the arms, each with the fake-quantized validation accuracy the fine-tuning saw, the integer
model's (converted from the fine-tuned weights, eyeriss/floor/wrap), their top-1 agreement and the
integer model's test accuracy: uniform 8 bits post-training (the reference), uniform widths with
``--uniform-steps`` of quantization-aware fine-tuning (the energy floor: how narrow the energy-heavy
layers can go at all), and the energy-aware search with ``--finetune-steps`` per trial.

    python bench/quantize_qat.py     # both networks; weights and inputs apart, all layers 8 -> 4 bits (400 steps),
                                     # then per-layer steps to 3 bits (30 steps each), 100 final steps;
                                     # ReLU'd inputs unsigned (--signed-inputs: the ablation); 5000 val / 5000 test
    python bench/quantize_qat.py --models small_cnn --uniform 4,3/4 --joint --widths 6,5,4,3 --final-steps 0
    python bench/quantize_qat.py --json q.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from hwaware.data import make_loader
from hwaware.eyeriss import Scorer
from hwaware.fixedpoint.quantize import BitWidthSearch
from hwaware.profiler import profile
from hwaware.report_table import format_table
from hwaware.train import SHAPES_MODELS, evaluate, trained_shapes_model

HAQ_GAIN = 1.9  # HAQ (Wang et al., CVPR 2019): energy vs fixed 8 bits on BitFusion, negligible top-1 loss
TARGET_GAIN = 1.5  # issue 17


def uniform_table(model: torch.nn.Module, images: torch.Tensor, widths: list[int]) -> tuple[list[list[str]], dict]:
    """Energy at uniform widths / uniform 8 bits, and the energy by data type and level at 8 bits."""
    scorer = Scorer("eyeriss_v1")
    wl = profile(model, images, progress=False).with_batch(1)  # the search's convention: per batch of 1

    def report(bits: int):
        layers = tuple(lay.replace(weight_bits=bits, act_bits=bits) for lay in wl.layers)
        return scorer.score(type(wl)(layers, wl.unmodeled, wl.source))

    e8 = report(8).total.energy_total
    rows, ratios = [], {}
    for b in [16, *widths]:
        r = report(b).total
        ratios[b] = r.energy_total / e8
        rows.append([f"uniform {b}", f"{ratios[b]:.3f}", f"{e8 / r.energy_total:.2f}x",
                     *(f"{100 * v / r.energy_total:.0f}%" for v in r.energy_by_type.values())])
    t = report(8).total
    return rows, {"ratios": ratios, "by_type_8": dict(t.energy_by_type), "by_level_8": dict(t.energy),
                  "types": list(t.energy_by_type)}


def run_model(name: str, args: argparse.Namespace) -> dict:
    """The energy table and the arms of one network; prints both tables, returns the numbers."""
    from hwaware.fixedpoint.convert import convert
    from hwaware.fixedpoint.verify import accuracy_and_agreement

    widths = [int(w) for w in args.widths.split(",")]
    model = trained_shapes_model(name, progress=True)
    calib = make_loader("builtin:shapes", "train", batch_size=64, limit=256, seed=0)
    # the generator makes as many images as asked: a larger validation set makes the search's
    # decisions less noisy (1000 images: +-0.8 points at 92% top-1, one sigma, as large as max_drop)
    val = make_loader(f"builtin:shapes?n_val={args.val}", "val", batch_size=500, limit=args.val)
    test = make_loader(f"builtin:shapes?n_test={args.test}", "test", batch_size=500, limit=args.test)
    train = make_loader("builtin:shapes", "train", batch_size=64, shuffle=True, seed=0)
    images = next(iter(make_loader("builtin:shapes", "train", batch_size=16, seed=1)))[0]

    rows, energy = uniform_table(model, images, sorted({w for w in widths if w < 8}, reverse=True))
    print(f"\n{name}: Eyeriss v1 energy per batch of 1 (as the search scores) at uniform widths relative to "
          f"uniform 8 bits (share of each data type in that width's energy)")
    print(format_table(["widths", "E / E(8b)", "saved vs 8b", *energy["types"]], rows))
    by8 = energy["by_type_8"]
    tot8 = sum(by8.values())
    print(f"at 8 bits: psum accesses {100 * by8['psum'] / tot8:.0f}% of the energy (16-bit partial sums: only "
          f"their DRAM writes scale with the width), MACs {100 * by8['MAC'] / tot8:.0f}%")

    f_test = evaluate(model, test)
    rows = [["float", "", "", "", "", "", f"{100 * f_test:.2f}", "", ""]]
    ref = BitWidthSearch(model, calibration_data=calib, val_data=val, train_data=train,
                         finetune_steps=max(1, args.uniform_steps), finetune_lr=args.finetune_lr,
                         unsigned_inputs=args.unsigned)
    e8 = ref.energy({k: 8 for k in ref.order})
    u8 = convert(model, ref.calib, bits=8, **ref.arith)
    u8_val, u8_test = evaluate(u8, val), evaluate(u8, test)
    rows.append(["uniform 8, post-training", "1.000", "1.00x", "", f"{100 * u8_val:.2f}", "", f"{100 * u8_test:.2f}",
                 f"{100 * (f_test - u8_test):+.2f}", ""])
    arms: dict[str, dict] = {}

    for spec in [w.strip() for w in args.uniform.split(",") if w.strip()]:
        t = time.perf_counter()
        wb, _, ab = spec.partition("/")  # "3/4": weights 3 bits, inputs 4 bits
        bits = {k: int(wb) for k in ref.order}
        act = {k: int(ab or wb) for k in ref.order}
        fq_val, state = ref.finetuned_accuracy(bits, ref.start_qat(), act_bits=act)
        formats = ref.last_formats
        ref.folded.load_state_dict(state)
        fixed = ref.convert_finetuned(bits, formats, act)
        fq = ref.fake_quant(bits, formats, act)
        i_val, agree = accuracy_and_agreement(ref.folded, fixed, val)
        fq.remove()
        i_test = evaluate(fixed, test)
        ratio = ref.energy(bits, act) / e8
        u = "u" if ref.unsigned else ""  # ReLU'd inputs in unsigned codes (the image stays signed)
        label = f"w{wb}/a{ab}{u}" if ab else f"{wb}{' (inputs ' + wb + 'u)' if u else ''}"
        arms[f"uniform{label}"] = {"bits": bits, "act_bits": act, "energy_vs_8": ratio, "fake_quant_val": fq_val,
                                   "integer_val": i_val, "agreement": agree, "integer_test": i_test,
                                   "seconds": time.perf_counter() - t}
        rows.append([f"uniform {label}, QAT {args.uniform_steps} steps", f"{ratio:.3f}", f"{1 / ratio:.2f}x",
                     f"{100 * fq_val:.2f}", f"{100 * i_val:.2f}", f"{100 * agree:.1f}%", f"{100 * i_test:.2f}",
                     f"{100 * (f_test - i_test):+.2f}", ""])
        print(f"  uniform {label}: {arms[f'uniform{label}']}", file=sys.stderr)

    t0 = time.perf_counter()
    search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=args.max_drop, widths=widths,
                            train_data=train, finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr,
                            separate=args.separate, descent_steps=args.descent_steps, final_steps=args.final_steps,
                            descent_to=args.descent_to, unsigned_inputs=args.unsigned)
    for trial in search.steps():
        print(f"  {trial.layer:16s} {trial.operand:8s} {trial.bits:2d}b acc={trial.accuracy:.4f} drop={trial.drop:+.2f} "
              f"E={trial.energy:.4g} {'ok' if trial.accepted else 'no'}", file=sys.stderr)
    res = search.result
    seconds = time.perf_counter() - t0
    assert res is not None
    print(res.table())
    q_test = evaluate(search.convert_finetuned(res.bits, res.narrow_formats, res.act_bits), test)
    gain = res.energy_8 / res.energy
    rows.append([f"searched{', separate w/a' if args.separate else ''}, QAT {args.finetune_steps} steps/trial", f"{res.energy / res.energy_8:.3f}", f"{gain:.2f}x",
                 f"{100 * res.fake_quant_accuracy:.2f}", f"{100 * res.accuracy:.2f}",
                 f"{100 * res.fake_quant_agreement:.1f}%", f"{100 * q_test:.2f}", f"{100 * (f_test - q_test):+.2f}", ""])
    rows.append(["HAQ (CVPR 2019), BitFusion", "", f"{HAQ_GAIN}x", "", "", "", "", "negligible", "anchor"])
    rows.append(["issue 17 target", "", f">= {TARGET_GAIN}x", "", "", "", "", "<= 1.00", "target"])
    print(f"\n{name} on builtin:shapes ({args.val} val / {args.test} test images), eyeriss/floor/wrap; "
          f"energy: Eyeriss v1 model vs uniform 8 bits")
    print(format_table(["arm", "E / E(8b)", "less than 8b", "fake-quant val", "integer val", "agreement",
                        "integer test", "test drop", ""], rows))
    print(f"searched widths: weights {res.bits}, inputs apart {res.act_bits}; search {seconds:.0f} s")
    return {"result": res.to_dict(), "test_float": f_test, "test_uniform8": u8_test, "test_searched": q_test,
            "gain_vs_8": gain, "uniform": energy, "seconds": seconds, "arms": arms,
            "finetune_steps": args.finetune_steps, "uniform_steps": args.uniform_steps, "max_drop": args.max_drop,
            "separate": args.separate, "descent_steps": args.descent_steps, "final_steps": args.final_steps,
            "descent_to": args.descent_to, "val": args.val, "test": args.test, "unsigned_inputs": args.unsigned}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small_cnn,resnet18",
                    help="comma-separated, from: " + ", ".join(SHAPES_MODELS))
    ap.add_argument("--widths", default="4,3", help="the search's ladder below its start (8 bits)")
    ap.add_argument("--uniform", default="4,4/3",
                    help="uniform widths fine-tuned as arms, W or W/A (weights W bits, inputs A bits); '' for none")
    ap.add_argument("--uniform-steps", type=int, default=400, help="fine-tuning steps of each uniform arm")
    ap.add_argument("--finetune-steps", type=int, default=30, help="fine-tuning steps of each per-layer trial")
    ap.add_argument("--descent-steps", type=int, default=400,
                    help="fine-tuning steps of each all-layers trial of the search (a whole width step at once)")
    ap.add_argument("--descent-to", type=int, default=4, help="narrowest width of the all-layers descent")
    ap.add_argument("--final-steps", type=int, default=100, help="fine-tuning of the chosen widths at the end")
    ap.add_argument("--joint", dest="separate", action="store_false",
                    help="step weights and inputs together (default: apart, separate widths)")
    ap.add_argument("--finetune-lr", type=float, default=0.003)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--val", type=int, default=5000,
                    help="validation images per accuracy measurement (the search decides on these; test is apart)")
    ap.add_argument("--test", type=int, default=5000, help="test images for the final comparison")
    ap.add_argument("--signed-inputs", dest="unsigned", action="store_false",
                    help="keep ReLU'd inputs in signed codes (default: unsigned, the search's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in SHAPES_MODELS]
    if bad:
        ap.error(f"--models: unknown {', '.join(bad)}; allowed: {', '.join(SHAPES_MODELS)}")
    out = {name: run_model(name, args) for name in names}
    if args.json:
        from hwaware._io import write_json

        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
