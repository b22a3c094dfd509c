#!/usr/bin/env bash
# The GPU checks of issues 2, 3, 5 and 13 in one short run, for a session that is lent an accelerator
# (about 15 minutes of device time in all). Installs nothing: the device images carry jax, flax,
# optax, chex and orbax; this repository is put on PYTHONPATH. Results go to $OUT (the device
# tool's output folder) or benchmarks/results/gpu; copy them into benchmarks/results/ afterwards.
#
#   bash benchmarks/gpu_suite.sh            # on the device: run(command="bash benchmarks/gpu_suite.sh", timeout_s=560)
#
# Not yet run on a GPU: no session so far was lent one.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
python -c "import jax, flax, optax, orbax.checkpoint; print('devices:', jax.devices(), 'jax', jax.__version__)" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# issue 2: >= 1 B env agent-steps/s on the 500-SKU scenarios (and Standard-100 for reference)
timeout 140 python benchmarks/env_throughput.py --scenarios mabim/standard-100 mabim/standard-500 \
    --envs 1024 4096 16384 --modes step episode --repeats 5 --out "$OUT/env_throughput_gpu.json"
# issue 3: >= 200 M training agent-steps/s at K = 16 on Standard-100 within 40 GB; K = 16 vmapped vs sequential
# (E = 32: the environments per learner that benchmarks/paper_projection.py projects for Standard-100)
timeout 170 python benchmarks/train_throughput.py --scenarios mabim/standard-100 --num-envs 32 --updates 2 \
    --repeats 3 --out "$OUT/train_throughput_gpu.json"
# issue 13: the projection's programs compiled on the device (cost and memory analysis, compile time);
# compare its seconds per update with the measured one above
timeout 100 python benchmarks/paper_projection.py --no-readme --out "$OUT/paper_projection_gpu.json"
# issue 5: seconds per eSpark iteration at paper scale (K = 16, 502 k env steps per candidate), template provider
timeout 140 python benchmarks/iteration_time.py --preset paper --iterations 1 --out "$OUT/iteration_time_paper_gpu.json"
ls -l "$OUT"
