#!/bin/bash
# The checks of a lent GPU machine, in one call: the CUDA tests, then the calculators
# benchmark on CUDA against torch-pme 0.5.0 in the same run (float64 and float32),
# eager and with our step captured in a CUDA graph; then torch.compile against eager
# mode part by part (and inductor's bisector if a part deviates).
#
# The device machine has PyTorch but no network: wheels of vesin 0.6.2, torch-pme
# 0.5.0 and ase travel in .whl/ (ignored by git; see the device tool's README for the
# pip download command). Logs and JSON go to $OUT (default /tmp/device-out; at
# most six files, under the device tool's eight); the tables go to standard output.
# DEVICE=cpu SIZES="512" runs the same script here as a dry run. EAGER=0 skips the
# eager benchmarks; COMPILED_SIZES (default 32768) are the sizes of the compiled
# benchmark; PROFILE_SIZES (default 262144) those of the kernel profiles. ENERGY=1
# (default) makes our steps call calculator.energy, whose backward reuses the mesh
# forward pass on the GPU too (ENERGY=0: the energy summed from the potentials, as
# before); BASELINE=1 also times our float64 steps without the fused Triton kernels
# (TORCHPME_TRITON=0) in the same run.
# TESTS=0 skips the tests (TESTS_K selects CUDA tests by keyword), COMPILE=0 the
# compiled part.
set -u
OUT=${OUT:-/tmp/device-out}
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-4096 32768 262144}
energy=""
[ "${ENERGY:-1}" = 1 ] && energy="--energy"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
root=$PWD
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/vesin*.whl .whl/ase*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --target /tmp/tpme .whl/torch_pme*.whl || exit 1
export PYTHONPATH=$root/src:/tmp/site
other=/tmp/torch-pme-python  # python with torch-pme 0.5.0 instead of ours
printf '#!/bin/sh\nPYTHONPATH=/tmp/tpme:/tmp/site exec python3 "$@"\n' >$other
chmod +x $other
$other -c "import torchpme; print('other:', torchpme.__file__)"
python3 -c "import torch, torchpme; print('torch', torch.__version__, 'ours:', torchpme.__file__)"
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
fi

if [ "${TESTS:-1}" = 1 ]; then
    echo "== tests"
    TORCHPME_TEST_DEVICE=$DEVICE timeout 240 python3 -m pytest -q -p no:cacheprovider \
        tests/test_cuda.py tests/lib/test_mesh_interpolator.py \
        tests/lib/test_kspace_filter.py -k "${TESTS_K:-device or cuda or graph or synchronises or compiled}" \
        2>&1 | tee "$OUT/tests.log" | tail -25
    echo "== fused Triton kernels against the PyTorch forms (compiled for this GPU)"
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py \
        -k "not spread_and_gather or float64-1-5 or float64-3-6 or float32-1-6" \
        2>&1 | tee "$OUT/triton-tests.log" | tail -4
fi

cd "$root/benchmarks" || exit 1
if [ "${EAGER:-1}" = 1 ]; then
    echo "== float64, fixed parameters, eager and CUDA graph"
    timeout 170 python3 calculators.py --device "$DEVICE" --sizes $SIZES --repeat 20 \
        --cuda-graph --other $other $energy --json "$OUT/float64.json" 2>&1
    if [ "${BASELINE:-0}" = 1 ]; then
        echo "== float64, ours without the fused Triton kernels (TORCHPME_TRITON=0)"
        TORCHPME_TRITON=0 timeout 120 python3 calculators.py --device "$DEVICE" \
            --sizes $SIZES --repeat 20 --cuda-graph $energy 2>&1
    fi
    sizes32=${SIZES32-32768 262144}  # set to "" to skip float32
    if [ -n "$sizes32" ]; then
        echo "== float32, fixed parameters, eager and CUDA graph"
        timeout 110 python3 calculators.py --device "$DEVICE" --sizes $sizes32 \
            --repeat 20 --dtypes float32 --cuda-graph --other $other $energy \
            --json "$OUT/float32.json" 2>&1
    fi
fi
for size in ${PROFILE_SIZES-262144}; do  # "" for none
    for method in pme p3m; do
        echo "== kernels of the eager step: $method $size"
        timeout 60 python3 kernels.py --device "$DEVICE" --method $method --size $size \
            --top ${TOP:-12} $energy 2>&1 |
            grep -v -i "warn\|profiler"
    done
done

cd "$root" || exit 1
[ "${COMPILE:-1}" = 1 ] || exit 0
echo "== compiled step, part by part against eager mode"
if ! TORCHPME_TEST_DEVICE=$DEVICE timeout 100 python3 benchmarks/compile_parts.py \
    >"$OUT/compile_parts.log" 2>&1; then
    grep -v -i warn "$OUT/compile_parts.log" | grep -v "^ " | tail -12
    echo "== inductor bisector on the whole PME step"
    TORCHPME_TEST_DEVICE=$DEVICE timeout 150 python3 -m torch._inductor.compiler_bisector \
        run python3 benchmarks/compile_parts.py --whole pme 2>&1 | grep -v -i warn |
        tee "$OUT/bisect.log" | tail -6
else
    grep -v -i warn "$OUT/compile_parts.log" | grep -v "^ " | tail -12
    echo "== compiled (ours, then replayed from a CUDA graph), float64, against torch-pme eager"
    (cd benchmarks && timeout 240 python3 calculators.py --device "$DEVICE" \
        --sizes ${COMPILED_SIZES:-32768} --repeat 20 --compile --cuda-graph --other $other \
        $energy --json "$OUT/compiled.json" 2>&1)
fi
