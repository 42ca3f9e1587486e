"""scalebridge.dd_coupling: MD glide statistics -> mobility law -> 2D discrete dislocation
dynamics.

Public API::

    from scalebridge.dd_coupling import (FitMobilitySettings, DDSettings, load_mobility,
                                         check_mobility, LinearDragMobility, ...)
    law_art = FitMobilitySettings().make(defect_stats, "runs/x/mobility", properties=props)
    dd_art = DDSettings(realisations=4).make(law_art, props, "runs/x/dd")

Modules: :mod:`.mobility` (protocol, analytic laws, checker, save/load), :mod:`.neural`
(ensemble law), :mod:`.fit` (DefectStats -> MobilityLaw), :mod:`.elastic` (periodic edge
dislocation fields), :mod:`.engine` (state, ``init``, ``step``), :mod:`.simulate`
(DDSettings -> DDRun), :mod:`.inputs` (md artifact readers), :mod:`.cli` (``scalebridge dd``).
"""

from scalebridge.dd_coupling.fit import FitMobilitySettings
from scalebridge.dd_coupling.mobility import (
    KinkPairMobility,
    LinearDragMobility,
    MobilityLaw,
    ValidRange,
    check_mobility,
    load_mobility,
    save_mobility,
)
from scalebridge.dd_coupling.neural import NeuralMobility
from scalebridge.dd_coupling.simulate import DDSettings

__all__ = ["DDSettings", "FitMobilitySettings", "KinkPairMobility", "LinearDragMobility",
           "MobilityLaw", "NeuralMobility", "ValidRange", "check_mobility", "load_mobility",
           "save_mobility"]
