"""A loading condition is a surrogate input only when the data's flow stress depends on it
beyond the realisation scatter (issue 19, surrogate stage).

The Mo example's DD study (3 realisations at each of 3 strain rates x 2 temperatures)
gave flow stresses of 42/54/83 MPa at 4e4/7e4/1.5e5 /s and no temperature effect
(100 K and 300 K within each other's ~11 % scatter: temperature enters the DD only
through the mobility law, whose edge drag is nearly flat). A network given the
temperature anyway fitted the scatter as a temperature effect: held-out error 43.5 MPa
(4.2x the scatter), against 28.8 MPa without it. Here the same design is built from an
analytic flow stress with that scatter, once without and once with a real temperature
effect, and the test must tell them apart.
"""

from __future__ import annotations

import numpy as np
import pytest
from scalebridge.surrogates import mandel
from scalebridge.surrogates.data import StrainPaths
from scalebridge.surrogates.ensemble import condition_effect
from scalebridge.surrogates.train import SurrogateSettings, fit_neural_j2, split_paths

SHEAR, BULK = 126716.0, 266620.0            # MPa, the Mo example's elastic moduli
RATES = (4e4, 7e4, 1.5e5)                   # 1/s
TEMPS = (100.0, 300.0)                      # K
REL_SCATTER = 0.11                          # realisations' relative flow-stress scatter
GAMMA = np.linspace(0.0, 2.5e-3, 61)        # engineering shear strain


def study(thermal_per_k: float, seed: int = 0) -> StrainPaths:
    """A DD-like study (``source`` "ddrun": the paths of a condition are realisations of
    one loading), 3 realisations per (rate, T): elastic-perfectly plastic shear at τ_f =
    (30 + 3.5e-4 γ̇) (1 - thermal_per_k (T - 200)) (1 + scatter) MPa, each realisation's
    flow level drawn with relative std :data:`REL_SCATTER`."""
    rng = np.random.default_rng(seed)
    strain, stress, dt, temps, rates = [], [], [], [], []
    for rate in RATES:
        for t in TEMPS:
            for _ in range(3):
                tau_f = ((30.0 + 3.5e-4 * rate) * (1.0 - thermal_per_k * (t - 200.0))
                         * (1.0 + REL_SCATTER * rng.standard_normal()))
                tau = np.minimum(SHEAR * GAMMA, tau_f)
                strain.append(mandel.shear_strain(GAMMA))
                stress.append(mandel.shear_strain(2.0 * tau))
                dt.append((GAMMA[1] - GAMMA[0]) / rate)
                temps.append(t)
                rates.append(rate)
    return StrainPaths(np.array(strain), np.array(stress), np.array(dt), np.array(temps),
                       np.array(rates), None,
                       {"source": "ddrun", "bulk_mpa": BULK, "shear_mpa": SHEAR,
                        "yield_stress_mpa": 50.0})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_temperature_effect_is_not_an_input(seed: int) -> None:
    paths = study(0.0, seed)
    t = condition_effect(paths, "temperature")
    assert t is not None and t["dof"] == [3, 12]
    assert not t["matters"], t
    rate = condition_effect(paths, "log_rate")
    assert rate is not None and rate["matters"] and rate["p"] < 1e-4, rate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_temperature_effect_is_found(seed: int) -> None:
    """-0.2 %/K (40 % lower at 300 K than at 100 K, ~4 scatters): found every time (at
    -0.1 %/K, ~2 scatters, 3 realisations per condition find it in 7 seeds of 10)."""
    t = condition_effect(study(2e-3, seed), "temperature")
    assert t is not None and t["matters"], t


def paired_study(thermal_per_k: float, seed: int) -> StrainPaths:
    """:func:`study`'s design as the DD runs it: the three realisations of every condition
    are the same three microstructures (seeds), whose flow levels differ by
    :data:`REL_SCATTER` in every condition alike, with 2 % of independent noise on top."""
    rng = np.random.default_rng(seed)
    level = REL_SCATTER * rng.standard_normal(3)
    paths = study(0.0, seed)
    micro = np.tile(np.arange(3), len(paths) // 3)
    scale = ((1.0 - thermal_per_k * (paths.temperature_k - 200.0)) * (1.0 + level[micro])
             * (1.0 + 0.02 * rng.standard_normal(len(paths))))
    tau_f = (30.0 + 3.5e-4 * paths.strain_rate_s) * scale
    tau = np.minimum(SHEAR * GAMMA[None, :], tau_f[:, None])
    return StrainPaths(paths.strain, mandel.shear_strain(2.0 * tau), paths.dt,
                       paths.temperature_k, paths.strain_rate_s, None, dict(paths.meta),
                       microstructure=micro)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_microstructures_are_paired(seed: int) -> None:
    """-0.05 %/K (10 % lower at 300 K, about one microstructure-to-microstructure scatter):
    the paired (blocked) test finds it, as it must when the seeds repeat across conditions;
    the same paths without their microstructure labels (independent realisations) hide it
    in the seed-to-seed scatter. Without the effect the paired test stays quiet."""
    paths = paired_study(5e-4, seed)
    t = condition_effect(paths, "temperature")
    assert t is not None and t["blocked"] and t["dof"] == [3, 10], t
    assert t["matters"] and t["p"] < 1e-3, t
    unpaired = condition_effect(StrainPaths(paths.strain, paths.stress, paths.dt,
                                            paths.temperature_k, paths.strain_rate_s, None,
                                            dict(paths.meta)), "temperature")
    assert unpaired is not None and not unpaired["blocked"]
    assert unpaired["p"] > 10 * t["p"], (unpaired, t)   # 52x-8e6x over seeds 0-9
    none = condition_effect(paired_study(0.0, seed), "temperature")
    assert none is not None and none["blocked"] and not none["matters"], none


def test_untestable_without_repeated_conditions() -> None:
    paths = study(0.0)
    one_each = paths.subset(np.arange(0, len(paths), 3))
    assert condition_effect(one_each, "temperature") is None
    assert condition_effect(paths.subset(np.flatnonzero(paths.temperature_k == 100.0)),
                            "temperature") is None


def test_fit_drops_the_temperature_only_where_it_does_not_matter() -> None:
    s = SurrogateSettings(max_iterations=40, rollout_iterations=0, run_checks=False)
    for thermal, expect in ((0.0, ["log_rate"]), (2e-3, ["log_rate", "temperature"])):
        paths = study(thermal)
        itr, iva = split_paths(len(paths), s.val_fraction, s.seed)
        _, record, _, _ = fit_neural_j2(paths.subset(itr), paths.subset(iva), s)
        assert record["scalers"]["features"] == expect, record["config"]["condition_tests"]
        assert set(record["config"]["condition_tests"]) == {"log_rate", "temperature"}
    forced = s.model_copy(update={"use_temperature": "yes"})
    paths = study(0.0)
    itr, iva = split_paths(len(paths), s.val_fraction, s.seed)
    _, record, _, _ = fit_neural_j2(paths.subset(itr), paths.subset(iva), forced)
    assert "temperature" in record["scalers"]["features"]


def test_rate_window_averages_avalanches_to_the_applied_rate() -> None:
    """A serrated path: plastic increments in bursts (3 steps of 3x the applied rate, then
    6 elastic steps): per step the flow samples' rates are 3x the applied; averaged over
    the 9-step period they are the applied rate, where the flow stress belongs."""
    from scalebridge.surrogates.train import hardening_samples

    n, rate, dt = 90, 7e4, 1e-9
    dep = np.tile([3.0, 3.0, 3.0, 0, 0, 0, 0, 0, 0], n // 9) * rate * dt / np.sqrt(3.0)
    gp = np.concatenate([[0.0], np.cumsum(dep)]) * np.sqrt(3.0)
    gam = np.concatenate([[0.0], np.cumsum(np.full(n, rate * dt))])
    tau = SHEAR * (gam - gp) + 40.0 * (gam > 0)
    paths = StrainPaths(mandel.shear_strain(gam)[None], mandel.shear_strain(2 * tau)[None],
                        np.array([dt]), np.array([300.0]), np.array([rate]),
                        (gp / np.sqrt(3.0))[None],
                        {"source": "ddrun", "bulk_mpa": BULK, "shear_mpa": SHEAR})
    step = hardening_samples(paths, 1e-6)
    assert np.allclose(step["rate"], 3 * rate / np.sqrt(3.0))
    avg = hardening_samples(paths, 1e-6, rate_window=9)
    assert len(avg["rate"]) == len(step["rate"])
    inner = avg["rate"][3:-3]
    assert np.allclose(inner, rate / np.sqrt(3.0), rtol=1e-9)
