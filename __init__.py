"""scalebridge: couple the scales of materials simulation end to end."""

# Load order of three native stacks, fixed here because the package is imported first:
# h5py before dolfinx (with numba installed, which ffcx imports whenever it is present,
# h5py imported after dolfinx fails in h5py.h5t, "Not a datatype", and DeePMD reads
# through h5py), and torch before numba's LLVM (llvmlite loaded first moved the DD's
# torch arithmetic in its last bits, so a serial run and a process pool's differed, and
# crashed a later torch FFT). tests/workflows/test_workflows_imports.py checks both.
import h5py  # noqa: F401
import torch  # noqa: F401

__version__ = "0.1.0"
