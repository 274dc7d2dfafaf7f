"""The state recipe stages share: :class:`RunContext` (model, data, cached workload and score,
masks, families) and the :class:`Snapshot` of the model taken after each stage."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from ..measure import ModelMetrics
from .schema import Recipe, Stage
from .stages.base import StageResult

__all__ = ["RunContext", "Snapshot"]


@dataclass(frozen=True, kw_only=True)
class Snapshot(ModelMetrics):
    """The :class:`~hwaware.measure.ModelMetrics` of the model after a stage (energy per ``batch``
    images, normalized to one 16-bit MAC; latency in ms on the Eyeriss model; accuracy top-1 on val)."""

    label: str
    energy_J: float = 0.0  # the same energy in joules (per batch)
    dram_MB: float = 0.0  # DRAM traffic per batch


class RunContext:
    """State shared by the stages. ``model`` is the current model; every stage that changes it
    calls :meth:`changed`, and :meth:`current_score` re-profiles lazily."""

    def __init__(self, recipe: Recipe, run_dir: Path | None, *, progress: bool = True,
                 log: Callable[[str], None] | None = None, trust_source: bool = False) -> None:
        import torch

        from ..eyeriss import Scorer

        self.recipe = recipe
        self.settings = recipe.settings
        self.run_dir = run_dir
        self.trust_source = trust_source  # consent to import a model file recorded in a saved .pt
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if self.settings["threads"]:
            torch.set_num_threads(int(self.settings["threads"]))
        torch.manual_seed(int(self.settings["seed"]))
        self.scorer = Scorer(self.settings["hardware"], self.settings["objective"])
        self.model = self._load_model()
        if self.data is not None:  # every snapshot measures accuracy on it
            from ..data import check_classifier_width

            check_classifier_width(self.model, self.data,
                                   f"recipe {recipe.source}: model '{self.settings['model']}'")
        self.input_size = self._input_size()
        self.masks: Any = None
        self.fixed: Any = None
        self.bits: Any = 16  # operand width(s) the workload is scored at: an int or {layer: bits}
        self.act_bits: dict[str, int] = {}  # layers whose input width differs from their weights' (bits)
        self._train_loader: Any = None
        self._val_loader: Any = None
        self._calib: Any = None
        self._score: tuple[Any, Any] | None = None  # (workload, report) of the current model
        self._accuracy: float | None = None
        self._accuracy_valid = False
        self.timeline: list[Snapshot] = []
        self.reports: list[Any] = []  # the ScoreReport of each timeline snapshot
        self.families: dict[str, list[Any]] = {}
        self.results: list[StageResult] = []
        self.input_score: tuple[Any, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.writer: Any = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    # -- inputs ----------------------------------------------------------------------------------
    def _load_model(self) -> Any:
        from ..modelref import load_model

        model = load_model(self.settings["model"], trust_source=self.trust_source, **self.settings["model_args"])
        return model.eval()

    def _input_size(self) -> tuple[int, int, int]:
        if self.settings["input_size"]:
            from .._checks import check_input_size

            return check_input_size(self.settings["input_size"], f"recipe {self.recipe.source}: input_size",  # type: ignore[return-value]
                                    batch=False)
        from ..modelref import default_input_size

        data = self.settings["data"]
        if data:
            from ..data import input_shape

            fallback = input_shape(data)
        else:
            fallback = None
        try:
            return default_input_size(self.model, default=fallback)  # type: ignore[return-value]
        except HwawareError:
            raise HwawareError(f"recipe {self.recipe.source}: the input size of model '{self.settings['model']}' "
                               "is unknown; set input_size: [C, H, W] (or data)") from None

    @property
    def data(self) -> str | None:
        return self.settings["data"]

    def loader(self, split: str) -> Any:
        from ..data import make_loader

        s = self.settings
        if self.data is None:
            raise HwawareError(f"recipe {self.recipe.source}: this stage needs data (set the key 'data')")
        limit = s["train_limit"] if split == "train" else s["val_limit"] if split == "val" else None
        return make_loader(self.data, split, batch_size=int(s["batch_size"]), seed=int(s["seed"]), limit=limit)

    @property
    def train_loader(self) -> Any:
        if self._train_loader is None:
            self._train_loader = self.loader("train")
        return self._train_loader

    @property
    def val_loader(self) -> Any:
        if self._val_loader is None:
            self._val_loader = self.loader("val")
        return self._val_loader

    @property
    def calib(self) -> Any:
        """The images the workload is profiled on: the first ``profile_images`` validation images,
        or (no data) a fixed random batch of ``input_size``."""
        if self._calib is None:
            import torch

            n = int(self.settings["profile_images"])
            if self.data is None:
                gen = torch.Generator().manual_seed(int(self.settings["seed"]))
                self._calib = torch.randn((min(n, 8), *self.input_size), generator=gen)
            else:
                from ..data import make_loader

                loader = make_loader(self.data, "val", batch_size=n, shuffle=False, seed=int(self.settings["seed"]),
                                     limit=self.settings["val_limit"])
                self._calib = next(iter(loader))[0]
        return self._calib

    def training_images(self, n: int) -> Any:
        """The first ``n`` training images (calibration of fixed-point formats)."""
        from ..data import first_images

        return first_images(self.train_loader, n)

    # -- current model ---------------------------------------------------------------------------
    def changed(self) -> None:
        """The model changed: the cached workload, score and accuracy are stale."""
        self._score = None
        self._accuracy_valid = False

    def set_model(self, model: Any) -> None:
        self.model = model.eval()
        self.changed()

    def current_score(self) -> tuple[Any, Any]:
        """(workload, ScoreReport) of the current model, profiled on :attr:`calib`."""
        if self._score is None:
            from ..profiler import profile

            wl = profile(self.model, self.calib, progress=False, source=str(self.settings["model"]))
            if self.bits != 16:
                from ..workload import Workload

                def width(name: str) -> int:
                    return self.bits.get(name, 16) if isinstance(self.bits, dict) else int(self.bits)

                wl = Workload([lay.replace(weight_bits=width(lay.name),
                                           act_bits=self.act_bits.get(lay.name, width(lay.name)))
                               for lay in wl.layers], wl.unmodeled, wl.source)
            self._score = (wl, self.scorer.score(wl, batch=int(self.settings["batch"])))
        return self._score

    def accuracy(self) -> float | None:
        if self.data is None:
            return None
        if not self._accuracy_valid:
            from ..train import evaluate

            self._accuracy = evaluate(self.model, self.val_loader, progress=self.progress)
            self._accuracy_valid = True
        return self._accuracy

    def snapshot(self, label: str) -> Snapshot:
        wl, rep = self.current_score()
        snap = Snapshot.from_report(rep, wl, accuracy=self.accuracy(), label=label,
                                    energy_J=float(rep.total.energy_J), dram_MB=float(rep.total.dram_MB))
        self.timeline.append(snap)
        self.reports.append(rep)
        if self.writer is not None:
            i = len(self.timeline) - 1
            self.writer.add_scalar("pipeline/energy", snap.energy, i)
            self.writer.add_scalar("pipeline/latency_ms", snap.total_latency_ms, i)
            if snap.accuracy is not None:
                self.writer.add_scalar("pipeline/accuracy", snap.accuracy, i)
            self.writer.add_text("pipeline/stage", label, i)
        return snap

    def stage_dir(self, stage: Stage) -> Path | None:
        if self.run_dir is None:
            return None
        d = self.run_dir / "stages" / stage.label
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.run_dir)) if self.run_dir is not None else str(path)
