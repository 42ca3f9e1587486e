#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent GPU machine (the device tool's
# image: python3 with a CUDA torch 2.11, no scalebridge environment). Run from the
# repository root; what that python3 lacks (deepmd-kit, pymatgen, ase, pydantic, ...)
# comes as wheels in .whl/ (see ../.library/device/README.md). Results land in $OUT:
#   pytest.log               the CUDA tests (DD engine on CUDA vs CPU, DeePMD on CUDA)
#   potentials_device.json   dp training ms/step on CUDA, merged into the committed file
#   dd_scaling_cuda.json     benchmarks/dd_scaling.py with the engine on CUDA
# SKIP_POT=1 / SKIP_DD=1 leave out the two benchmarks (a rerun of the tests alone).
# .whl/ (git-ignored: echo /.whl/ >> .git/info/exclude) as filled on 2026-12-04, 52 MB,
# the versions of ./sb setup's environment (pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 ...):
#   deepmd-kit==3.2.0 mpich==5.0.2 dargs==0.5.1 typeguard==4.6.0 wcmatch==12.0.1 bracex==3.2.2
#   array-api-compat==1.16.0 lmdb==3.0.0 mendeleev==1.3.0 sqlalchemy==2.1.9 pint==0.24.4
#   flexcache==0.3 flexparser==0.4 platformdirs==4.14.7 pyfiglet==0.8.post1 deprecated==1.3.1
#   pymatgen==2026.10.24 pymatgen-core==2026.10.16 monty==2026.10.21 ruamel.yaml==0.19.1
#   spglib==2.8.0 uncertainties==3.2.3 palettable==3.3.3 orjson==3.13.0 plotly==7.1.0
#   ase==3.29.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0
#   typing-inspection==0.4.5 typing_extensions==4.16.0
# With the working tree (~8 MB) that is inside the device tool's 64 MiB.
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
