#!/usr/bin/env python3
"""How fast whole-network fine-tuning trains, in float32 and in bfloat16 mixed precision, on this machine.

    .venv/bin/python -m bench.network_tuning_speed [--batch 16] [--steps 3] [--rounds 3] \
        [--json bench/results/network-tuning-speed-MACHINE.json]

The training step of ``--fine_tune_network`` (the built-in Inception-v3 up to
``mixed_9``, forwards and backwards, and the Adam update of every weight) runs
on random images at each precision in turn, ``--rounds`` times, so that both
see the same load; the rate of each is its median over the rounds.  bfloat16
pays off only where the processor computes it natively (``avx512_bf16`` or
``amx_bf16``); elsewhere TensorFlow emulates it, which the ratio shows.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.machine import command, machine, machine_name, write_result

PRECISIONS = ("float32", "bfloat16")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per precision and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    record = machine()

    import tensorflow as tf

    from bottleneck.model.modules import load_module
    from bottleneck.model.trainable import trainable_network
    from bottleneck.model.weights import default_model_dir

    module = load_module("inception_v3", default_model_dir(), log=lambda *a: None, top_block="mixed_9")
    network = trainable_network(module)
    head = tf.Variable(np.zeros((module.bottleneck_size, 5), np.float32))
    weights = [*network.variables, head]
    moments = [(tf.Variable(tf.zeros_like(w)), tf.Variable(tf.zeros_like(w))) for w in weights]

    def step_for(dtype):
        @tf.function(autograph=False)
        def step(images, labels):
            with tf.GradientTape() as tape:
                logits = tf.matmul(network.forward(images, dtype), head)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            for w, g, (m, v) in zip(weights, tape.gradient(loss, weights), moments):
                m.assign(0.9 * m + 0.1 * g)
                v.assign(0.999 * v + 0.001 * tf.square(g))
                w.assign_sub(1e-9 * m / (tf.sqrt(v) + 1e-7))  # Adam's work, with a step too small to matter
            return loss
        return step

    steps = {"float32": step_for(tf.float32), "bfloat16": step_for(tf.bfloat16)}
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((args.batch, 299, 299, 3), dtype=np.float32))
    labels = tf.constant(rng.integers(0, 5, args.batch).astype(np.int32))
    for name in PRECISIONS:  # trace and warm up
        steps[name](images, labels).numpy()
    rates = {name: [] for name in PRECISIONS}
    for _ in range(args.rounds):
        for name in PRECISIONS:
            started = time.perf_counter()
            for _ in range(args.steps):
                steps[name](images, labels).numpy()
            rates[name].append(args.batch * args.steps / (time.perf_counter() - started))
    median = {name: statistics.median(r) for name, r in rates.items()}
    result = {
        "command": command(argv), "machine": record, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "images_per_s": {name: round(v, 3) for name, v in median.items()},
        "images_per_s_by_round": {name: [round(v, 3) for v in r] for name, r in rates.items()},
        "bfloat16_over_float32": round(median["bfloat16"] / median["float32"], 3),
    }
    path = args.json or f"bench/results/network-tuning-speed-{machine_name(record)}.json"
    write_result(path, result)
    print({k: v for k, v in result.items() if k != "machine"})


if __name__ == "__main__":
    main()
