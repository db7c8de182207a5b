"""The built-in Inception-v3 (Google's ``inception-2015-12-05`` graph) as a TensorFlow network.

The network is rebuilt from the converted arrays that weights.py obtains, one
``tf.nn`` call per layer of the 2015 graph; a golden-value test shows it
matches the original to better than 1e-4.
"""
from __future__ import annotations

import numpy as np

NAME = "inception-2015-12-05"
INPUT_SIZE = 299
BOTTLENECK_SIZE = 2048

# The eleven mixed blocks in order; fine-tuning trains the last few of them.
BLOCKS = ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7",
          "mixed_8", "mixed_9", "mixed_10")
# Cutting lower than mixed_8 would mean caching 17x17 grids of 768 channels and more per image.
MAX_TUNED_BLOCKS = 3
# The block whose output grid, averaged, is the bottleneck.  The classic script
# used pool_3, the average over mixed_10; the average over mixed_9 measured
# better for new classes (docs/accuracy.md).
CLASSIC_TOP_BLOCK = "mixed_10"
TOP_BLOCKS = ("mixed_10", "mixed_9", "mixed_8")


def bottleneck_size(top: str = CLASSIC_TOP_BLOCK) -> int:
    """Channels of ``top``'s output, hence the length of the bottleneck averaged from it."""
    return {"mixed_10": 2048, "mixed_9": 2048, "mixed_8": 1280}[top]


def build_feature_fn(weights: dict[str, np.ndarray], top: str = CLASSIC_TOP_BLOCK):
    """Return f(images) -> [N, bottleneck_size(top)] for float images in [0, 1] of size 299x299.

    Call it inside a tf.function: the kernels become graph constants, so a
    frozen export needs no variables.
    """
    lower, upper = split_network(weights, tuned_blocks=0, top=top)
    return lambda images: upper(lower(images))


def tuned_blocks_below(top: str, tuned_blocks: int) -> tuple[str, ...]:
    """The ``tuned_blocks`` mixed blocks that end with ``top``."""
    end = BLOCKS.index(top) + 1
    return BLOCKS[end - tuned_blocks:end]


def cut_block(top: str, tuned_blocks: int) -> str:
    """The block whose output is the input of the tuned ones (the cached activations)."""
    return BLOCKS[BLOCKS.index(top) - tuned_blocks]


def tuned_parameter_names(weights: dict[str, np.ndarray], tuned_blocks: int,
                          top: str = CLASSIC_TOP_BLOCK) -> list[str]:
    """The kernel and bias names of the ``tuned_blocks`` mixed blocks that end with ``top``."""
    blocks = tuned_blocks_below(top, tuned_blocks)
    return sorted(k for k in weights if k.split("/")[0] in blocks and k.endswith(("/kernel", "/bias")))


def split_network(weights: dict[str, np.ndarray], tuned_blocks: int, params=None, top: str = CLASSIC_TOP_BLOCK):
    """Cut the network before the ``tuned_blocks`` mixed blocks that end with ``top``.

    Returns ``(lower, upper)``: ``lower(images)`` gives the activations at the
    cut (``top``'s 8x8 grid when ``tuned_blocks`` is 0) and
    ``upper(activations)`` runs the tuned blocks and averages ``top``'s grid
    into the bottleneck, so that ``upper(lower(x))`` is the whole network up to
    ``top``; blocks above it are not built.  ``params`` maps parameter names
    to tensors (trainable variables while fine-tuning) that replace the stored
    arrays; batch-norm is folded into every convolution's bias, so it stays
    in inference mode whatever is trained.
    """
    import tensorflow as tf

    params = params or {}
    if not 0 <= tuned_blocks <= MAX_TUNED_BLOCKS:
        raise ValueError(f"tuned_blocks must be in 0..{MAX_TUNED_BLOCKS}, not {tuned_blocks}")
    if top not in TOP_BLOCKS:
        raise ValueError(f"top must be one of {TOP_BLOCKS}, not {top!r}")

    def value(name):
        # Arrays become constants inside the caller's graph, so a frozen export holds them as Const nodes.
        return params[name] if name in params else tf.constant(weights[name])

    def conv(x, name):
        y = tf.nn.conv2d(x, value(f"{name}/kernel"), strides=int(weights[f"{name}/stride"]),
                         padding=_tf_padding(weights, name))
        return tf.nn.relu(tf.nn.bias_add(y, value(f"{name}/bias")))

    def chain(x, name, count):
        for i in range(count):
            x = conv(x, f"{name}/conv" + (f"_{i}" if i else ""))
        return x

    def avg3(x):  # count_include_pad=False, which is what SAME does in TensorFlow
        return tf.nn.avg_pool2d(x, 3, 1, "SAME")

    def max3_s2(x):
        return tf.nn.max_pool2d(x, 3, 2, "VALID")

    # The mixed blocks are the paper's modules (Szegedy et al., "Rethinking the Inception Architecture
    # for Computer Vision", 2015); each branch is named as the 2015 graph names its convolutions.

    def inception_a(x, n):  # 35x35 grid, 5x5 factorised into two 3x3 (the paper's figure 5)
        branch1x1 = conv(x, f"{n}/conv")
        branch5x5 = chain(x, f"{n}/tower", 2)  # 1x1 -> 5x5
        branch3x3dbl = chain(x, f"{n}/tower_1", 3)  # 1x1 -> 3x3 -> 3x3
        branch_pool = conv(avg3(x), f"{n}/tower_2/conv")
        return tf.concat([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=3)

    def reduction_a(x, n):  # 35x35 -> 17x17
        branch3x3 = conv(x, f"{n}/conv")  # 3x3, stride 2
        branch3x3dbl = chain(x, f"{n}/tower", 3)  # 1x1 -> 3x3 -> 3x3, stride 2
        return tf.concat([branch3x3, branch3x3dbl, max3_s2(x)], axis=3)

    def inception_b(x, n):  # 17x17 grid, 7x7 factorised into 1x7 and 7x1 (figure 6)
        branch1x1 = conv(x, f"{n}/conv")
        branch7x7 = chain(x, f"{n}/tower", 3)  # 1x1 -> 1x7 -> 7x1
        branch7x7dbl = chain(x, f"{n}/tower_1", 5)  # 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7
        branch_pool = conv(avg3(x), f"{n}/tower_2/conv")
        return tf.concat([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=3)

    def reduction_b(x, n):  # 17x17 -> 8x8
        branch3x3 = chain(x, f"{n}/tower", 2)  # 1x1 -> 3x3, stride 2
        branch7x7x3 = chain(x, f"{n}/tower_1", 4)  # 1x1 -> 1x7 -> 7x1 -> 3x3, stride 2
        return tf.concat([branch3x3, branch7x7x3, max3_s2(x)], axis=3)

    def inception_c(x, n, pool):  # 8x8 grid, expanded filter bank (figure 7)
        branch1x1 = conv(x, f"{n}/conv")
        branch3x3 = conv(x, f"{n}/tower_conv")
        branch3x3dbl = conv(conv(x, f"{n}/tower_1_conv"), f"{n}/tower_1_conv_1")
        return tf.concat(
            [branch1x1,
             conv(branch3x3, f"{n}/tower_mixed_conv"), conv(branch3x3, f"{n}/tower_mixed_conv_1"),  # 1x3, 3x1
             conv(branch3x3dbl, f"{n}/tower_1_mixed_conv"), conv(branch3x3dbl, f"{n}/tower_1_mixed_conv_1"),
             conv(pool(x), f"{n}/tower_2_conv")], axis=3)

    block_of = {
        "mixed": inception_a,  # mixed 0: 35 x 35 x 256
        "mixed_1": inception_a,  # mixed 1: 35 x 35 x 288
        "mixed_2": inception_a,  # mixed 2: 35 x 35 x 288
        "mixed_3": reduction_a,  # mixed 3: 17 x 17 x 768
        "mixed_4": inception_b,  # mixed 4: 17 x 17 x 768
        "mixed_5": inception_b,  # mixed 5: 17 x 17 x 768
        "mixed_6": inception_b,  # mixed 6: 17 x 17 x 768
        "mixed_7": inception_b,  # mixed 7: 17 x 17 x 768
        "mixed_8": reduction_b,  # mixed 8: 8 x 8 x 1280
        "mixed_9": lambda x, n: inception_c(x, n, avg3),  # mixed 9: 8 x 8 x 2048
        # mixed 10: 8 x 8 x 2048; it pools with MAX where mixed_9 averages, a quirk of the 2015 graph.
        "mixed_10": lambda x, n: inception_c(x, n, lambda t: tf.nn.max_pool2d(t, 3, 1, "SAME")),
    }
    tuned = tuned_blocks_below(top, tuned_blocks)
    frozen = BLOCKS[:BLOCKS.index(top) + 1 - tuned_blocks]

    def lower(images):  # 299 x 299 x 3 in [0, 1]
        x = (images * 255.0 - 128.0) / 128.0
        x = conv(x, "conv")  # 149 x 149 x 32
        x = conv(x, "conv_1")  # 147 x 147 x 32
        x = conv(x, "conv_2")  # 147 x 147 x 64
        x = max3_s2(x)  # 73 x 73 x 64
        x = conv(x, "conv_3")  # 73 x 73 x 80
        x = conv(x, "conv_4")  # 71 x 71 x 192
        x = max3_s2(x)  # 35 x 35 x 192
        for n in frozen:
            x = block_of[n](x, n)
        return x

    def upper(x):
        for n in tuned:
            x = block_of[n](x, n)
        return tf.reduce_mean(x, axis=[1, 2])  # 8x8 average over the top grid (pool_3 for mixed_10)

    return lower, upper


def _tf_padding(weights, name):
    """Translate the original's symmetric zero padding into TensorFlow's terms."""
    ph, pw = (int(p) for p in weights[f"{name}/padding"])
    kh, kw = weights[f"{name}/kernel"].shape[:2]
    if ph == pw == 0:
        return "VALID"
    if int(weights[f"{name}/stride"]) == 1 and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2):
        return "SAME"
    return [[0, 0], [ph, ph], [pw, pw], [0, 0]]
