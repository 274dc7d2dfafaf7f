"""Energy-aware bit widths with quantization-aware fine-tuning vs uniform 8 bits (issue 17, item 1).

On the trained small CNN (builtin:shapes) the search narrows the layers, largest energy share first,
with ``--finetune-steps`` of fake-quantized fine-tuning per trial, and reports the Eyeriss energy of
the chosen widths against uniform 8 bits, the top-1 of the integer backend converted from the
fine-tuned model, and the anchor (HAQ, Wang et al. CVPR 2019: 1.9x less energy than fixed 8 bits
at negligible accuracy loss, on BitFusion). The first table says what the energy model allows at
all: uniform widths relative to uniform 8 bits, and the share of the energy that does not scale
with the operand width (partial sums stay 16-bit in the RF, array and GLB: the chip accumulates
at 16 bits whatever the operands, JSSC 2017 Sec. III; the MAC scales as w_bits x a_bits / 256, an
ifmap or weight access as bits / 16).

    python bench/quantize_qat.py                       # widths 8,6,5,4,3,2, 50 steps per trial
    python bench/quantize_qat.py --finetune-steps 20 --max-drop 1
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
from hwaware.train import evaluate, trained_shapes_model

HAQ_GAIN = 1.9  # HAQ (Wang et al., CVPR 2019): energy vs fixed 8 bits on BitFusion, negligible top-1 loss
TARGET_GAIN = 1.5  # issue 17


def uniform_table(model: torch.nn.Module, images: torch.Tensor, widths: list[int]) -> tuple[list[list[str]], dict]:
    """Energy at uniform widths / uniform 8 bits, and the energy by data type and level at 8 bits."""
    scorer = Scorer("eyeriss_v1")
    wl = profile(model, images, progress=False)

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn", choices=("small_cnn", "vgg_small"))
    ap.add_argument("--widths", default="8,6,5,4,3,2")
    ap.add_argument("--finetune-steps", type=int, default=50)
    ap.add_argument("--finetune-lr", type=float, default=0.001)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--val", type=int, default=1000, help="validation images per accuracy measurement")
    ap.add_argument("--test", type=int, default=1000, help="test images for the final comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]

    model = trained_shapes_model(args.model, progress=True)
    calib = make_loader("builtin:shapes", "train", batch_size=64, limit=256, seed=0)
    val = make_loader("builtin:shapes", "val", batch_size=250, limit=args.val)
    test = make_loader("builtin:shapes", "test", batch_size=250, limit=args.test)
    train = make_loader("builtin:shapes", "train", batch_size=64, shuffle=True, seed=0)
    images = next(iter(make_loader("builtin:shapes", "train", batch_size=16, seed=1)))[0]

    rows, energy = uniform_table(model, images, sorted({w for w in widths if w < 8}, reverse=True))
    print(f"{args.model}: Eyeriss v1 energy at uniform widths relative to uniform 8 bits "
          f"(share of each data type in that width's energy)")
    print(format_table(["widths", "E / E(8b)", "saved vs 8b", *energy["types"]], rows))
    by8 = energy["by_type_8"]
    tot8 = sum(by8.values())
    print(f"at 8 bits: psum accesses {100 * by8['psum'] / tot8:.0f}% of the energy (16-bit partial sums: only "
          f"their DRAM writes scale with the width), MACs {100 * by8['MAC'] / tot8:.0f}%")

    t0 = time.perf_counter()
    search = BitWidthSearch(model, calibration_data=calib, val_data=val, max_drop=args.max_drop, widths=widths,
                            train_data=train, finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr)
    for trial in search.steps():
        print(f"  {trial.layer:8s} {trial.bits:2d}b acc={trial.accuracy:.4f} drop={trial.drop:+.2f} "
              f"E={trial.energy:.4g} {'ok' if trial.accepted else 'no'}", file=sys.stderr)
    res = search.result
    seconds = time.perf_counter() - t0
    assert res is not None
    print(res.table())
    from hwaware.fixedpoint.convert import convert

    narrowed = {k: v for k, v in res.bits.items() if v < 16}
    q_test = evaluate(convert(res.model, search.calib, bits=narrowed or 16, equalize=False, **search.arith), test)
    u8_test = evaluate(convert(model, search.calib, bits=8, **search.arith), test)
    f_test = evaluate(model, test)
    gain = res.energy_8 / res.energy
    print(format_table(
        ["model", "test top-1", "drop vs float", "E / E(8b)", "less energy than 8b"],
        [["float", f"{100 * f_test:.2f}", "", "", ""],
         ["uniform 8 bits (post-training)", f"{100 * u8_test:.2f}", f"{100 * (f_test - u8_test):+.2f}", "1.000", "1.00x"],
         [f"searched + QAT ({args.finetune_steps} steps/trial)", f"{100 * q_test:.2f}",
          f"{100 * (f_test - q_test):+.2f}", f"{res.energy / res.energy_8:.3f}", f"{gain:.2f}x"]]))
    print(f"widths: {res.bits}; search {seconds:.0f} s; target >= {TARGET_GAIN}x at <= 1 point, "
          f"HAQ {HAQ_GAIN}x (BitFusion); best uniform width >= 3 bits here: "
          f"{1 / energy['ratios'].get(3, float('nan')):.2f}x")
    if args.json:
        from hwaware._io import write_json

        write_json(args.json, {"result": res.to_dict(), "test_float": f_test, "test_uniform8": u8_test,
                               "test_searched": q_test, "gain_vs_8": gain, "uniform": energy, "seconds": seconds,
                               "finetune_steps": args.finetune_steps, "max_drop": args.max_drop})
    return 0


if __name__ == "__main__":
    sys.exit(main())
