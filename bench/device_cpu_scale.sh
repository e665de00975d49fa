#!/usr/bin/env bash
# On the lent GPU machine (16 cores, no TensorFlow): train_cnn.py's input pipeline (bench_train.py 4)
# and training step on many CPU cores. TensorFlow's CPU wheel is 274 MB and a call carries 64 MiB, so it
# travels packed, in three calls to the warm machine. Here, unzip the cp312 manylinux wheels (`pip download
# --no-deps --only-binary=:all: --python-version 3.12 ...`) of tensorflow-cpu 2.21.0, keras, namex, optree,
# astunparse, gast, google-pasta, termcolor, ml_dtypes, protobuf, wrapt, flatbuffers and opt_einsum into
# site/, delete site/tensorflow/include, `tar -cf - site | xz -T2 -6` (150 MB), `split -n 3` into .tfc1/
# .tfc2/ .tfc3/ (ignored in .git/info/exclude). There, each call carries one and moves it to /tmp/tfc; the last runs:
#   bash bench/device_cpu_scale.sh $OUT
set -euo pipefail
out=${1:?usage: device_cpu_scale.sh OUT_DIR}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=/tmp/site
if [ ! -d /tmp/site/tensorflow ]; then
  cat /tmp/tfc/part* | python3 -c "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall('/tmp')"
fi
python3 -c "import os, tensorflow as tf, keras, numpy; print('tensorflow', tf.__version__, 'keras', keras.__version__, 'numpy', numpy.__version__, 'cores', len(os.sched_getaffinity(0)))"
grep -m1 "model name" /proc/cpuinfo; grep -o -m1 -w "avx512_bf16\|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
python3 bench/bench_train.py --parts pipeline --out /tmp/bout --pipeline-seconds 4
cp /tmp/bout/bench_train-*.json "$out/"
for batch in 64 256; do
  python3 train_cnn.py --split /tmp/bout/rss_data_2000_split --epochs 2 --max-steps-per-epoch $((76800 / batch)) \
    --batch-size "$batch" --out "/tmp/m$batch" --screenshots "/tmp/m$batch/shots" --no-onnx --quiet --fresh
  cp "/tmp/m$batch/metrics.json" "$out/metrics_b$batch.json"
  python3 - "$out/metrics_b$batch.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
steps, batch = m["training"]["steps_per_epoch"], m["config"]["batch_size"]
last = m["history"]["train_seconds"][-1]  # the first epoch also traces and compiles
print(f"train_cnn.py batch {batch}, {m['config']['precision']}: {steps * batch / last:,.0f} drawings/s "
      f"in the last epoch ({steps} steps in {last:.1f} s)")
PY
done
