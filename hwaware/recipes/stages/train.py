"""``train`` and ``fine-tune``: SGD/Adam on the training split, with the training plugin logging the
Eyeriss energy and an optional gradual pruning schedule; pruned weights stay zero."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ...errors import HwawareError
from ..options import Option
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def _check_schedule(value: dict[str, Any]) -> str | None:
    from ...compress.schedule import PruneSchedule

    try:
        PruneSchedule.from_dict(value)
    except HwawareError as exc:
        return str(exc).removeprefix("schedule: ")
    return None


TRAIN_OPTIONS = (
    Option("epochs", "float", 1.0, "passes over the training data", low=0.0, low_open=True),
    Option("lr", "float", 0.05, "learning rate", low=0.0, low_open=True),
    Option("optimizer", "str", "sgd", "optimizer", choices=("sgd", "adam")),
    Option("momentum", "float", 0.9, "SGD momentum", low=0.0),
    Option("weight_decay", "float", 5e-4, "L2 weight decay", low=0.0),
    Option("lr_schedule", "str", "cosine", "learning-rate schedule", choices=("constant", "cosine")),
    Option("max_steps", "int", None, "stop after this many optimizer steps", nullable=True, low=1),
    Option("monitor_every", "int", 50, "log Eyeriss energy/latency/sparsity to TensorBoard every N steps "
           "with the training plugin (null: off)", nullable=True, low=1),
    Option("prune_schedule", "dict", None, "gradual pruning during training (hwaware.plugin.PruneSchedule: "
           "method, start, end, target, every, scope, max_layer_sparsity, layers)", nullable=True,
           check=_check_schedule),
)


def run_train(ctx: RunContext, stage: Stage) -> StageResult:
    from ...plugin import attach
    from ...train import fit

    t0 = time.perf_counter()  # the stage's time includes the plugin's first score
    o = stage.options
    masks_before = ctx.masks
    hw = None
    if ctx.run_dir is not None and (o["monitor_every"] or o["prune_schedule"]):
        hw = attach(ctx.model, ctx.calib, hardware=ctx.settings["hardware"], objective=ctx.settings["objective"],
                    logdir=str(ctx.run_dir / "tensorboard" / stage.label), every=o["monitor_every"] or 10**9,
                    batch=int(ctx.settings["batch"]), samples=int(ctx.settings["profile_images"]),
                    schedule=o["prune_schedule"])

    def after_step(model: Any, step: int) -> None:
        if masks_before is not None:
            masks_before.apply(model)
        if hw is not None:
            hw.step()

    # training loss/accuracy/lr go into the stage's TensorBoard run, on the plugin's step axis
    writer, own_writer = (hw.writer if hw is not None else None), False
    if writer is None and ctx.run_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer, own_writer = SummaryWriter(log_dir=str(ctx.run_dir / "tensorboard" / stage.label)), True
    try:
        res = fit(ctx.model, ctx.train_loader, epochs=o["epochs"], lr=o["lr"], optimizer=o["optimizer"],
                  momentum=o["momentum"], weight_decay=o["weight_decay"], schedule=o["lr_schedule"],
                  max_steps=o["max_steps"], progress=ctx.progress, after_step=after_step, writer=writer)
    finally:
        if hw is not None:
            hw.close()
        if own_writer:
            writer.close()
    ctx.model.eval()
    if hw is not None and hw.masks is not None:
        from ...compress.magnitude import Masks

        new = hw.masks
        if masks_before is not None:
            new = Masks({n: m & masks_before.masks[n] if n in masks_before.masks else m for n, m in new.masks.items()}
                        | {n: m for n, m in masks_before.masks.items() if n not in new.masks})
        ctx.masks = new
    ctx.changed()
    snap = ctx.snapshot(stage.label)
    acc = f", val accuracy {snap.accuracy:.4f}" if snap.accuracy is not None else ""
    pruned = f", {ctx.masks.sparsity():.1%} of weights pruned" if ctx.masks is not None else ""
    outputs = {"tensorboard": ctx.rel(ctx.run_dir / "tensorboard" / stage.label)} if writer is not None else {}
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{res.steps} steps ({res.epochs:.2f} epochs), train loss {res.loss:.4f}{acc}{pruned}",
                       outputs, {"steps": res.steps, "loss": res.loss, "train_accuracy": res.train_accuracy,
                                 "epoch_losses": list(res.epoch_losses)})


def describe_train(ctx: RunContext, stage: Stage) -> str:
    import math

    o = stage.options
    s = ctx.settings
    n_train = len(ctx.train_loader.dataset)
    per_epoch = len(ctx.train_loader)
    steps = math.ceil(o["epochs"] * per_epoch)
    if o["max_steps"]:
        steps = min(steps, o["max_steps"])
    text = (f"{o['optimizer']} lr {o['lr']:g} ({o['lr_schedule']}) for {o['epochs']:g} epochs on {n_train} "
            f"training images = {steps} steps of batch {s['batch_size']}")
    if stage.name == "fine-tune" or ctx.extra.get("pruned"):
        text += "; pruned weights kept at zero"
    if o["monitor_every"]:
        text += f"; energy logged every {o['monitor_every']} steps"
    if o["prune_schedule"]:
        p = o["prune_schedule"]
        text += (f"; gradual {p.get('method', 'magnitude')} pruning to {p.get('target', 0.5):.0%} of the "
                 f"weights between steps {p.get('start', 0)} and {p.get('end', 1000)}")
        ctx.extra["pruned"] = True
    return text


register_stage(StageDef("train", "train the model with SGD/Adam on the training split (the plugin logs "
                        "energy to TensorBoard; optional gradual pruning)", TRAIN_OPTIONS, needs_data=True,
                        run=run_train, describe=describe_train))
register_stage(StageDef("fine-tune", "continue training; pruned weights stay zero (masks re-applied after "
                        "every optimizer step)",
                        tuple(dataclasses.replace(o, default=d) if (d := {"lr": 0.01, "lr_schedule": "cosine"}.get(o.name))
                              is not None else o for o in TRAIN_OPTIONS), needs_data=True,
                        run=run_train, describe=describe_train))
