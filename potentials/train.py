"""Training DeePMD-kit models (PyTorch backend) into a ``Potential`` artifact.

Every ``dp`` invocation goes through :func:`run_dp`. The steps, for each of the
``ensemble`` seeds: ``dp --pt neighbor-stat`` (once, for ``sel``, from scratch with sel
"auto"; a fine-tune takes its start model's sel and reads the data's statistics from
``dp train``'s own log), ``dp --pt train``,
``dp --pt freeze``, ``dp --pt compress`` (se_e2_a), then ``dp --pt test`` on the held-out
split and the evaluation in :mod:`scalebridge.potentials.evaluate`.

Example::

    pot = TrainSettings(steps=2000, ensemble=4).make(dataset_artifact, "runs/mo/potential")
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scalebridge.artifacts import (
    Artifact,
    check_replaceable,
    fresh_dry_run_dir,
    produce,
    read_artifact,
    write_json_atomic,
)
from scalebridge.errors import ExternalProgramError, SettingsError
from scalebridge.log import progress
from scalebridge.potentials.dataset import load_dataset
from scalebridge.potentials.recipe import RecipeSettings
from scalebridge.runtime import device_name, run_command, torch_device
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.potentials")


def run_dp(jobs: list[tuple[list[str], Path]], cwd: Path, *, threads: int = 1,
           name: str | None = None, log_file: Path | None = None,
           on_line=None, device: str = "cpu") -> list[str]:
    """Run DeePMD-kit command lines ``dp --pt ARGS`` (the one place ``dp`` is called).

    Args:
        jobs: ``[(args, workdir), ...]``, e.g. ``[(["train", "input.json"], model_dir),
            (["freeze", "-o", "model.pth"], model_dir)]``; run in order in one process
            (:mod:`scalebridge.potentials.dp_batch`), so torch is imported once.
        cwd: where the job list and (by default) ``dp.log`` are written.
        device: ``"cpu"`` (the process sees no GPU) or ``"cuda"`` (DeePMD takes the first
            GPU it sees); resolve a setting with :func:`scalebridge.runtime.torch_device`.

    Returns:
        The output tail. Raises :class:`ExternalProgramError` with dp's error line.
    """
    import sys

    cwd = Path(cwd)
    spec = [{"cwd": str(Path(d).absolute()), "argv": ["--pt", *a]} for a, d in jobs]
    jf = cwd / f"dp_jobs_{jobs[0][0][0]}.json"
    write_json_atomic(jf, spec)
    cmd = [sys.executable, "-m", "scalebridge.potentials.dp_batch", str(jf)]
    label = name or "dp " + ", ".join(a[0] for a, _ in jobs)
    # NUM_WORKERS=0: DeePMD's torch DataLoader would otherwise re-spawn worker
    # processes (each importing torch) every epoch: 3x slower on small data sets.
    env = {"PYTHONUNBUFFERED": "1", "NUM_WORKERS": "0"}
    return run_command(cmd, cwd, name=label, threads=threads, env=env,
                       log_file=log_file or cwd / "dp.log", on_line=on_line,
                       error_parser=_dp_error, tail_lines=200, gpu=device == "cuda")


def _dp_error(lines: list[str]) -> str | None:
    for ln in reversed(lines):  # dp_batch names the job that failed
        if ln.startswith("dp_batch: failed: "):
            return ln[len("dp_batch: failed: "):].strip()
    for ln in reversed(lines):
        if re.search(r"(Error|Exception):", ln):
            return ln.strip()
    return None


def dp_task(task: dict[str, Any]) -> dict[str, str | None]:
    """A fan-out task: one dp_batch process (:func:`run_dp`) that runs ``task["jobs"]``
    in order.

    Args:
        task: ``{"jobs": [[dp args, workdir], ...], "cwd": str, "log_file": str,
            "threads": int, "name": str}``.

    Returns:
        ``{"error": None}``, or the one-line :class:`ExternalProgramError` message (a
        string: the caller decides whether a failure stops the stage).
    """
    try:
        run_dp([(list(a), Path(d)) for a, d in task["jobs"]], Path(task["cwd"]),
               threads=int(task["threads"]), name=task.get("name"),
               log_file=Path(task["log_file"]))
    except ExternalProgramError as e:
        return {"error": str(e)}
    return {"error": None}


def merge_logs(parts: list[Path], dest: Path, missing_ok: bool = False) -> None:
    """Write the processes' logs ``parts`` into ``dest`` in order and remove them (a
    missing part is skipped with ``missing_ok``, else an error)."""
    with open(dest, "w") as f:
        for part in parts:
            if missing_ok and not part.exists():
                continue
            f.write(part.read_text(errors="replace"))
            part.unlink()


def compress_and_test(cjobs: list[tuple[list[str], Path]],
                      test: tuple[list[str], Path] | None, work: Path, threads: int,
                      mapper: Any) -> tuple[str | None, bool]:
    """Run the ``dp compress`` jobs and the ``dp test`` job at once, as up to
    ``mapper.slots`` dp_batch processes of ``threads`` threads each: the test in one,
    the compressions cut into contiguous chunks over the others. They are independent
    (the test scores the uncompressed model); each process pays torch's import once,
    which is most of the time of both on a small model.

    ``compress.log`` gets the compressions' output in job order (one log per chunk
    first, when there are several); the test writes ``dp_test.log`` in its directory,
    as :func:`scalebridge.potentials.evaluate.dp_test` does.

    Returns:
        ``(compress error or None, whether the test ran)``. Raises
        :class:`ExternalProgramError` naming the failed command and directory when the
        test fails.
    """
    slots = int(getattr(mapper, "slots", 1) or 1)
    nchunks = max(1, min(slots - (1 if test else 0), len(cjobs))) if cjobs else 0
    n = len(cjobs)
    chunks = [cjobs[i * n // nchunks:(i + 1) * n // nchunks] for i in range(nchunks)]
    tasks = []
    for c in chunks:
        # one chunk writes where the sequential run does; several, each in its first
        # model's folder (one jobs file and log each), merged into compress.log below
        cwd = work if len(chunks) == 1 else c[0][1]
        tasks.append({"jobs": [(list(a), str(d)) for a, d in c], "cwd": str(cwd),
                      "log_file": str(cwd / "compress.log"), "threads": threads,
                      "name": "dp " + ", ".join(a[0] for a, _ in c)})
    if test:
        tasks.append({"jobs": [(list(test[0]), str(test[1]))], "cwd": str(test[1]),
                      "log_file": str(test[1] / "dp_test.log"), "threads": threads,
                      "name": "dp test"})
    log.info("dp compress (%d model(s)) and test as %d process(es) on %s", len(cjobs),
             len(tasks), type(mapper).__name__)
    t0 = time.perf_counter()
    results = mapper.map(dp_task, tasks, description="dp compress/test tasks done")
    log.info("dp compress and test finished in %.1f s (output: %s)", time.perf_counter() - t0,
             ", ".join(str(Path(t["log_file"]).relative_to(work)) for t in tasks))
    if len(chunks) > 1:   # a failed chunk may have written no log
        merge_logs([Path(t["log_file"]) for t in tasks[:len(chunks)]], work / "compress.log",
                   missing_ok=True)
    # a chunk's error names its own log, merged into compress.log above and removed
    errors = [str(r["error"]).replace(str(Path(t["log_file"])), str(work / "compress.log"))
              if len(chunks) > 1 else r["error"]
              for r, t in zip(results[:len(chunks)], tasks[:len(chunks)], strict=True)
              if r["error"]]
    if test and results[-1]["error"]:
        for e in errors:   # the test's failure stops the stage: say the compression's too
            log.warning("dp compress failed as well: %s", e)
        raise ExternalProgramError(results[-1]["error"])
    return (errors[0] if errors else None), test is not None


def neighbor_stat(systems_dir: Path, rcut: float, type_map: list[str], cwd: Path,
                  threads: int = 1) -> tuple[list[int], float]:
    """(max neighbours per type within ``rcut``, minimal neighbour distance Å)."""
    lines = run_dp([(["neighbor-stat", "-s", str(systems_dir), "-r", str(rcut), "-t",
                     *type_map], cwd)], cwd, threads=threads,
                   log_file=cwd / "neighbor_stat.log")
    text = "\n".join(lines)
    m = re.search(r"max_nbor_size:\s*\[([\d,\s]+)\]", text)
    d = re.search(r"min_nbor_dist:\s*([\d.eE+-]+)", text)
    if not m or not d:
        raise ExternalProgramError(f"dp neighbor-stat: no statistics in its output ({cwd})")
    return [int(x) for x in m.group(1).replace(",", " ").split()], float(d.group(1))


def logged_neighbor_stat(log_file: Path) -> tuple[list[int] | None, float | None]:
    """(max neighbours per type, minimal neighbour distance Å) as ``dp train`` reported
    them for its training data in ``log_file`` (its first report); None where absent."""
    text = log_file.read_text(errors="replace") if log_file.is_file() else ""
    m = re.search(r"maximum neighbor size:\s*\[([\d,\s]+)\]", text)
    d = re.search(r"minimal neighbor distance:\s*([\d.eE+-]+)", text)
    return ([int(x) for x in m.group(1).replace(",", " ").split()] if m else None,
            float(d.group(1)) if d else None)


#: frames per batch, or DeePMD's "auto" / "auto:N" (enough frames for N atoms)
BatchSize = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^auto(:\d+)?$")]


#: (section, key) of a model definition that a model continued with ``init_model`` must
#: share with the settings: DeePMD loads the weights of a model of another precision
#: without complaint (the energies shift), and a different architecture fails deep inside
#: torch's state-dict loading.
_INIT_MODEL_KEYS = [("descriptor", "type"), ("descriptor", "rcut"),
                    ("descriptor", "rcut_smth"), ("descriptor", "sel"),
                    ("descriptor", "neuron"), ("descriptor", "axis_neuron"),
                    ("descriptor", "precision"), ("fitting_net", "neuron"),
                    ("fitting_net", "precision"), (None, "type_map")]
_SETTING_NAME = {("descriptor", "rcut"): "descriptor.rcut_a",
                 ("descriptor", "rcut_smth"): "descriptor.rcut_smth_a",
                 ("fitting_net", "neuron"): "fitting_neuron",
                 ("descriptor", "precision"): "precision",
                 ("fitting_net", "precision"): "precision",
                 (None, "type_map"): "the dataset's type_map"}


def load_frozen_model(path: Path):
    """A frozen DeePMD model (.pth) as a TorchScript module on the CPU.

    Raises:
        SettingsError: the file is not one (instead of torch's own error).
    """
    try:
        import deepmd.pt.model  # noqa: F401  (registers DeePMD's custom torch ops)
        import torch

        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises many kinds of error on a foreign file
        raise SettingsError(f"{path} is not a frozen DeePMD-kit PyTorch model (.pth): "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def model_definition(path: Path) -> dict[str, Any]:
    """The ``model`` section of the input a frozen DeePMD model (.pth) was trained with."""
    return json.loads(load_frozen_model(path).get_model_def_script())


def check_init_model(path: Path, model: dict[str, Any]) -> None:
    """Raise :class:`SettingsError` naming every setting in which ``model`` (the ``model``
    section these settings generate) differs from the frozen model at ``path``."""
    old = model_definition(path)
    diffs = []
    for sect, key in _INIT_MODEL_KEYS:
        a = (old.get(sect) or {}).get(key) if sect else old.get(key)
        b = (model.get(sect) or {}).get(key) if sect else model.get(key)
        if a is not None and b is not None and a != b:
            diffs.append(f"{_SETTING_NAME.get((sect, key), f'{sect}.{key}')}: "
                         f"model {a!r}, settings {b!r}")
    if diffs:
        raise SettingsError(f"init_model {path} does not match these settings ("
                            + "; ".join(dict.fromkeys(diffs)) + "): set them as the model "
                            "was trained, or train from scratch")


class DescriptorSettings(StrictModel):
    """The descriptor (environment embedding)."""

    type: Literal["se_e2_a", "dpa1"] = Field(
        "se_e2_a", description="se_e2_a (compressible, fast) or dpa1 (attention, se_atten)")
    rcut_a: float = Field(5.0, gt=0, description="cutoff radius, Å")
    rcut_smth_a: float = Field(0.5, ge=0, description="smoothing starts here, Å")
    sel: list[int] | Literal["auto"] = Field(
        "auto", description="max neighbours per type; auto: dp neighbor-stat x sel_margin")
    sel_margin: float = Field(1.15, ge=1, description="factor on the neighbor-stat maximum")
    neuron: list[int] = Field([16, 32, 64], description="embedding net widths")
    axis_neuron: int = Field(8, ge=1, description="embedding submatrix size (M2)")
    attn_layer: int = Field(2, ge=0, description="dpa1 only: attention layers (0: compressible)")
    type_one_side: bool = Field(True, description="one embedding per neighbour type")


class TrainSettings(StrictModel):
    """DeePMD-kit training of an ensemble of models on a ``DFTDataset``."""

    descriptor: DescriptorSettings = Field(default_factory=DescriptorSettings,
                                           description="descriptor")
    fitting_neuron: list[int] = Field([120, 120, 120], description="fitting net widths")
    precision: Literal["float64", "float32"] = Field(
        "float32", description="network precision (descriptor and fitting net). float32 "
        "models run 2.7x faster in LAMMPS once compressed, with the same force and elastic "
        "constant accuracy; float64 gave a lower energy MAE on the mlearn Mo benchmark "
        "(3.7 vs 4.2-4.7 meV/atom) but trains 1.5-2x slower per step, and is needed for "
        "finite-difference checks tighter than about 1e-3 eV/Å")
    steps: int = Field(2000, ge=1, description="training steps per model")
    batch_size: BatchSize = Field(
        "auto", description="frames per batch, or 'auto' / "
        "'auto:N' (enough frames for N atoms, default 32)")
    start_lr: float = Field(1e-3, gt=0, description="initial learning rate")
    stop_lr: float = Field(1e-6, gt=0, description="final learning rate (exp decay)")
    decay_steps: int | None = Field(None, ge=1, description="lr decay interval; None: "
                                    "steps/40 (at least 10)")
    pref_e: tuple[float, float] = Field((0.02, 1.0), description="energy loss weight, start/end")
    pref_f: tuple[float, float] = Field((1000.0, 1.0), description="force weight, start/end")
    pref_v: tuple[float, float] = Field((0.02, 1.0), description="virial weight, start/end "
                                        "(used only when the data have virials)")
    group_weights: dict[str, Annotated[float, Field(gt=0)]] | None = Field(
        None, description="share of training batches drawn from each named group of the "
        "DFTDataset, e.g. {'Vacancy': 0.2, 'Surface': 0.1}; the other groups share the rest "
        "by frame count. None: by frame count (DeePMD's prob_sys_size)")
    ensemble: int = Field(4, ge=1, description="models with different seeds (model deviation)")
    seed: int = Field(1, description="seed of model 0; model i uses seed + i")
    compress: bool = Field(True, description="also write compressed models (se_e2_a and "
                           "dpa1 with attn_layer 0)")
    disp_freq: int = Field(100, ge=1, description="lcurve.out interval, steps")
    evaluate: bool = Field(True, description="dp test on the test split, parity plots and "
                           "properties vs DFT into metrics.json")
    properties: bool = Field(True, description="lattice constant, elastic constants, "
                             "vacancy energy through ASE (needs evaluate)")
    change_bias: bool = Field(
        True, description="after training, shift each type's energy bias by least squares "
        "on the training frames (dp change-bias): removes the mean energy error a "
        "force-dominated loss leaves (float32 mlearn Mo: +3.8 meV/atom on its own training "
        "set; test MAE 4.75 -> 3.87 meV/atom, forces unchanged)")
    refit_output_layer: bool = Field(
        False, description="after training (and change-bias), solve for the output layer "
        "of the fitting net by ridge least squares on the training frames, with the loss "
        "weights' limits and a ridge chosen by 5-fold cross-validation (see "
        "potentials/refit.py). Costs about 120 model evaluations per training frame "
        "(3.5 min for mlearn Mo's 194 frames on one core). mlearn Mo, float32: test "
        "energy MAE 4.18 -> 3.61 meV/atom, force 0.137 -> 0.142 eV/Å")
    recipe: RecipeSettings | None = Field(
        None, description="choose the schedule and the refit on the validation split "
        "within a budget (potentials/recipe.py): candidate schedules piloted, the best by "
        "validation energy+force+virial MAE trained with the rest of the budget, the "
        "output-layer refit kept only if validation forces do not get worse beyond a "
        "tolerance. None: train these settings as they are")
    init_model: str | list[str] | None = Field(
        None, description="frozen model(s) (.pth, same descriptor) the ensemble starts from "
        "(dp train --init-frz-model): continue, re-weight or fine-tune a training. One file: "
        "every member starts from it; a list: one per member (the members of a pretrained "
        "ensemble, so that their spread survives the fine-tune). With descriptor.sel "
        "'auto' the models' own sel is used. Contents enter the fingerprint")

    @model_validator(mode="after")
    def _init_models_match_ensemble(self) -> TrainSettings:
        if isinstance(self.init_model, list) and len(self.init_model) not in (
                1, self.ensemble):
            raise ValueError(f"init_model lists {len(self.init_model)} models for an "
                             f"ensemble of {self.ensemble}: give one, or one per member")
        return self

    def init_models(self) -> list[Path]:
        """The frozen model each member starts from (``[]``: trained from scratch)."""
        if not self.init_model:
            return []
        paths = [self.init_model] if isinstance(self.init_model, str) else self.init_model
        return [Path(paths[i % len(paths)]) for i in range(self.ensemble)]

    def resolve_paths(self, base_dir: Path) -> TrainSettings:
        """These settings with a relative ``init_model`` taken relative to ``base_dir``
        (the run file's folder)."""
        if not self.init_model:
            return self
        def fix(p: str) -> str:
            return p if Path(p).is_absolute() else str((Path(base_dir) / p).resolve())
        new = (fix(self.init_model) if isinstance(self.init_model, str)
               else [fix(p) for p in self.init_model])
        return self.model_copy(update={"init_model": new})

    def input_json(self, type_map: list[str], sel: list[int] | str, train_systems: list[str],
                   valid_systems: list[str], seed: int, has_virial: bool,
                   auto_prob: str | None = None) -> dict[str, Any]:
        """The DeePMD-kit ``input.json`` for one model (``auto_prob``: see
        :func:`group_sampling`)."""
        d = self.descriptor
        if d.type == "se_e2_a":
            desc: dict[str, Any] = {
                "type": "se_e2_a", "sel": sel, "rcut": d.rcut_a, "rcut_smth": d.rcut_smth_a,
                "neuron": d.neuron, "axis_neuron": d.axis_neuron, "resnet_dt": False,
                "type_one_side": d.type_one_side, "precision": self.precision, "seed": seed}
        else:
            desc = {"type": "dpa1", "sel": sel if sel == "auto" else int(sum(sel)),
                    "rcut": d.rcut_a,
                    "rcut_smth": d.rcut_smth_a, "neuron": d.neuron,
                    "axis_neuron": d.axis_neuron, "attn_layer": d.attn_layer,
                    "attn": 64, "tebd_dim": 8, "type_one_side": d.type_one_side,
                    "attn_mask": False, "precision": self.precision, "seed": seed}
        decay = self.decay_steps or max(10, self.steps // 40)
        pv = self.pref_v if has_virial else (0.0, 0.0)
        training: dict[str, Any] = {
            "training_data": {"systems": train_systems, "batch_size": self.batch_size,
                              **({"auto_prob": auto_prob} if auto_prob else {})},
            "numb_steps": self.steps, "seed": seed, "disp_file": "lcurve.out",
            "disp_freq": min(self.disp_freq, self.steps),
            "save_freq": min(self.steps, 2000),
            "disp_training": True, "time_training": True}
        if valid_systems:
            training["validation_data"] = {"systems": valid_systems,
                                           "batch_size": self.batch_size, "numb_btch": 1}
        return {
            "model": {"type_map": type_map, "descriptor": desc,
                      "fitting_net": {"neuron": self.fitting_neuron, "resnet_dt": True,
                                      "precision": self.precision, "seed": seed}},
            "learning_rate": {"type": "exp", "decay_steps": decay, "start_lr": self.start_lr,
                              "stop_lr": self.stop_lr},
            "loss": {"type": "ener",
                     "start_pref_e": self.pref_e[0], "limit_pref_e": self.pref_e[1],
                     "start_pref_f": self.pref_f[0], "limit_pref_f": self.pref_f[1],
                     "start_pref_v": pv[0], "limit_pref_v": pv[1]},
            "training": training,
        }

    @property
    def compressible(self) -> bool:
        d = self.descriptor
        return d.type == "se_e2_a" or (d.type == "dpa1" and d.attn_layer == 0)

    def make(self, dataset: Artifact | str | Path, out: str | Path,
             resources: Resources | None = None, *, force: bool = False,
             dry_run: bool = False, mapper: Any = None) -> Artifact:
        """Train the ensemble on ``dataset`` and build the ``Potential`` at ``out``.

        Args:
            dataset: a ``DFTDataset`` artifact (or its path).
            resources: threads for dp (never part of the fingerprint).
            dry_run: write the ``input.json`` files into ``<out>.dry_run/``
                (:func:`scalebridge.artifacts.dry_run_path`, emptied first) and return a
                stand-in artifact for that folder; trains and records nothing.
            mapper: fan-out engine (``scalebridge.workflows.engine.Mapper``: anything with
                ``map(fn, items)``). One that runs several tasks at once (``slots > 1``)
                trains each ensemble member as its own task (:func:`train_members`);
                otherwise, and by default (None), all members train one after the other
                in one dp process. The models are the same either way.
        """
        if not dry_run:  # before the recipe's pilots: a refused out costs no training
            check_replaceable(out, "Potential")
        res = resources or Resources()
        ds_art = dataset if isinstance(dataset, Artifact) else read_artifact(dataset,
                                                                             "DFTDataset")
        ds = load_dataset(ds_art)
        if not ds.systems("train"):
            raise SettingsError(f"{ds_art.path}: the train split is empty")
        if self.properties and not self.evaluate:
            log.info("properties need evaluate = true: skipped")
        cfg, selection = self, None
        if self.recipe is not None and not dry_run:
            cfg, selection = self.recipe.choose(self, ds_art, ds, Path(out), res)

        def build(work: Path) -> dict:
            return cfg._build(work, ds, res, dry_run, mapper, selection)

        if dry_run:
            work = fresh_dry_run_dir(out)  # an earlier dry run's inputs would look current
            self._build(work, ds, res, dry_run=True)
            log.info("dry run: inputs written to %s", work)
            return Artifact(path=work, manifest={"kind": "dry-run", "fingerprint": ""})
        inputs: dict = {"dataset": ds_art}
        starts = list(dict.fromkeys(self.init_models()))
        for i, start in enumerate(starts):
            if not start.is_file():
                raise SettingsError(f"init_model {start} does not exist")
            # one start model keeps its old input name: artifacts made with it stay current
            inputs["init_model" if len(starts) == 1 else f"init_model_{i}"] = start
        # unset init_model and group_weights are left out of the fingerprint, so artifacts
        # made before they existed stay current; precision is always in it (the default
        # changed to float32: older float64 artifacts are retrained)
        skip = ({"init_model"} if not cfg.init_model else set()) | (
            {"group_weights"} if cfg.group_weights is None else set()) | (
            {"refit_output_layer"} if not cfg.refit_output_layer else set()) | (
            {"recipe"} if cfg.recipe is None else set())
        fp_settings = cfg.model_dump(mode="json", exclude=skip or None)
        if selection:  # the pilots decided the schedule and steps (in fp_settings)
            fp_settings["recipe_winner"] = selection["winner"]
        return produce("Potential", out, fp_settings, inputs, build, force=force)

    def _build(self, work: Path, ds, res: Resources, dry_run: bool,
               mapper: Any = None, selection: dict | None = None) -> dict:
        device = torch_device(res.device)     # a GPU asked for and absent fails here
        train_sys, auto_prob = group_sampling(ds, self.group_weights)
        if auto_prob:
            log.info("batches drawn by group: %s", auto_prob)
        valid_sys = [str(p) for p in ds.systems("validation")]
        (work / "models").mkdir(parents=True, exist_ok=True)
        d = self.descriptor
        min_dist = None
        starts = self.init_models()
        if d.sel == "auto":
            if dry_run or starts:
                # a dry run runs no program: dp decides; a fine-tune takes the start
                # model's sel (below), and dp train's own neighbour statistics of the data
                # (its log) give min_dist after training, without a dp process of their own
                sel = "auto"
            else:
                nmax, min_dist = neighbor_stat(ds.path / "systems" / "train", d.rcut_a,
                                               ds.type_map, work, res.threads)
                sel = [int(math.ceil(n * d.sel_margin / 4.0) * 4) for n in nmax]
        else:
            if len(d.sel) != len(ds.type_map):
                raise SettingsError(f"descriptor.sel has {len(d.sel)} entries but type_map "
                                    f"{ds.type_map} has {len(ds.type_map)}")
            sel = list(d.sel)
        if starts and d.sel == "auto" and not dry_run:
            # a fine-tune keeps the neighbour list it was trained with: the new data's
            # neighbour statistics may give another sel, which the weights cannot take
            sel = model_definition(starts[0])["descriptor"]["sel"]
        for start in ([] if dry_run else dict.fromkeys(starts)):
            check_init_model(start, self.input_json(
                ds.type_map, sel, train_sys, valid_sys, self.seed, ds.has_virial)["model"])
        member_jobs: list[list[tuple[list[str], Path]]] = []
        for i in range(self.ensemble):
            jobs: list[tuple[list[str], Path]] = []
            member_jobs.append(jobs)
            mdir = work / "train" / f"model_{i}"
            mdir.mkdir(parents=True, exist_ok=True)
            inp = self.input_json(ds.type_map, sel, train_sys, valid_sys, self.seed + i,
                                  ds.has_virial, auto_prob)
            write_json_atomic(mdir / "input.json", inp)
            args = ["train", "input.json"]
            if d.sel != "auto" and not (self.compress and self.compressible):
                args.append("--skip-neighbor-stat")
            if starts:
                args += ["--init-frz-model", str(starts[i].absolute())]
            jobs.append((args, mdir))
            final = work / "models" / f"model_{i}.pth"
            if self.change_bias:
                frozen = mdir / "frozen.pth"
                jobs.append((["freeze", "-c", str(mdir), "-o", str(frozen)], mdir))
                jobs.append((["change-bias", str(frozen), "-f", str(work / "train_systems.txt"),
                              "-m", "change", "-o", str(final)], mdir))
            else:
                jobs.append((["freeze", "-c", str(mdir), "-o", str(final)], mdir))
        (work / "train_systems.txt").write_text("".join(f"{p}\n" for p in train_sys))
        if dry_run:
            return {}
        trained_on = device_name(device)
        log.info("training on %s", trained_on)
        times = self._run_training(member_jobs, work, res, device, mapper)
        bias_shift = energy_bias_shifts(work / "train.log") if self.change_bias else []
        if min_dist is None and d.sel == "auto":
            nmax, min_dist = logged_neighbor_stat(work / "train.log")
            if nmax and any(n > s_ for n, s_ in zip(nmax, sel, strict=False)):
                log.warning("the data has up to %s neighbours within %g Å where the "
                            "fine-tuned model's sel is %s: atoms beyond sel are dropped",
                            nmax, d.rcut_a, sel)
        models = [f"models/model_{i}.pth" for i in range(self.ensemble)]
        refit = []
        if self.refit_output_layer:
            from scalebridge.potentials.refit import refit_output_layer

            prefs = (self.pref_e[1], self.pref_f[1], self.pref_v[1] if ds.has_virial else 0.0)
            refit = [refit_output_layer(work / m, [Path(p) for p in train_sys], ds.type_map,
                                        prefs, seed=self.seed + i, threads=res.threads)
                     for i, m in enumerate(models)]
        if self.recipe is not None and self.recipe.refit == "auto" and selection is not None:
            from scalebridge.potentials.refit import refit_by_validation

            prefs = (self.pref_e[1], self.pref_f[1], self.pref_v[1] if ds.has_virial else 0.0)
            cap = selection.get("refit_max_seconds")
            selection["refit"] = [refit_by_validation(
                work / m, [Path(p) for p in train_sys], ds.systems("validation"),
                ds.type_map, prefs, selection["weights"],
                force_tolerance=self.recipe.refit_force_tolerance,
                max_seconds=cap / len(models) if cap else None, seed=self.seed + i,
                threads=res.threads) for i, m in enumerate(models)]
        compressed: list[str] = []
        cjobs = [(["compress", "-i", str(work / m), "-o",
                   str(work / m.replace(".pth", "_compressed.pth")), "-t",
                   str(work / "train" / f"model_{i}" / "input.json")],
                  work / "train" / f"model_{i}") for i, m in enumerate(models)
                 ] if self.compress and self.compressible else []
        evaluate = self.evaluate and bool(ds.systems("test"))
        tested = False
        if mapper is not None and int(getattr(mapper, "slots", 1) or 1) > 1 and (
                len(cjobs) + evaluate > 1):
            from scalebridge.potentials.evaluate import score_job

            test = score_job(work / models[0], ds, "test", work / "dp_test") \
                if evaluate else None
            cerr, tested = compress_and_test(cjobs, test, work, res.threads, mapper)
        else:
            cerr = None
            if cjobs:
                try:
                    run_dp(cjobs, work, threads=res.threads, log_file=work / "compress.log")
                except ExternalProgramError as e:
                    cerr = str(e)
        if cerr:
            log.warning("model compression failed, keeping uncompressed models: %s", cerr)
        elif cjobs:
            compressed = [m.replace(".pth", "_compressed.pth") for m in models]
        for ck in [*(work / "train").glob("model_*/model.ckpt*.pt"),
                   *(work / "train").glob("model_*/frozen.pth")]:
            ck.unlink()  # checkpoints and pre-change-bias models are not needed downstream
        shutil.copyfile(work / "train" / "model_0" / "input.json", work / "input.json")
        from scalebridge.potentials.evaluate import write_lcurves

        write_lcurves(sorted((work / "train").glob("model_*/lcurve.out")), work)
        pot = {"type_map": ds.type_map, "models": models, "compressed": compressed,
               "rcut_a": d.rcut_a, "descriptor": d.type, "sel": sel,
               "min_nbor_dist_a": min_dist, "has_virial": ds.has_virial,
               "train_seconds": [round(t, 2) for t in times],
               "train_device": trained_on,
               "energy_bias_shift_ev": bias_shift,
               **({"output_refit": refit} if refit else {}),
               **({"recipe": selection} if selection else {})}
        write_json_atomic(work / "potential.json", pot)
        summary: dict[str, Any] = {"models": len(models), "compressed": len(compressed),
                                   "train_seconds": round(float(np.sum(times)), 2),
                                   "train_device": trained_on}
        if refit:
            summary["refit_seconds"] = round(sum(r["seconds"] for r in refit), 2)
        if selection:
            summary["recipe"] = {
                "winner": selection["winner"], "final_steps": selection["final_steps"],
                "pilot_scores": {n: round(p["score"], 4)
                                 for n, p in selection["pilots"].items()},
                "refit_kept": [r["kept"] for r in selection.get("refit", [])],
                "refit_reason": [r["reason"] for r in selection.get("refit", [])]}
            if selection.get("refit"):
                summary["refit_seconds"] = round(sum(r["seconds"]
                                                     for r in selection["refit"]), 2)
        if evaluate:
            from scalebridge.potentials.evaluate import evaluate_into

            metrics = evaluate_into(work, ds, res, properties=self.properties,
                                    tested=tested)
            summary.update({k: metrics["test"]["overall"].get(k) for k in
                            ("energy_mae_mev_per_atom", "force_mae_ev_a")})
        return summary

    def _run_training(self, member_jobs: list[list[tuple[list[str], Path]]], work: Path,
                      res: Resources, device: str, mapper: Any = None) -> list[float]:
        """Run each member's train/freeze(/change-bias) jobs on ``device`` ("cpu" or
        "cuda"); per-model training seconds.

        One task (one dp process, torch imported once) for all members when ``mapper``
        runs one task at a time; one task per member otherwise. Either way ``train.log``
        ends up with every member's output in member order.
        """
        n = len(member_jobs)
        chunks = [[i] for i in range(n)] if int(getattr(mapper, "slots", 1) or 1) > 1 \
            else [list(range(n))]
        tasks = []
        for c in chunks:
            cwd = work if len(chunks) == 1 else work / "train" / f"model_{c[0]}"
            tasks.append({"jobs": [(list(a), str(d)) for i in c for a, d in member_jobs[i]],
                          "cwd": str(cwd), "log_file": str(cwd / "train.log"),
                          "threads": res.threads, "device": device,
                          "steps": self.steps * len(c),
                          "name": f"dp train (models {', '.join(map(str, c))})"})
        if mapper is None:
            results = [train_members(t) for t in tasks]
        else:
            log.info("training %d models as %d task(s) on %s", n, len(tasks),
                     type(mapper).__name__)
            results = mapper.map(train_members, tasks, description="training tasks done")
        if len(chunks) > 1:  # one train.log, as a single process writes it
            merge_logs([Path(t["log_file"]) for t in tasks], work / "train.log")
        return [t for r in results for t in r["train_seconds"]]


def train_members(task: dict[str, Any]) -> dict[str, Any]:
    """A fan-out task: one dp process that runs some ensemble members' jobs in order.

    Args:
        task: ``{"jobs": [[dp args, workdir], ...], "cwd": str, "log_file": str,
            "threads": int, "device": "cpu" | "cuda", "steps": int (for the progress
            bar), "name": str}``.

    Returns:
        ``{"train_seconds": [seconds of each ``dp train`` in the jobs]}``.
    """
    state = {"step": 0, "t0": 0.0}
    times: list[float] = []
    with progress("training models", total=task["steps"]) as advance:
        def on_line(line: str) -> None:
            if line.startswith("dp_batch: dp --pt train"):
                state["t0"], state["step"] = time.perf_counter(), 0
            elif line.startswith("dp_batch: done: dp --pt train"):
                times.append(time.perf_counter() - state["t0"])
            elif m := re.search(r"batch\s+(\d+):", line, re.IGNORECASE):   # "Batch  500:"
                step = int(m.group(1))
                advance(max(step - state["step"], 0))
                state["step"] = max(step, state["step"])

        run_dp([(list(a), Path(d)) for a, d in task["jobs"]], Path(task["cwd"]),
               threads=int(task["threads"]), name=task.get("name"),
               log_file=Path(task["log_file"]), on_line=on_line,
               device=task.get("device", "cpu"))
    return {"train_seconds": times}


def energy_bias_shifts(train_log: Path) -> list[list[float]]:
    """Per model, the shift (eV per atom, per type) ``dp change-bias`` gave the energy
    bias, read from its log line "Change output bias of [...] from [...] to [...]"."""
    out = []
    for m in re.finditer(r"Change output bias of \[.*?\] from \[([^\]]*)\] to "
                         r"\[([^\]]*)\]", train_log.read_text(errors="replace")):
        old, new = (np.array(g.split(), dtype=float) for g in m.groups())
        out.append([round(float(x), 6) for x in new - old])
    return out


def group_sampling(ds, weights: dict[str, float] | None) -> tuple[list[str], str | None]:
    """Training systems ordered by group, and DeePMD's ``auto_prob`` for group ``weights``.

    Each named group gets its share of the batches; the other groups share the rest in
    proportion to their frame counts; within a group, systems are drawn by batch count
    (``prob_sys_size``). Returns ``(systems, None)`` when ``weights`` is None.
    """
    meta = ds.info["splits"]["train"]["systems"]
    names = list(meta)
    if not weights:
        return [str(ds.path / "systems" / "train" / n) for n in names], None
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(meta[n]["group"], []).append(n)
    unknown = sorted(set(weights) - set(groups))
    if unknown:
        raise SettingsError(f"group_weights names {unknown}, but the training split of "
                            f"{ds.path} has the groups {sorted(groups)}")
    named = sum(weights.values())
    frames = {g: sum(meta[n]["frames"] for n in ns) for g, ns in groups.items()}
    rest = [g for g in groups if g not in weights]
    if rest and named >= 1:
        raise SettingsError(f"group_weights sum to {named:g} and leave nothing for the "
                            f"groups {rest}: name them too, or lower the weights")
    share = {g: weights[g] / (named if not rest else 1.0) for g in weights}
    nrest = sum(frames[g] for g in rest)
    share.update({g: (1.0 - named) * frames[g] / nrest for g in rest})
    systems, parts, i = [], ["prob_sys_size"], 0
    for g, ns in groups.items():
        systems += [str(ds.path / "systems" / "train" / n) for n in ns]
        parts.append(f"{i}:{i + len(ns)}:{share[g]:.6g}")
        i += len(ns)
    return systems, ";".join(parts)


def potential_json(path: Path) -> dict:
    """Parsed ``potential.json`` of a Potential artifact directory."""
    return json.loads((Path(path) / "potential.json").read_text())
