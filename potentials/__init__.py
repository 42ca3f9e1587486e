"""scalebridge.potentials: DFT data -> validated DeePMD-kit potentials.

Public API::

    IngestSettings(...).make(sources, out, test_sources=None) -> Artifact (DFTDataset)
    TrainSettings(...).make(dataset, out, resources) -> Artifact (Potential)
    EvaluateSettings(...).make(potential, dataset, out) -> Artifact (Evaluation)
    load_potential(path) -> PotentialInfo       (.calculator(): ASE calculator)
    load_dataset(path) -> DatasetInfo
    read_source(path) -> list[Frame]            (vasprun.xml, OUTCAR, mlearn/FitSNAP JSON)
"""

from scalebridge.potentials.dataset import DatasetInfo, IngestSettings, load_dataset
from scalebridge.potentials.evaluate import EvaluateSettings
from scalebridge.potentials.frames import Frame
from scalebridge.potentials.model import DeepMDCalculator, PotentialInfo, load_potential
from scalebridge.potentials.readers import read_source
from scalebridge.potentials.train import DescriptorSettings, TrainSettings, run_dp

__all__ = [
    "DatasetInfo", "DeepMDCalculator", "DescriptorSettings", "EvaluateSettings", "Frame",
    "IngestSettings", "PotentialInfo", "TrainSettings", "load_dataset", "load_potential",
    "read_source", "run_dp",
]
