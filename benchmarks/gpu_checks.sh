#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent GPU machine (the device tool's
# image: python3 with a CUDA torch 2.11, no scalebridge environment). Run from the
# repository root; what that python3 lacks (deepmd-kit, pymatgen, ase, pydantic, ...)
# comes as wheels in .whl/ (see ../.library/device/README.md). Results land in $OUT:
#   pytest.log               the CUDA tests (DD engine on CUDA vs CPU, DeePMD on CUDA)
#   potentials_device.json   dp training ms/step on CUDA, merged into the committed file
#   dd_scaling_cuda.json     benchmarks/dd_scaling.py with the engine on CUDA
# SKIP_POT=1 / SKIP_DD=1 leave out the two benchmarks (a rerun of the tests alone).
set -u
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
# a prefix install, not --target: DeePMD finds mpich's libmpi.so.12 through the wheel's
# RECORD (importlib.metadata), which points outside site-packages, to <prefix>/lib
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_path('purelib', \
  vars={'base': '/tmp/sp', 'platbase': '/tmp/sp'}))")
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --prefix /tmp/sp .whl/*.whl || exit 1
fi
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/scalebridge   # the repository root is the package
export PYTHONPATH=/tmp/pkg:$SITE:$PWD/benchmarks PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export PATH=/tmp/sp/bin:$PATH
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch, deepmd.pt.cxx_op as c, scalebridge.potentials.train; print('torch', \
  torch.__version__, torch.cuda.get_device_name(0), 'deepmd ops', c.ENABLE_CUSTOMIZED_OP)" 2>&1 | tail -3
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs --timeout 120 \
  tests/dd_coupling/test_dd_coupling_field.py -k "cuda or device" \
  tests/potentials/test_potentials_device.py 2>&1 | tee "$OUT/pytest.log" | tail -15
if [ -z "${SKIP_POT:-}" ]; then
  cp benchmarks/results/potentials_device.json "$OUT/" 2>/dev/null
  timeout 100 python3 benchmarks/potentials_device.py --device cuda --steps 2000 \
    --out "$OUT/potentials_device.json" > "$OUT/potentials_device.log" 2>&1
  tail -25 "$OUT/potentials_device.log"
fi
[ -n "${SKIP_DD:-}" ] || timeout 160 python3 benchmarks/dd_scaling.py --device cuda --skip-errors \
  --out "$OUT/dd_scaling_cuda.json" 2>&1 | tee "$OUT/dd_scaling.log" | tail -20
