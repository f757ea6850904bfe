#!/bin/sh
# The GPU checks of issues 15 and 18 as one call on a lent GPU machine (the device tool):
# the CUDA tests, then the batched MinAtar benchmark on CUDA.  Results under $OUT (the device
# tool's folder that comes back), or ./gpu_checks.  Needs the project's dependencies installed
# beside the machine's CUDA torch (pip install --no-deps -e . with them carried as wheels).
#   sh benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" \
    > "$OUT/torch.txt" 2>&1
# determinism and equivalence on CUDA (device auto picks it), the batched games against CPU
python -m pytest -q -p no:cacheprovider tests/test_batched_minatar.py tests/test_rl_train.py \
    > "$OUT/tests_cuda.txt" 2>&1
# env-only up to 8,192 envs, PPO at 64 k-step rollouts with minibatches of 4,096
python benchmarks/bench_envs.py --device cuda --envs 512 2048 8192 --repeats 2 \
    --ppo-envs 512 2048 --ppo-rollout 65536 --ppo-batch 4096 --ppo-steps 500000 \
    --out "$OUT/bench_envs_cuda.json" > "$OUT/bench_envs_cuda.txt" 2>&1
tail -n 30 "$OUT/tests_cuda.txt" "$OUT/bench_envs_cuda.txt"
