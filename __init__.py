"""scalebridge: couple the scales of materials simulation end to end."""

# h5py before anything that loads dolfinx: with numba installed (the surrogate fits'
# compiled replay; ffcx imports numba whenever it is present), h5py imported after
# dolfinx fails in h5py.h5t ("Not a datatype"), and DeePMD reads its models and data
# through h5py (tests/workflows/test_workflows_imports.py)
import h5py  # noqa: F401

__version__ = "0.1.0"
