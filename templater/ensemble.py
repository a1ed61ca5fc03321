"""An ensemble of one-score networks as ONE network: the program stays a single template.

Members that share an input and a normalisation compute side by side: the first layers are
concatenated (each member's units read the same inputs), deeper hidden layers are placed
block-diagonally (a member's units read only that member's units; the zero weights are dropped
by the compiler's passes), and the output layer averages: each member's output weights divided
by K, the output bias the mean of the members' biases. The merged score is the mean of the
member scores up to rounding (exact divisions for K a power of two; the sums are regrouped).

A network and its mirror image (the same network reading each window flipped left to right) are
such an ensemble too: `mirror_average` scores a window and its mirror image alike, which faces
are and most backgrounds are not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from templater.errors import UsageError
from templater.network import Activation, Dense, Network


def merge(members: Sequence[Network], name: str | None = None) -> Network:
    """One network whose score is the mean of the members' scores (head: the first member's)."""
    if not members:
        raise UsageError("an ensemble needs at least one member")
    _check_compatible(members)
    if len(members) == 1:
        return members[0] if name is None else members[0].with_layers(members[0].layers, name=name)
    depth = len(members[0].layers)
    layers = [_concatenated(members)]
    layers += [_block_diagonal(members, i) for i in range(1, depth - 1)]
    layers.append(_averaged_output(members))
    first = members[0]
    return first.with_layers(tuple(layers), name=first.name if name is None else name)


def mirrored(net: Network) -> Network:
    """The network that scores each window as `net` scores the window flipped left to right.

    Flipping is a permutation of the inputs, so it moves the first layer's weight rows: the
    row of pixel (r, c) takes the row of pixel (r, width - 1 - c).
    """
    if net.input_shape is None or len(net.input_shape) != 2:
        raise UsageError("mirroring needs a network over 2-D windows (an input_shape like 25x25)")
    rows, cols = net.input_shape
    first = net.layers[0]
    weights = first.weights.reshape(rows, cols, first.n_outputs)[:, ::-1, :]
    flipped = Dense(weights.reshape(rows * cols, first.n_outputs), first.bias, first.activation)
    return net.with_layers((flipped, *net.layers[1:]))


def mirror_average(net: Network, name: str | None = None) -> Network:
    """One network whose score is the mean of `net`'s scores of a window and of its mirror image."""
    return merge([net, mirrored(net)], name=name)


def _check_compatible(members: Sequence[Network]) -> None:
    first = members[0]
    for net in members:
        if net.n_outputs != 1:
            raise UsageError(f"ensemble members need one output (a score), got {net.n_outputs}")
        if len(net.layers) < 2:
            raise UsageError("ensemble members need a hidden layer to merge")
        same = (
            net.input_size == first.input_size
            and net.normalization == first.normalization
            and len(net.layers) == len(first.layers)
            and net.layers[-1].activation == first.layers[-1].activation
        )
        if not same:
            raise UsageError("ensemble members differ in inputs, normalisation or depth")
        if net.layers[-1].activation.name != "identity":
            # Averaging happens before the output activation, which is only right for identity.
            raise UsageError("ensemble members need an identity output layer")


def _concatenated(members: Sequence[Network]) -> Dense:
    """The first layers side by side: every member's units read the same inputs."""
    layers = [net.layers[0] for net in members]
    return Dense(
        np.concatenate([d.weights for d in layers], axis=1),
        np.concatenate([d.bias for d in layers]),
        _one_activation(layers),
    )


def _block_diagonal(members: Sequence[Network], index: int) -> Dense:
    """Hidden layer `index` of each member, reading only that member's previous units."""
    layers = [net.layers[index] for net in members]
    rows = sum(d.n_inputs for d in layers)
    cols = sum(d.n_outputs for d in layers)
    weights = np.zeros((rows, cols))
    r = c = 0
    for d in layers:
        weights[r : r + d.n_inputs, c : c + d.n_outputs] = d.weights
        r, c = r + d.n_inputs, c + d.n_outputs
    return Dense(weights, np.concatenate([d.bias for d in layers]), _one_activation(layers))


def _averaged_output(members: Sequence[Network]) -> Dense:
    """The mean of the member scores: weights / K stacked, bias the mean of the biases."""
    layers = [net.layers[-1] for net in members]
    k = float(len(layers))
    weights = np.concatenate([d.weights / k for d in layers], axis=0)
    bias = np.array([np.mean([d.bias[0] for d in layers])])
    return Dense(weights, bias, layers[0].activation)


def _one_activation(layers: Sequence[Dense]) -> Activation:
    acts = {d.activation for d in layers}
    if len(acts) != 1:
        raise UsageError("ensemble members use different activations in the same layer")
    return layers[0].activation
