"""The run report: ``report.md`` and ``report.html`` in the run directory.

It opens with the answer (:func:`answer_line`: the FEM's final and maximum loads, their
bands and the band's shares, and what they are conditional on, :func:`conditions_clause`),
then the verdicts (:mod:`scalebridge.workflows.verdicts`:
one row per stage of the chain, each check green/amber/red/n-a with its short reason, a
stage without an artifact ``not run``, and the run's overall verdict, ``partial run: k of
n stages`` where any did not run; below the table a Details section with the full account
of each check that has more to say; the same rows, reasons and details in
``verdicts.json``) and the FEM load band with each upstream source's share
(:mod:`scalebridge.workflows.band`). Then one section per stage: its wall time, its
headline numbers (the artifact's summary, without the empty values; under the FEM's,
an informational limit-load cross-check against the DD's flow stress where its own limit
load is n/a: :func:`scalebridge.continuum.limit_load.limit_load_cross_check`), a table of the MD
properties against DFT where there is one, its plots (every PNG of the artifact, captioned
apart where names repeat, each with the CSV of its numbers linked:
:func:`scalebridge.plotting.plot_data_file`; those of helper solves, the band's members,
linked in a list), and links to the files
OVITO (LAMMPS dumps, ``.ca``, extxyz) and ParaView (VTX ``.bp``, XDMF, VTK) open. Paths are
relative to the run directory, so the report moves with it. A run's report
(:func:`write_run_report`) is about its run directory: every stage whose artifact is
current there (``scalebridge status``'s done), also those after ``--until``.
:func:`rewrite_report` writes it again from a run directory's artifacts, running no stage.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalebridge.artifacts import Artifact, read_artifact, write_json_atomic, write_text_atomic
from scalebridge.errors import ArtifactError, ScalebridgeError
from scalebridge.plotting import axis_label, plot_data_file
from scalebridge.workflows.band import shares_text
from scalebridge.workflows.chain import Chain, read_records
from scalebridge.workflows.verdicts import (
    COLOUR,
    LEGEND,
    MARK,
    NA,
    NOT_RUN,
    NOT_RUN_LEGEND,
    PARTIAL,
    mesh_convergence_check,
    run_verdicts,
)

#: File suffixes (and directory suffixes, for VTX) that OVITO or ParaView open.
OVITO_SUFFIXES = (".dump", ".lammpstrj", ".ca", ".extxyz", ".xyz", ".data", ".vasp",
                  ".poscar")
PARAVIEW_SUFFIXES = (".bp", ".xdmf", ".xdmf3", ".vtu", ".pvd", ".vtk", ".pvtu")
#: Plots embedded per stage, and plots of helper solves linked per stage; the report
#: says how many more the stage's folder has.
MAX_PLOTS = 24
MAX_LINKED_PLOTS = 48


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        if len(v) > 6:
            return f"[{', '.join(_fmt(x) for x in v[:6])}, ... ({len(v)} values)]"
        return f"[{', '.join(_fmt(x) for x in v)}]"
    return str(v)


def _records(v: Any) -> bool:
    """Whether ``v`` is a mapping of two or more records alike (each a mapping of the
    same keys, of numbers, flags and short words): one table row each, not a flattened
    ``a.b.c`` row per number (the dataset's ``cij_stress_energy``: c11/c12/c44 x stress,
    energy, tolerance, ...)."""
    if not isinstance(v, Mapping) or len(v) < 2:
        return False
    recs = list(v.values())
    if not all(isinstance(r, Mapping) and r for r in recs):
        return False
    keys = set(recs[0])
    return all(set(r) == keys and all(
        x is None or isinstance(x, (bool, int, float)) or (isinstance(x, str) and len(x) <= 40)
        for x in r.values()) for r in recs)


def _flat(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if prefix and _records(v):   # a table (see _split_tables), one row per record
            out.append((f"{prefix}{k}", [{"": name, **r} for name, r in v.items()]))
        elif isinstance(v, Mapping):
            out.extend(_flat(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _empty(v: Any) -> bool:
    """A value the report's tables leave out (``verdicts.json`` and the artifact's
    summary keep it): None, an empty string, list or mapping."""
    return v is None or (isinstance(v, (str, list, tuple, Mapping)) and len(v) == 0)


def _md_cell(text: str) -> str:
    """A Markdown table cell: a ``|`` would end the cell and a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _split_tables(rows: list[tuple[str, Any]]
                  ) -> tuple[list[tuple[str, Any]], list[tuple[str, list[str], list[list[str]]]]]:
    """Split summary rows into (quantity rows, tables): a value that is a non-empty list of
    mappings becomes a table (key, columns, formatted rows), one row per item, its columns
    the items' keys in first-seen order (nested ones flattened as ``a.b``, a missing one
    blank); every other row stays a (key, value) quantity row."""
    scalars, tables = [], []
    for k, v in rows:
        items = ([dict(_flat(x)) for x in v] if isinstance(v, list) and v
                 and all(isinstance(x, Mapping) for x in v) else [])
        cols = list(dict.fromkeys(c for it in items for c in it))
        if cols:
            tables.append((k, cols, [[_fmt(it[c]) if c in it and it[c] is not None else ""
                                      for c in cols] for it in items]))
        else:
            scalars.append((k, v))
    return scalars, tables


def _viewer_files(root: Path) -> tuple[list[Path], list[Path]]:
    ovito, paraview = [], []
    for p in sorted(root.rglob("*")):
        name = p.name.lower()
        if p.is_dir() and name.endswith(".bp"):
            paraview.append(p)
        elif p.is_file() and ".bp/" not in str(p).lower():
            if name.endswith(PARAVIEW_SUFFIXES):
                paraview.append(p)
            elif name.endswith(OVITO_SUFFIXES) or name.startswith("dump."):
                ovito.append(p)
    return ovito, paraview


def _property_rows(art: Artifact) -> list[tuple[str, Any, Any]]:
    """(key, model, DFT) rows of ``properties.json`` where it has a ``dft`` block."""
    p = art.path / "properties.json"
    if not p.is_file():
        return []
    try:
        props = json.loads(p.read_text())
    except json.JSONDecodeError:
        return []
    dft = props.get("dft") or {}
    return [(k, v, dft.get(k)) for k, v in props.items()
            if k != "dft" and isinstance(v, (int, float))]


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The summary as (key, value) rows; a quantity left null for a reason (e.g.
    ``limit_load_rel_error`` where no analytic limit applies) shows that reason, one left
    null or empty without one is left out (the summary keeps it)."""
    rows = _flat(summary)
    notes = {k.removesuffix("_note"): v for k, v in rows if k.endswith("_note") and v}

    def note_for(key: str) -> str | None:
        return next((n for base, n in notes.items() if key.startswith(base)), None)

    used = {k for k, v in rows if v is None and note_for(k)}
    out = []
    for k, v in rows:
        if k in used:
            out.append((k, f"n/a: {note_for(k)}"))
        elif k.endswith("_note") and any(u.startswith(k.removesuffix("_note")) for u in used):
            continue  # shown in place of the null value
        elif not _empty(v):
            out.append((k, v))
    return out


def override_warnings(summary: Mapping[str, Any]) -> list[str]:
    """One line per check a user overrode (a failing surrogate or mobility law used
    anyway because ``allow_failed_checks`` was set)."""
    out = []
    mc = summary.get("material_checks") or {}
    if mc.get("overridden"):
        out.append(f"the surrogate FAILED check_constitutive ({mc.get('failed_detail')}) "
                   "and was used anyway: allow_failed_checks = true")
    mob = summary.get("mobility_check") or {}
    if mob.get("overridden"):
        out.append(f"the mobility law FAILED {mob.get('failed')} and was used anyway: "
                   "allow_failed_checks = true")
    return out


#: Folders of an artifact whose plots the report links instead of embedding (what they
#: hold): the band's helper FEM solves, one folder per member, each with the FEM's plots.
LINKED_PLOT_DIRS = {"members": "the band's helper FEM solves (low/high: the flow stress "
                    "scaled down/up; m0, m1, ...: the surrogate fitted without that "
                    "microstructure)"}


def plot_caption(png: Path, root: Path, summary: Mapping[str, Any] | None) -> str:
    """What a plot shows, told apart from its namesakes: the file's stem, and for a DD
    with a study, whether it is the reference condition's (the artifact's own folder) or
    the study's (``study/``); elsewhere the folder it sits in."""
    rel = png.relative_to(root)
    summary = summary or {}
    parent = rel.parent.as_posix()
    if parent == "study":
        conds = (summary.get("study") or {}).get("conditions")
        n = f" ({len(conds)} conditions)" if isinstance(conds, list) and conds else ""
        return f"{png.stem}: study, every condition{n}"
    ref = summary.get("reference_condition")
    if parent == "." and isinstance(ref, Mapping) and (root / "study").is_dir():
        rate, temp = ref.get("strain_rate_s"), ref.get("temperature_k")
        at = ", ".join(x for x in (f"{rate:.3g} /s" if isinstance(rate, (int, float))
                                   else "", f"{temp:g} K" if isinstance(temp, (int, float))
                                   else "") if x)
        return f"{png.stem}: reference condition" + (f" ({at})" if at else "")
    return png.stem if parent == "." else f"{png.stem} ({parent})"


def report_sections(run_dir: Path, chain: Chain, arts: Mapping[str, Artifact]
                    ) -> list[dict[str, Any]]:
    """The report's content, one dict per made node (also used by the benchmark):
    ``plots`` (png, csv) to embed, ``linked_plots`` those of helper solves to link
    (:data:`LINKED_PLOT_DIRS`), ``captions`` png -> :func:`plot_caption`; at most
    :data:`MAX_PLOTS` embedded and :data:`MAX_LINKED_PLOTS` linked, ``plots_more`` and
    ``linked_more`` the numbers left out."""
    records = read_records(run_dir)
    out = []
    for n in chain.nodes:
        art = arts.get(n.name)
        if art is None:
            continue
        rec = records.get(n.name, {})
        pngs = sorted(art.path.rglob("*.png"))
        linked = [p for p in pngs
                  if set(p.relative_to(art.path).parts[:-1]) & set(LINKED_PLOT_DIRS)]
        shown = [p for p in pngs if p not in linked]
        ovito, paraview = _viewer_files(art.path)
        out.append({
            "name": n.name, "kind": n.kind, "path": art.path,
            "seconds": rec.get("seconds", art.manifest.get("wall_seconds")),
            "summary": summary_rows(art.summary), "raw_summary": art.summary,
            "warnings": override_warnings(art.summary),
            "properties": _property_rows(art),
            "plots": [(p, plot_data_file(p)) for p in shown[:MAX_PLOTS]],
            "plots_more": max(0, len(shown) - MAX_PLOTS),
            "linked_plots": [(p, plot_data_file(p)) for p in linked[:MAX_LINKED_PLOTS]],
            "linked_more": max(0, len(linked) - MAX_LINKED_PLOTS),
            "captions": {p: plot_caption(p, art.path, art.summary)
                         for p in shown[:MAX_PLOTS]},
            "ovito": ovito[:20], "paraview": paraview[:20],
        })
    return out


def _linked_title(s: Mapping[str, Any]) -> str:
    """What the section's linked plots are (:data:`LINKED_PLOT_DIRS`)."""
    tops = {png.relative_to(s["path"]).parts[0] for png, _ in s.get("linked_plots", [])}
    return "; ".join(LINKED_PLOT_DIRS.get(t, t) for t in sorted(tops))


def _linked_groups(s: Mapping[str, Any]) -> list[tuple[str, list[Path]]]:
    """The section's linked plots grouped by their folder (``members/high``, ...)."""
    groups: dict[str, list[Path]] = {}
    for png, _ in s.get("linked_plots", []):
        groups.setdefault(png.parent.relative_to(s["path"]).as_posix(), []).append(png)
    return list(groups.items())


def _rel(p: Path, root: Path) -> str:
    return os.path.relpath(p, root)


def _kind_summary(s: Any) -> tuple[str, Mapping[str, Any] | None]:
    """(kind, summary) of a report section (a dict, its summary as ``raw_summary`` where
    it has one) or of an Artifact."""
    if isinstance(s, dict):
        return s["kind"], s.get("raw_summary")
    return s.kind, s.summary


def _kind_path(s: Any) -> Path | None:
    """The artifact folder of a report section (its ``path``) or of an Artifact."""
    p = s.get("path") if isinstance(s, dict) else getattr(s, "path", None)
    return Path(p) if p is not None else None


def _short_note(note: str) -> str:
    """A stated note's first clause, without its parentheses: ``fixed at 0 by model
    selection (chi2 ...); the best ...`` -> ``fixed at 0 by model selection``."""
    prev = None
    while prev != note:   # innermost parentheses first
        prev, note = note, re.sub(r"\s*\([^()]*\)", "", note)
    return note.split(";")[0].strip()


def _tau0_fixed_why(mob: Mapping[str, Any] | None, character: str) -> str | None:
    """Why the mobility fit fixed ``character``'s glide threshold τ₀ at 0 (its
    ``drag_<c>_tau0_note`` without ``drag_<c>_tau0_err_mpa``: a choice, not a measured
    value), the note's first clause less its ``fixed at 0``: ``by model selection``, ``not
    fitted: one stress at 300 K``, or "" where it says no more; None where τ₀ was measured
    or the law records no note."""
    note = (mob or {}).get(f"drag_{character}_tau0_note")
    if not (isinstance(note, str) and note) or (
            (mob or {}).get(f"drag_{character}_tau0_err_mpa") is not None):
        return None
    why = _short_note(note)
    return why[len("fixed at 0"):].lstrip(" :,") if why.startswith("fixed at 0") else why


def _stage_summaries(arts_or_sections: Any) -> dict[str, Mapping[str, Any]]:
    """The last summary of each kind among reports sections or Artifacts."""
    out: dict[str, Mapping[str, Any]] = {}
    for s in arts_or_sections:
        kind, sm = _kind_summary(s)
        if sm:
            out[kind] = sm
    return out


def conditions_clause(arts_or_sections: Any) -> str | None:
    """What the FEM's loads and band are conditional on, in a short clause, from the
    artifacts: the one glide character the DD moved every dislocation with (its summary's
    ``mobility.character``), and whether the mobility law had another character's law it
    left unused or none measured (a character is measured where the MobilityLaw summary's
    ``tau_max_mpa_by_character`` has it; a summary from before that key: where it has
    ``drag_<other>_b0_pa_s``);
    and that character's glide threshold τ₀ where the mobility fit fixed it at 0
    (:func:`_tau0_fixed_why`). ``conditional on edge-only glide in the DD (the screw law
    not used) and the edge glide threshold τ₀ = 0 (a model-selection choice)``; None
    where the DD records no character and τ₀ was measured."""
    from scalebridge.dd_coupling.mobility import CHARACTERS

    sm = _stage_summaries(arts_or_sections)
    dd, mob = sm.get("DDRun"), sm.get("MobilityLaw")
    character = ((dd or {}).get("mobility") or {}).get("character")
    items = []
    if isinstance(character, str) and character:
        others = [o for o in CHARACTERS if o != character]
        tops = (mob or {}).get("tau_max_mpa_by_character")
        unused = [o for o in others if (o in tops if isinstance(tops, Mapping) else
                                        (mob or {}).get(f"drag_{o}_b0_pa_s") is not None)]
        text = f"{character}-only glide in the DD"
        if unused:
            text += f" (the {' and '.join(unused)} law not used)"
        elif mob and others:
            text += f" (no {' or '.join(others)} mobility measured)"
        items.append(text)
    c = character if isinstance(character, str) and character else "edge"
    why = _tau0_fixed_why(mob, c)
    if why is not None:
        what = ("a model-selection choice" if why.startswith("by model selection")
                else why or "fixed, not measured")
        items.append(f"the {c} glide threshold τ₀ = 0 ({what})")
    return "conditional on " + " and ".join(items) if items else None


#: The source-families fit's parameters (``fit.parameters``) in the report's words.
FIT_PARAMETER_NAMES = {"scale": "family strength scale", "spread": "family spread",
                       "sigma0_mpa": "σ_0", "sigma_inf_mpa": "σ_∞", "eps_h": "ε_h",
                       "emission": "emission per firing", "pinning_time_s": "pinning time",
                       "pinning_strain": "pinning strain"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def not_covered_line(arts_or_sections: Any, after_answer: bool = False) -> str | None:
    """What the FEM load band does not carry, beside it: the DD's stated assumptions
    (its summary's ``assumptions``: sources, obstacles, junctions, nucleation rule, cell),
    the one glide character every dislocation moved with, that character's glide
    threshold τ₀ where the mobility fit fixed it at 0 (``drag_<c>_tau0_note`` without
    ``drag_<c>_tau0_err_mpa``), the surrogate's static-strength floor (its record's
    ``fit.static_floor_mpa``, with σ_b's parameters that sit at it), the fit's other
    parameters that ended at the edge of their range (``fit.at_bound``), and the FEM's
    own time step, neglected inertia and mesh;
    the mesh is not listed where the FEM measured it (the fem verdict's
    ``mesh_convergence``: the final load's change with every element size halved is said
    instead). ``after_answer``: the report's answer line (:func:`answer_line`) stands
    above, so the glide character and τ₀ its :func:`conditions_clause` states are only
    referred to here, not said twice. None without a LoadBand."""
    arts_or_sections = list(arts_or_sections)   # read twice (conditions_clause)
    stated = conditions_clause(arts_or_sections) if after_answer else None
    band = dd = fem = mob = None
    sur_path = None
    for s in arts_or_sections:
        kind, sm = _kind_summary(s)
        if kind == "LoadBand":
            band = sm
        elif kind == "DDRun":
            dd = sm
        elif kind == "FieldResults":
            fem = sm
        elif kind == "MobilityLaw":
            mob = sm
        elif kind == "Surrogate":
            sur_path = _kind_path(s)
    if not band:
        return None
    items = []
    a = (dd or {}).get("assumptions") or {}
    items += [f"{k} {a[k]}" for k in ("source", "obstacle", "junction", "nucleation")
              if isinstance(a.get(k), str)]
    if isinstance(a.get("cell_um"), list) and a["cell_um"]:
        items.append(f"a {' x '.join(f'{float(x):.3g}' for x in a['cell_um'])} µm 2D cell")
    character = ((dd or {}).get("mobility") or {}).get("character")
    if stated:
        items.append("the glide the answer is conditional on (above)")
    elif character:
        items.append(f"every dislocation gliding with the {character} law")
    c = character or "edge"
    why = _tau0_fixed_why(mob, c)
    if why is not None and not stated:
        sep = " " if why.startswith("by ") else ": "
        items.append(f"the {c} glide threshold τ₀ (fixed at 0" + (sep + why if why else "")
                     + ")")
    fit: dict[str, Any] = {}
    if sur_path is not None:
        try:
            fit = json.loads((sur_path / "surrogate.json").read_text())["fit"]
        except (OSError, ValueError, KeyError, TypeError):
            fit = {}
    fit = fit if isinstance(fit, dict) else {}
    floor = fit.get("static_floor_mpa")
    floor = float(floor) if _is_number(floor) else None
    ab, pars = fit.get("at_bound"), fit.get("parameters")
    bounded = [str(k) for k in ab] if isinstance(ab, list) else []
    pars = pars if isinstance(pars, dict) else {}
    # σ_b's two at the floor belong to the floor's sentence, not to a second one
    at_floor = [k for k in bounded if floor is not None and k in ("sigma0_mpa", "sigma_inf_mpa")
                and _is_number(pars.get(k)) and pars[k] <= floor * (1.0 + 1e-9)]
    bounded = [k for k in bounded if k not in at_floor]
    if floor is not None:
        on = (f" ({' and '.join(FIT_PARAMETER_NAMES.get(k, k) for k in at_floor)} at it)"
              if at_floor else "")
        items.append(f"the surrogate's static strength, at least {floor:.3g} MPa{on}: "
                     "not resolved by the DD's rates")
    if bounded:
        its = "its" if len(bounded) == 1 else "their"
        items.append("the surrogate's " + ", ".join(FIT_PARAMETER_NAMES.get(k, k)
                                                    for k in bounded)
                     + f": at the edge of the range the fit allows {its} value (bounded, "
                     "not set by the DD)")
    if fem:
        mesh = mesh_convergence_check(fem)
        if mesh.status == NA:
            items.append("the FEM's mesh and time step, and the inertia its quasi-static "
                         "solve neglects")
        else:
            items.append("the FEM's time step and the inertia its quasi-static solve "
                         "neglects (its mesh is measured instead: every element size "
                         f"halved moves the final load {100 * mesh.value:.2g} %)")
    if not items:
        return None
    return ("Not in the band (held fixed, each a stated assumption): "
            + "; ".join(items))


def shares_dof_text(shares: Mapping[str, Any], sources: Mapping[str, Any]) -> str:
    """Each source's share of the band's variance with its term's degrees of freedom
    (band.json ``sources.<s>.dof``) beside it: ``potential 1.6% (1 dof), ..., surrogate
    4.3% (0.073 dof)``, then, for any term below 1 dof, that its value is barely
    determined; the shares alone where no term records its dof."""
    parts, loose = [], []
    for k, v in shares.items():
        src = sources.get(k)
        nu = src.get("dof") if isinstance(src, Mapping) else None
        one = shares_text({k: v})
        if _is_number(nu):
            one += f" ({float(nu):.2g} dof)"
            if nu < 1:
                loose.append(f"the {k} term's {float(nu):.2g} dof: its value is barely "
                             "determined")
        parts.append(one)
    return ", ".join(parts) + "".join(f"; {x}" for x in loose)


def band_line(arts_or_sections: Any) -> str | None:
    """One sentence on the FEM load band and its shares, from a LoadBand summary."""
    summ = None
    for s in arts_or_sections:
        kind, sm = _kind_summary(s)
        if kind == "LoadBand":
            summ = sm
    if not summ or not summ.get("fem_load_band_mpa"):
        return None
    lo, hi = summ["fem_load_band_mpa"]
    k = summ.get("coverage_factor", 1.0)
    shares = shares_dof_text(summ.get("band_shares") or {}, summ.get("sources") or {})
    peak = ""
    if summ.get("max_load_band_mpa") and summ.get("max_load_mpa") is not None:
        plo, phi = summ["max_load_band_mpa"]
        final = summ.get("final_load_mpa")
        upper = (final is not None and float(summ["max_load_mpa"]) > 1.05 * float(final))
        peak = (f"; maximum load {_fmt(summ['max_load_mpa'])} MPa, band [{_fmt(plo)}, "
                f"{_fmt(phi)}] MPa (its own sensitivity: the final load is where the "
                "ramp stopped" + ("; the maximum is an upper yield, which a rate-dependent "
                                  "material sets at its loading rate (source families: the "
                                  "first sources' nucleation delay), not a static strength"
                                  if upper else "") + ")")
    nu, level = summ.get("effective_dof"), summ.get("coverage_level")
    # k: Student's t for the terms' degrees of freedom ("auto"), or the number set
    why_k = (f", k being Student's t at {100 * float(level):g} % for "
             + ("many" if nu is None else f"{float(nu):.2g}")
             + " effective degrees of freedom" if level else "")
    rerun = ""
    if summ.get("rerun_interval_mpa"):
        rlo, rhi = summ["rerun_interval_mpa"]
        # computed from the band, not observed: L -/+ sqrt(2) k u
        rerun = ("; expected interval of a rerun's final load (computed: two runs differ "
                 f"by √2 × the uncertainty): [{_fmt(rlo)}, {_fmt(rhi)}] MPa")
    if summ.get("load_uncertainty_mpa") is not None:
        how = (f"± {float(k):.3g} x the load's standard uncertainty "
               f"{_fmt(summ['load_uncertainty_mpa'])} MPa{why_k}; the uncertainty: the "
               f"flow stress's {100 * float(summ.get('flow_rel_uncertainty') or 0):.2g}% "
               "times the load's sensitivity to it"
               + (", and the DD realisations through FEM solves of surrogates fitted "
                  "without each microstructure" if summ.get("fold_loads_mpa") else ""))
    else:   # a band.json from before load_uncertainty_mpa
        how = (f"± {_fmt(k)} x the flow stress's standard uncertainty "
               f"{100 * float(summ.get('rel_uncertainty') or 0):.2g}%, times the load's "
               "sensitivity to it")
    return (f"FEM final load {_fmt(summ.get('final_load_mpa'))} MPa, band "
            f"[{_fmt(lo)}, {_fmt(hi)}] MPa ({how}){rerun}{peak}; share of the band's "
            f"variance: {shares}")


def answer_line(arts_or_sections: Any, band_planned: bool = True) -> str | None:
    """The run's answer in one line: the FEM's final load and its band, the maximum load
    and its band, and each source's share of the band's variance (from the LoadBand; the
    FEM's loads alone where there is no band, saying why: the band stage did not run, or
    ``band_planned`` False: the settings turn it off), then what they are conditional
    on (:func:`conditions_clause`: the DD's one glide character, a glide threshold fixed
    at 0); None before the FEM ran."""
    arts_or_sections = list(arts_or_sections)   # read twice (conditions_clause)
    band = fem = None
    for s in arts_or_sections:
        kind, sm = _kind_summary(s)
        if kind == "LoadBand" and sm and sm.get("fem_load_band_mpa"):
            band = sm
        elif kind == "FieldResults" and sm:
            fem = sm
    src = band or fem
    if not src or src.get("final_load_mpa") is None:
        return None

    def load(value: Any, rng: Any) -> str:
        out = f"{_fmt(value)} MPa"
        if isinstance(rng, (list, tuple)) and len(rng) == 2:
            out += f", band [{_fmt(rng[0])}, {_fmt(rng[1])}] MPa"
        return out

    b = band or {}
    parts = [f"FEM final load {load(src['final_load_mpa'], b.get('fem_load_band_mpa'))}"]
    if src.get("max_load_mpa") is not None:
        parts.append(f"maximum load {load(src['max_load_mpa'], b.get('max_load_band_mpa'))}")
    if band and band.get("band_shares"):
        parts.append("shares of the band's variance: " + shares_text(band["band_shares"]))
    elif not band:
        parts.append("no band (the band stage did not run)" if band_planned else
                     "no band (it is off in the settings: [continuum.band] enabled = false)")
    cond = conditions_clause(arts_or_sections)
    if cond:
        parts.append(cond)
    return "; ".join(parts)


def limit_load_cross_check_line(arts_or_sections: Any) -> str | None:
    """:func:`scalebridge.continuum.limit_load.limit_load_cross_check` of the run's FEM
    (where it has no graded limit load: a rate-dependent surrogate) against its DD, for
    the FEM's section; None without both or where it does not apply."""
    fem = dd = None
    fem_path = None
    for s in arts_or_sections:
        kind, sm = _kind_summary(s)
        if kind == "FieldResults" and sm:
            fem, fem_path = sm, _kind_path(s)
        elif kind == "DDRun" and sm:
            dd = sm
    if not fem or not dd or fem.get("limit_load_rel_error") is not None:
        return None
    from scalebridge.continuum.limit_load import final_displacement_mm, limit_load_cross_check

    chk = limit_load_cross_check(
        fem, dd, final_displacement_mm(fem_path) if fem_path is not None else None)
    return chk["text"] if chk else None


def stress_key(sections: Any) -> str | None:
    """Which stress, rate and load each stage of this run reports (only the stages it
    has): the DD's τ and γ̇, the surrogate's von Mises and tensor norms, the FEM's load;
    None without any of them."""
    kinds = dict(_kind_summary(s) for s in sections)
    parts = []
    if "DDRun" in kinds:
        parts.append("DD: the applied shear stress τ (σ_xy) at the shear strain rate γ̇ "
                     "(`strain_rate_s`: per second); `flow_stress_mpa` and "
                     "`density_end_m2` are means over the last quarter of the strain")
    if "Surrogate" in kinds:
        parts.append("surrogate and FEM material: von Mises σ_eq (√3 τ in the DD's shear; "
                     "`initial_yield_mpa` is its static strength at zero plastic strain); "
                     "the held-out error, the realisation scatter and the time-step change "
                     "are RMS norms of the stress tensor (Mandel; √2 τ in simple shear)")
    if "FieldResults" in kinds:
        name = (kinds["FieldResults"] or {}).get("load_name")
        parts.append(f"FEM: the load is {axis_label(name) if name else 'the problem’s'}" + (
            " (the band's too); reactions in N (per mm of thickness in 2D)"))
    return ("Which stress is which: " + "; ".join(parts)) if parts else None


def _overall_text(verdicts: Mapping[str, Any]) -> tuple[str, str, str]:
    """(status, headline, qualifier) of the overall verdict line: ``partial run: k of n
    stages`` (never green) where a stage of the chain did not run."""
    ov = verdicts["overall"]
    if ov != PARTIAL:
        return ov, f"{MARK[ov]} {ov}", "the worst stage"
    k, n = verdicts.get("stages_run"), verdicts.get("stages_planned")
    w = verdicts.get("worst_of_run")
    stop = verdicts.get("stopped_after")
    stopped = f"stopped after {stop} (--until or [run] stop_after); " if stop else ""
    return (ov, f"{MARK[ov]} partial run: {k} of {n} stages",
            stopped + (f"{n - k} not run: no answer from them; worst of the stages that "
                       f"ran: {MARK.get(w, '')} {w}" if isinstance(k, int)
                       and isinstance(n, int) else "a stage did not run"))


def _verdict_md(verdicts: Mapping[str, Any] | None) -> list[str]:
    if not verdicts:
        return []
    _, head, why = _overall_text(verdicts)
    lines = [f"**Overall verdict: {head}** ({why}; "
             "[verdicts.json](verdicts.json) has every check and threshold)", "",
             "| stage | verdict | checks |", "|---|---|---|"]
    for st in verdicts["stages"]:
        if st["verdict"] == NOT_RUN:
            lines.append(f"| {st['stage']} | {MARK[NOT_RUN]} {NOT_RUN} | |")
            continue
        # a pointer, not a link: Markdown renderers name heading anchors differently
        checks = "<br>".join(_md_cell(f"{MARK[c['status']]} {c['name']}: {c['reason']}")
                             + (" (details below)" if c.get("detail") else "")
                             for c in st["checks"])
        lines.append(f"| {st['stage']} | {MARK[st['verdict']]} {st['verdict']} | {checks} |")
    legend = "; ".join(f"{MARK[k]} {k}: {v}" for k, v in _legend(verdicts).items())
    lines += ["", legend + ".", ""]
    details = _details(verdicts)
    if details:
        lines += ["### Details", ""]
        lines += [f"- {MARK[c['status']]} **{st}/{c['name']}**: {_md_cell(c['detail'])}"
                  for st, c in details]
        lines.append("")
    return lines


def _legend(verdicts: Mapping[str, Any]) -> dict[str, str]:
    """The statuses' meanings, with ``not run`` where a stage did not run."""
    if any(st["verdict"] == NOT_RUN for st in verdicts["stages"]):
        return {**LEGEND, NOT_RUN: NOT_RUN_LEGEND}
    return dict(LEGEND)


def _details(verdicts: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(stage, check) of every check with a detail, in the table's order (a
    verdicts.json from before the detail has none)."""
    return [(st["stage"], c) for st in verdicts["stages"] for c in st["checks"]
            if c.get("detail")]


def _detail_id(stage: str, check: str) -> str:
    return f"detail-{stage}-{check}"


def _band_planned(verdicts: Mapping[str, Any] | None) -> bool:
    """Whether the chain has the band stage (the settings can turn it off); True where
    the verdicts do not say."""
    if not verdicts:
        return True
    return any(st.get("kind") == "LoadBand" for st in verdicts["stages"])


def _more_md(n: int) -> str:
    return f"… {n} more in the stage's folder" if n else ""


def _cross_checks(sections: list[dict[str, Any]]) -> dict[str, str]:
    """Informational lines (not graded) under a stage's numbers, by stage name: the FEM's
    limit-load cross-check against the DD's flow stress
    (:func:`limit_load_cross_check_line`)."""
    line = limit_load_cross_check_line(sections)
    fem = next((s["name"] for s in sections if s["kind"] == "FieldResults"), None)
    return {fem: line} if line and fem else {}


def render_markdown(run_dir: Path, sections: list[dict[str, Any]], title: str,
                    verdicts: Mapping[str, Any] | None = None) -> str:
    lines = [f"# {title}", ""]
    answer = answer_line(sections, _band_planned(verdicts))
    if answer:
        lines += [f"**Answer:** {answer}.", ""]
    lines += [f"Run directory `{run_dir}`, report written "
              f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.", ""]
    lines += _verdict_md(verdicts)
    band = band_line(sections)
    if band:
        lines += [band + ".", ""]
    fixed = not_covered_line(sections, after_answer=bool(answer))
    if fixed:
        lines += [fixed + ".", ""]
    key = stress_key(sections)
    if key:
        lines += [key + ".", ""]
    lines += ["| stage | artifact | seconds |", "|---|---|---|"]
    cross_checks = _cross_checks(sections)
    for s in sections:
        secs = _fmt(s["seconds"]) if s["seconds"] is not None else ""
        lines.append(f"| {s['name']} | {s['kind']} (`{_rel(s['path'], run_dir)}`) | {secs} |")
    for s in sections:
        lines += ["", f"## {s['name']}: {s['kind']}", ""]
        for w in s.get("warnings", []):
            lines += [f"> **Warning:** {w}", ""]
        rows, tables = _split_tables(s["summary"])
        if rows:
            lines += ["| quantity | value |", "|---|---|"]
            lines += [f"| {k} | {_md_cell(_fmt(v))} |" for k, v in rows]
            lines.append("")
        cross = cross_checks.get(s["name"])
        if cross:
            lines += [f"{cross[:1].upper()}{cross[1:]}.", ""]
        for name, cols, cells in tables:
            lines += [f"**{name}**", "", f"| {' | '.join(cols)} |", "|---" * len(cols) + "|"]
            lines += [f"| {' | '.join(_md_cell(c) for c in r)} |" for r in cells]
            lines.append("")
        if s["properties"]:
            lines += ["| property | this potential | DFT |", "|---|---|---|"]
            lines += [f"| {k} | {_fmt(v)} | {_fmt(d) if d is not None else ''} |"
                      for k, v, d in s["properties"]]
            lines.append("")
        for png, csv in s["plots"]:
            rel = _rel(png, run_dir)
            cap = s.get("captions", {}).get(png, png.stem)
            lines.append(f"![{cap}]({rel})")
            said = [f"*{cap}*"] if cap != png.stem else []   # a caption beyond the name
            if csv is not None:
                said.append(f"data: [{csv.name}]({_rel(csv, run_dir)})")
            if said:
                lines.append("; ".join(said))
            lines.append("")
        if s.get("plots_more"):
            lines += [f"{_more_md(s['plots_more'])} (`{_rel(s['path'], run_dir)}`).", ""]
        groups = _linked_groups(s)
        if groups:
            lines.append(f"Plots of {_linked_title(s)}:")
            lines.append("")
            lines += [f"- {folder}: " + ", ".join(f"[{p.stem}]({_rel(p, run_dir)})"
                                                   for p in pngs) for folder, pngs in groups]
            if s.get("linked_more"):
                lines.append(f"- {_more_md(s['linked_more'])} "
                             f"(`{_rel(s['path'], run_dir)}`)")
            lines.append("")
        if s["ovito"]:
            lines.append("Open in OVITO: " + ", ".join(
                f"[{p.name}]({_rel(p, run_dir)})" for p in s["ovito"]))
            lines.append("")
        if s["paraview"]:
            lines.append("Open in ParaView: " + ", ".join(
                f"[{p.name}]({_rel(p, run_dir)})" for p in s["paraview"]))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _verdict_html(verdicts: Mapping[str, Any] | None) -> list[str]:
    if not verdicts:
        return []
    e = html.escape
    ov, head, why = _overall_text(verdicts)
    parts = [f"<p><b>Overall verdict: <span style='color:{COLOUR[ov]}'>{e(head)}"
             f"</span></b> ({e(why)}; <a href='verdicts.json'>verdicts.json</a> has "
             "every check and threshold)</p>",
             "<table><tr><th>stage</th><th>verdict</th><th>checks</th></tr>"]
    for st in verdicts["stages"]:
        v = st["verdict"]
        if v == NOT_RUN:
            parts.append(f"<tr><td>{e(st['stage'])}</td><td style='color:{COLOUR[v]}'>"
                         f"{MARK[v]} {e(v)}</td><td></td></tr>")
            continue
        checks = "<br>".join(
            f"<span style='color:{COLOUR[c['status']]}'>{MARK[c['status']]} "
            f"{e(c['name'])}</span>: {e(c['reason'])}"
            # the link opens the folded Details entry it jumps to (without scripts it
            # lands on the entry's summary line, one click from the text)
            + (f" (<a href='#{e(_detail_id(st['stage'], c['name']))}' onclick=\"document."
               "getElementById(this.hash.slice(1)).open=true\">details</a>)"
               if c.get("detail") else "") for c in st["checks"])
        parts.append(f"<tr><td><a href='#{e(st['stage'])}'>{e(st['stage'])}</a></td>"
                     f"<td style='color:{COLOUR[v]}'>{MARK[v]} {e(v)}</td>"
                     f"<td>{checks}</td></tr>")
    parts.append("</table>")
    parts.append("<p>" + "; ".join(f"<span style='color:{COLOUR[k]}'>{MARK[k]} {e(k)}</span>: "
                                   f"{e(v)}" for k, v in _legend(verdicts).items()) + ".</p>")
    details = _details(verdicts)
    if details:
        parts.append("<h3 id='details'>Details</h3>")
        parts += [f"<details id='{e(_detail_id(st, c['name']))}'><summary>"
                  f"<span style='color:{COLOUR[c['status']]}'>{MARK[c['status']]}</span> "
                  f"{e(st)}/{e(c['name'])}: {e(c['reason'])}</summary>"
                  f"<p>{e(c['detail'])}</p></details>" for st, c in details]
    return parts


def render_html(run_dir: Path, sections: list[dict[str, Any]], title: str,
                verdicts: Mapping[str, Any] | None = None) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             # a figure keeps its own size up to the content's width (a wide multi-panel
             # one uses all of it; two narrow ones sit side by side)
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
             "vertical-align:top}figure{display:inline-block;max-width:100%;margin:4px;"
             "vertical-align:top}img{max-width:100%;height:auto}</style></head><body>",
             f"<h1>{e(title)}</h1>"]
    answer = answer_line(sections, _band_planned(verdicts))
    if answer:
        parts.append(f"<p><b>Answer:</b> {e(answer)}.</p>")
    parts.append(f"<p>Run directory <code>{e(str(run_dir))}</code>, report written "
                 f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>")
    parts += _verdict_html(verdicts)
    band = band_line(sections)
    if band:
        parts.append(f"<p>{e(band)}.</p>")
    fixed = not_covered_line(sections, after_answer=bool(answer))
    if fixed:
        parts.append(f"<p>{e(fixed)}.</p>")
    key = stress_key(sections)
    if key:
        parts.append(f"<p>{e(key)}.</p>")
    parts.append("<table><tr><th>stage</th><th>artifact</th><th>seconds</th></tr>")
    cross_checks = _cross_checks(sections)
    for s in sections:
        secs = _fmt(s["seconds"]) if s["seconds"] is not None else ""
        parts.append(f"<tr><td><a href='#{e(s['name'])}'>{e(s['name'])}</a></td>"
                     f"<td>{e(s['kind'])}</td><td>{secs}</td></tr>")
    parts.append("</table>")
    for s in sections:
        parts.append(f"<h2 id='{e(s['name'])}'>{e(s['name'])}: {e(s['kind'])}</h2>")
        for w in s.get("warnings", []):
            parts.append(f"<p style='color:#b00'><b>Warning:</b> {e(w)}</p>")
        rows, tables = _split_tables(s["summary"])
        if rows:
            parts.append("<table>" + "".join(
                f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in rows)
                + "</table>")
        cross = cross_checks.get(s["name"])
        if cross:
            parts.append(f"<p>{e(cross[:1].upper() + cross[1:])}.</p>")
        for name, cols, cells in tables:
            parts.append(f"<p><b>{e(name)}</b></p><table><tr>"
                         + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>"
                                   for r in cells) + "</table>")
        if s["properties"]:
            parts.append("<table><tr><th>property</th><th>this potential</th><th>DFT</th></tr>"
                         + "".join(f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td><td>"
                                   f"{e(_fmt(d)) if d is not None else ''}</td></tr>"
                                   for k, v, d in s["properties"]) + "</table>")
        for png, csv in s["plots"]:
            rel = e(_rel(png, run_dir))
            what = s.get("captions", {}).get(png, png.stem)
            cap = f" (<a href='{e(_rel(csv, run_dir))}'>csv</a>)" if csv is not None else ""
            name = e(png.name) if what == png.stem else f"{e(what)}: {e(png.name)}"
            parts.append(f"<figure><a href='{rel}'><img src='{rel}' alt='{e(what)}'></a>"
                         f"<figcaption>{name}{cap}</figcaption></figure>")
        where = f" (<code>{e(_rel(s['path'], run_dir))}</code>)"
        if s.get("plots_more"):
            parts.append(f"<p>{e(_more_md(s['plots_more']))}{where}.</p>")
        groups = _linked_groups(s)
        if groups:
            more = (f"<li>{e(_more_md(s['linked_more']))}{where}</li>"
                    if s.get("linked_more") else "")
            parts.append(f"<p>Plots of {e(_linked_title(s))}:</p><ul>" + "".join(
                f"<li>{e(folder)}: " + ", ".join(
                    f"<a href='{e(_rel(p, run_dir))}'>{e(p.stem)}</a>" for p in pngs)
                + "</li>" for folder, pngs in groups) + more + "</ul>")
        for label, files in (("OVITO", s["ovito"]), ("ParaView", s["paraview"])):
            if files:
                parts.append(f"<p>Open in {label}: " + ", ".join(
                    f"<a href='{e(_rel(p, run_dir))}'>{e(p.name)}</a>" for p in files)
                    + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(run_dir: Path, chain: Chain, arts: Mapping[str, Artifact],
                 title: str | None = None, stopped_after: str | None = None) -> Path:
    """Write ``verdicts.json``, ``report.md`` and ``report.html`` into ``run_dir``;
    returns the Markdown path. ``stopped_after``: the last stage a run was asked to make
    (``--until``), said in the overall line of a partial run."""
    run_dir = Path(run_dir)
    title = title or f"scalebridge run {run_dir.name}"
    sections = report_sections(run_dir, chain, arts)
    verdicts = run_verdicts({n.name: arts[n.name] for n in chain.nodes if n.name in arts},
                            planned=[(n.name, n.kind) for n in chain.nodes])
    if stopped_after and verdicts["overall"] == PARTIAL:
        verdicts["stopped_after"] = stopped_after
    write_json_atomic(run_dir / "verdicts.json", verdicts)
    md = run_dir / "report.md"
    write_text_atomic(md, render_markdown(run_dir, sections, title, verdicts))
    write_text_atomic(run_dir / "report.html", render_html(run_dir, sections, title, verdicts))
    return md


def current_artifacts(run_dir: Path, chain: Chain, config: Any,
                      made: Mapping[str, Artifact] | None = None) -> dict[str, Artifact]:
    """The artifacts of a run directory that are current, in chain order: ``made`` (what
    a run just made or found up to date) and every other stage that ``scalebridge
    status`` (:meth:`Chain.status`) calls done for ``config``; a stage never made, or
    stale, damaged or failed, is left out (the report's ``not run``)."""
    made = dict(made or {})
    if all(n.name in made for n in chain.nodes):
        return {n.name: made[n.name] for n in chain.nodes}
    done = {st.name for st in chain.status(Path(run_dir), config) if st.state == "done"}
    out = {}
    for n in chain.nodes:
        if n.name in made:
            out[n.name] = made[n.name]
        elif n.name in done:
            try:
                out[n.name] = read_artifact(Path(run_dir) / n.name, n.kind)
            except ArtifactError:   # replaced since status read it
                continue
    return out


def write_run_report(run_dir: Path, chain: Chain, config: Any,
                     made: Mapping[str, Artifact], until: str | None = None,
                     title: str | None = None) -> Path:
    """The report a run writes (``scalebridge run``): about the run directory, not only
    the stages this run was asked for. Every stage with a current artifact is in it
    (:func:`current_artifacts`: a finished run rerun with ``--until dd`` is still
    complete); the run is partial only where a stage of the chain has none, and then the
    overall line says where ``until`` stopped the run."""
    last = chain.selected(until)[-1].name
    stopped = last if last != chain.nodes[-1].name else None
    return write_report(Path(run_dir), chain, current_artifacts(run_dir, chain, config, made),
                        title=title, stopped_after=stopped)


def run_artifacts(run_dir: Path, settings: Any = None
                  ) -> tuple[Chain, str, dict[str, Artifact]]:
    """(chain, run name, artifacts) of a run directory, reading its files only: the chain
    of ``settings`` (default: the ``settings.json`` of the directory's last run) and each
    node's complete artifact there, in chain order (a node never made, or left
    incomplete, is left out; one made under other settings is read as it is: a stale
    artifact is reported as it is, where the run's own report, :func:`write_run_report`,
    leaves it out as not current)."""
    from scalebridge.workflows.pipeline import SETTINGS_JSON, _settings, build_chain

    run_dir = Path(run_dir)
    if settings is None:
        path = run_dir / SETTINGS_JSON
        try:
            settings = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ScalebridgeError(f"{run_dir} is not a scalebridge run directory ({path}: "
                                   f"{e})") from None
    cfg, _ = _settings(settings)
    chain = build_chain(cfg)
    arts = {}
    for n in chain.nodes:
        try:
            arts[n.name] = read_artifact(run_dir / n.name, n.kind)
        except ArtifactError:
            continue
    return chain, cfg.run.name, arts


def rewrite_report(run_dir: Path, settings: Any = None) -> Path:
    """Write ``verdicts.json``, ``report.md`` and ``report.html`` of a run directory again
    from the artifacts in it (:func:`run_artifacts`), running no stage; returns the
    Markdown path."""
    chain, name, arts = run_artifacts(run_dir, settings)
    return write_report(Path(run_dir), chain, arts, title=f"scalebridge run: {name}")


__all__ = ["answer_line", "band_line", "conditions_clause", "current_artifacts",
           "limit_load_cross_check_line", "override_warnings", "plot_caption",
           "render_html", "render_markdown", "report_sections", "rewrite_report",
           "run_artifacts", "stress_key", "summary_rows", "write_report",
           "write_run_report"]
