"""Why `blip_tf` decodes fastest in float32 on CPU: XLA's CPU matrix products by weight dtype, in one run.

Decoding multiplies one row by every weight of the text decoder per token (memory-bound), and `blip_tf` runs it
inside one XLA program. This times a chain of such one-row products over 280 MB of float32 weights (beyond every
cache) inside `tf.function(jit_compile=True)`, with the weights in float32, in bfloat16 (bfloat16 dot, or widened
to float32 first) and in int8 (widened), and prints the weight bytes streamed per second. On the development
machine (TensorFlow 2.21, AVX512_BF16) bfloat16 dots ran at 2 GB/s and widened weights at 4-8 GB/s against
float32's 28 GB/s: XLA on CPU has no fast low-precision product, so bfloat16 and int8 save memory in TensorFlow,
not time. `python benchmarks/xla_dtypes.py`
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from machine import print_description  # noqa: E402  benchmarks/machine.py, beside this script

LAYERS = 30


def stream(product):
    """One XLA program: the one-row product against every weight, summed."""
    return tf.function(lambda row, weights: tf.add_n([product(row, w) for w in weights]), jit_compile=True)


def seconds(program, row, weights, repeats: int = 20) -> float:
    program(row, weights).numpy()  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        program(row, weights).numpy()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    print_description()  # where these figures were measured
    weights = [tf.random.normal((768, 3072), seed=n) for n in range(LAYERS)]
    bf16 = [tf.cast(w, tf.bfloat16) for w in weights]
    int8 = [tf.cast(tf.clip_by_value(tf.round(w * 30), -127, 127), tf.int8) for w in weights]
    row = tf.random.normal((1, 768))
    cases = {
        "float32 weights, float32 dot": (stream(lambda a, w: a @ w), row, weights),
        "bfloat16 weights, bfloat16 dot": (
            stream(lambda a, w: tf.cast(a @ w, tf.float32)),
            tf.cast(row, tf.bfloat16),
            bf16,
        ),
        "bfloat16 weights widened, float32 dot": (stream(lambda a, w: a @ tf.cast(w, tf.float32)), row, bf16),
        "int8 weights widened, float32 dot": (stream(lambda a, w: a @ tf.cast(w, tf.float32)), row, int8),
    }
    print(f"TensorFlow {tf.__version__}; one row x {LAYERS} weights of 768x3072, inside one XLA program")
    for name, (program, inputs, stack) in cases.items():
        took = seconds(program, inputs, stack)
        streamed = sum(int(tf.size(w)) * w.dtype.size for w in stack) / 1e9
        print(f"{name:<40} {took * 1e3:8.2f} ms  {streamed / took:6.1f} GB/s of weights")


if __name__ == "__main__":
    main()
