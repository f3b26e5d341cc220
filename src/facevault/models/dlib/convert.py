"""Convert dlib's 128-d face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) to ONNX.

The ``.dat`` file is the dlib ``serialize()`` output of the ``anet_type`` network from dlib's
``examples/dnn_face_recognition_ex.cpp``.  It is parsed here directly (pure Python + numpy), without
dlib, and turned into an ONNX graph that reproduces dlib's forward pass.

Graph contract
--------------
* input ``chip``: float32 ``[N, 150, 150, 3]`` -- NHWC, **RGB**, raw pixel values in ``0..255`` (i.e.
  ``np.asarray(dlib.get_face_chip(img, shape, 150, 0.25), dtype=np.float32)``, stacked on axis 0).
  The graph itself subtracts dlib's per-channel mean and divides by 256, exactly as dlib's
  ``input_rgb_image_sized<150>::to_tensor`` does, then transposes to NCHW.
* output ``embedding``: float32 ``[N, 128]`` -- the raw (un-normalised) descriptor, identical to what
  ``dlib.face_recognition_model_v1.compute_face_descriptor(chip)`` returns.
* The batch dimension ``N`` is dynamic.

Serialization format (as written by dlib 19.x, see dlib/serialize.h, dlib/dnn/core.h, layers.h,
input.h, loss.h, tensor.h)
---------------------------------------------------------------------------------------------
* Integers: one control byte ``(size & 0x0F) | (0x80 if negative)`` followed by ``size``
  little-endian magnitude bytes (zero is ``01 00``).
* ``std::string``: integer length, then raw bytes.  ``bool``: one ASCII byte ``'0'``/``'1'``.
* ``float``/``double``: two integers, ``int64 mantissa`` and ``int16 exponent`` with value
  ``mantissa * 2**exponent`` (exponents 32000/32001/32002 encode +inf/-inf/nan).
* ``resizable_tensor``: integer version; version 2 = ``n, k, nr, nc`` then raw little-endian IEEE
  float32 data (version 1 used the mantissa/exponent encoding per element).
* ``alias_tensor``: version 1, then ``n, k, nr, nc``.
* Network nesting: every wrapper writes its version and then *recursively* its subnetwork before its
  own payload, so the file starts with the chain of wrapper versions (outermost first), then the
  input layer, and then the layer payloads from the input side outwards:
    - ``add_loss_layer``: version 1, loss details, subnetwork.
    - ``add_layer`` (v2): subnetwork, layer details, 3 bools, ``x_grad``, ``cached_output``,
      ``params_grad`` tensors (empty in this file).
    - ``add_layer`` directly on the input layer (v2/v3): input layer, details, 3 bools, ``x_grad``,
      ``cached_output``, ``grad_final`` tensors, and (v3) ``_sample_expansion_factor``.
    - ``add_tag_layer`` / ``add_skip_layer``: version 1, subnetwork, nothing else.  They are
      indistinguishable in the byte stream, so the topology is taken from the known ``anet_type``
      definition and cross-checked against the recorded wrapper chain.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx is imported only to convert (0.3-2 s): loading a converted model never needs it
    import onnx

__all__ = [
    "DlibLayer",
    "DlibResnetWeights",
    "DlibSerializationError",
    "build_onnx",
    "convert",
    "parse_dlib_resnet",
]

INPUT_NAME = "chip"
OUTPUT_NAME = "embedding"
OPSET = 17
IR_VERSION = 8  # the lowest IR version that supports opset 17; keeps older runtimes happy

_FLOAT_IS_INF = 32000
_FLOAT_IS_NINF = 32001
_FLOAT_IS_NAN = 32002


class DlibSerializationError(ValueError):
    """The file is not the dlib ResNet this module knows how to read."""


@dataclass(frozen=True)
class DlibLayer:
    """One computational layer (the ``LAYER_DETAILS`` of one ``add_layer``).

    ``kind`` is one of ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``,
    ``fc``; ``version`` is dlib's version string (e.g. ``con_4``).  Arrays are float32:

    * con: ``filters`` (num_filters, k, nr, nc), ``biases`` (num_filters,)
    * affine: ``gamma`` (k,), ``beta`` (k,)
    * fc: ``weights`` (num_inputs, num_outputs), optional ``biases`` (num_outputs,)
    """

    kind: str
    version: str
    attrs: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DlibResnetWeights:
    """Everything needed to rebuild the network; ``layers`` are ordered from the input outwards."""

    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    loss: str
    layers: list[DlibLayer]
    wrapper_versions: list[int]  # outermost first; 2 = add_layer, 1 = add_tag_layer/add_skip_layer


# --------------------------------------------------------------------------------------------------
# Low-level reader


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.buf = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise DlibSerializationError(f"unexpected end of file at offset {self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def integer(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if ctrl & 0x70 or size == 0 or size > 8:
            raise DlibSerializationError(f"bad integer control byte {ctrl:#04x} at offset {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def boolean(self) -> bool:
        ch = self._take(1)[0]
        if ch not in (0x30, 0x31):
            raise DlibSerializationError(f"bad bool byte {ch:#04x} at offset {self.pos - 1}")
        return ch == 0x31

    def string(self) -> str:
        n = self.integer()
        return bytes(self._take(n)).decode("latin-1")

    def peek_identifier(self) -> str | None:
        """Return the string at the cursor if it looks like a dlib type tag, without consuming it."""
        start = self.pos
        try:
            s = self.string()
        except DlibSerializationError:
            return None
        finally:
            self.pos = start
        if 0 < len(s) <= 64 and s[0].isalpha() and all(c.isalnum() or c == "_" for c in s):
            return s
        return None

    def real(self) -> float:
        # A leading byte with any of the 0x70 bits set would be dlib's ancient ASCII float format.
        if self.buf[self.pos] & 0x70:
            raise DlibSerializationError("legacy ASCII float encoding is not supported")
        mantissa = self.integer()
        exponent = self.integer()
        if exponent == _FLOAT_IS_INF:
            return math.inf
        if exponent == _FLOAT_IS_NINF:
            return -math.inf
        if exponent == _FLOAT_IS_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def tensor(self) -> np.ndarray:
        version = self.integer()
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        if version == 2:
            raw = self._take(4 * count)
            data = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif version == 1:
            data = np.array([self.real() for _ in range(count)], dtype=np.float32)
        else:
            raise DlibSerializationError(f"unknown resizable_tensor version {version}")
        return data.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise DlibSerializationError(f"unknown alias_tensor version {version}")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return (n, k, nr, nc)


# --------------------------------------------------------------------------------------------------
# Layer payloads


def _slice_alias(params: np.ndarray, shape: tuple[int, ...], offset: int) -> np.ndarray:
    flat = params.reshape(-1)
    size = int(np.prod(shape))
    if offset + size > flat.size:
        raise DlibSerializationError("alias tensor extends past its parameter tensor")
    return flat[offset : offset + size].reshape(shape).copy()


def _read_lr_multipliers(r: _Reader) -> None:
    # learning_rate / weight_decay / bias_learning_rate / bias_weight_decay multipliers: training only.
    for _ in range(4):
        r.real()


def _read_con(r: _Reader, version: str) -> DlibLayer:
    params = r.tensor()
    num_filters, nr, nc = r.integer(), r.integer(), r.integer()
    stride_y, stride_x = r.integer(), r.integer()
    pad_y, pad_x = r.integer(), r.integer()
    filt_shape = r.alias_tensor()
    bias_shape = r.alias_tensor()
    _read_lr_multipliers(r)
    use_bias = True
    if version == "con_5":
        use_bias = r.boolean()
    filters = _slice_alias(params, filt_shape, 0)
    if filters.shape[0] != num_filters or filters.shape[2:] != (nr, nc):
        raise DlibSerializationError(f"con filter alias {filt_shape} does not match {num_filters}x{nr}x{nc}")
    arrays = {"filters": filters}
    if use_bias:
        arrays["biases"] = _slice_alias(params, bias_shape, filters.size).reshape(-1)
    attrs = {"stride_y": stride_y, "stride_x": stride_x, "pad_y": pad_y, "pad_x": pad_x}
    return DlibLayer("con", version, attrs, arrays)


def _read_affine(r: _Reader, version: str) -> DlibLayer:
    params = r.tensor()
    gamma_shape = r.alias_tensor()
    beta_shape = r.alias_tensor()
    mode = -1
    if not r.at_end() and (r.buf[r.pos] & 0x70) == 0:  # next is an int (mode), not a bool byte
        mode = r.integer()
    gamma = _slice_alias(params, gamma_shape, 0)
    beta = _slice_alias(params, beta_shape, gamma.size)
    if gamma.shape[0] != 1 or gamma.shape[2:] != (1, 1):
        raise DlibSerializationError(f"only per-channel (CONV_MODE) affine is supported, got {gamma_shape}")
    return DlibLayer(
        "affine", version, {"mode": mode}, {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)}
    )


def _read_pool(r: _Reader, version: str, kind: str) -> DlibLayer:
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.integer() for _ in range(6))
    attrs = {"nr": nr, "nc": nc, "stride_y": stride_y, "stride_x": stride_x, "pad_y": pad_y, "pad_x": pad_x}
    return DlibLayer(kind, version, attrs)


def _read_fc(r: _Reader, version: str) -> DlibLayer:
    num_outputs, num_inputs = r.integer(), r.integer()
    params = r.tensor()
    w_shape = r.alias_tensor()
    b_shape = r.alias_tensor()
    bias_mode = r.integer()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    _read_lr_multipliers(r)
    use_bias = bias_mode == 0
    if version == "fc_3":
        use_bias = use_bias and r.boolean()
    weights = _slice_alias(params, w_shape, 0).reshape(num_inputs, num_outputs)
    arrays = {"weights": weights}
    if use_bias:
        arrays["biases"] = _slice_alias(params, b_shape, weights.size).reshape(-1)
    return DlibLayer("fc", version, {"num_inputs": num_inputs, "num_outputs": num_outputs}, arrays)


def _read_layer_details(r: _Reader) -> DlibLayer:
    version = r.string()
    if version in ("con_4", "con_5"):
        return _read_con(r, version)
    if version == "affine_":
        return _read_affine(r, version)
    if version == "relu_":
        return DlibLayer("relu", version)
    if version == "add_prev_":
        return DlibLayer("add_prev", version)
    if version == "max_pool_2":
        return _read_pool(r, version, "max_pool")
    if version == "avg_pool_2":
        return _read_pool(r, version, "avg_pool")
    if version in ("fc_2", "fc_3"):
        return _read_fc(r, version)
    raise DlibSerializationError(f"unsupported layer type {version!r} at offset {r.pos}")


def _skip_add_layer_state(r: _Reader, n_tensors: int) -> None:
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output/gradient disabled
        r.boolean()
    for _ in range(n_tensors):  # x_grad, cached_output, params_grad|grad_final -- training state
        r.tensor()


def parse_dlib_resnet(dat_path: str | os.PathLike[str]) -> DlibResnetWeights:
    """Parse dlib's serialized face-recognition ResNet into plain numpy arrays (no dlib needed)."""
    r = _Reader(Path(dat_path).read_bytes())

    if r.integer() != 1:
        raise DlibSerializationError("expected add_loss_layer version 1 at start of file")
    loss = r.string()
    if loss == "loss_metric_2":
        r.real()  # margin
        r.real()  # dist_thresh
    elif loss != "loss_metric_":
        raise DlibSerializationError(f"unexpected loss layer {loss!r}")

    # Chain of wrapper versions, outermost first, until the one sitting on the input layer.
    wrappers: list[int] = []
    while True:
        v = r.integer()
        name = r.peek_identifier()
        if name is not None and name.startswith("input"):
            input_add_layer_version = v
            break
        if v not in (1, 2):
            raise DlibSerializationError(f"unexpected wrapper version {v} at offset {r.pos}")
        wrappers.append(v)

    if r.string() != "input_rgb_image_sized":
        raise DlibSerializationError("expected input_rgb_image_sized input layer")
    mean = (r.real(), r.real(), r.real())
    size = (150, 150)
    if r.peek_identifier() is None:  # newer dlib also stores NR, NC
        size = (r.integer(), r.integer())

    layers = [_read_layer_details(r)]
    _skip_add_layer_state(r, 3)
    if input_add_layer_version >= 3:
        r.integer()  # _sample_expansion_factor
    for v in reversed(wrappers):
        if v == 2:
            layers.append(_read_layer_details(r))
            _skip_add_layer_state(r, 3)
    if not r.at_end():
        raise DlibSerializationError(f"{len(r.buf) - r.pos} trailing bytes after the network")

    weights = DlibResnetWeights(
        input_mean_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
        input_size=(int(size[0]), int(size[1])),
        loss=loss,
        layers=layers,
        wrapper_versions=wrappers,
    )
    _plan(weights)  # validates the topology against the recorded wrapper chain
    return weights


# --------------------------------------------------------------------------------------------------
# Topology


@dataclass(frozen=True)
class _Step:
    op: str  # a DlibLayer.kind, or "add" for add_prev
    layer: int  # index into weights.layers
    inputs: tuple[str, ...]
    output: str


def _plan(weights: DlibResnetWeights) -> list[_Step]:
    """Rebuild the data flow of ``anet_type`` from the flat layer list.

    The residual structure (dnn_face_recognition_ex.cpp) is::

        block<N,stride>(x) = affine(con3x3_s1(relu(affine(con3x3_stride(x)))))
        ares(x)            = relu(block<N,1>(x) + x)                        # add_prev1 / tag1
        ares_down(x)       = relu(block<N,2>(x) (+) avg_pool2x2_s2(x))      # add_prev2 / tag2 / skip1

    where (+) is dlib's add_prev, which zero-pads the smaller operand in every dimension.  Blocks begin
    right after the stem's max_pool and after each block's closing relu.  While walking, the wrapper
    chain that such a network would serialize is re-derived and compared with the file's.
    """
    layers = weights.layers
    steps: list[_Step] = []
    expected_wrappers: list[int] = []  # from the input side outwards, excluding the input add_layer
    cur = "x"
    block_in: str | None = None
    pending_tag2: str | None = None
    at_block_start = False
    for i, layer in enumerate(layers):
        out = f"t{i}"
        if i > 0:
            if layer.kind == "con" and at_block_start:
                block_in = cur
                expected_wrappers.append(1)  # tag1
                at_block_start = False
            if layer.kind == "avg_pool" and layer.attrs["nr"] != 0:
                expected_wrappers += [1, 1]  # tag2, skip1
            expected_wrappers.append(2)
        if layer.kind == "avg_pool" and layer.attrs["nr"] != 0:
            if block_in is None:
                raise DlibSerializationError("avg_pool skip path without a block input")
            pending_tag2 = cur
            steps.append(_Step("avg_pool", i, (block_in,), out))
        elif layer.kind == "add_prev":
            if block_in is None:
                raise DlibSerializationError("add_prev without a block input")
            other = pending_tag2 if pending_tag2 is not None else block_in
            steps.append(_Step("add", i, (cur, other), out))
            pending_tag2 = None
            block_in = None
        else:
            steps.append(_Step(layer.kind, i, (cur,), out))
            if layer.kind == "max_pool" or (
                layer.kind == "relu" and i > 0 and layers[i - 1].kind == "add_prev"
            ):
                at_block_start = True
        cur = out
    if list(reversed(weights.wrapper_versions)) != expected_wrappers:
        raise DlibSerializationError("layer sequence does not match the anet_type residual topology")
    if not steps or steps[-1].op != "fc":
        raise DlibSerializationError("network does not end in an fc layer")
    return steps


# --------------------------------------------------------------------------------------------------
# ONNX graph


def _f32(a: np.ndarray | float | list[float]) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def build_onnx(weights: DlibResnetWeights) -> onnx.ModelProto:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    """Build an ONNX model (opset 17) computing exactly dlib's forward pass; see module docstring."""
    steps = _plan(weights)
    layers = weights.layers
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    nr, nc = weights.input_size
    # dlib: (pixel - avg) / 256.0, computed in float; subtracting a float32 mean and multiplying by the
    # exact power of two 1/256 gives bit-identical values.
    nodes.append(
        helper.make_node("Sub", [INPUT_NAME, const("input_mean", _f32(weights.input_mean_rgb))], ["x_c"])
    )
    nodes.append(helper.make_node("Mul", ["x_c", const("input_scale", _f32(1.0 / 256.0))], ["x_s"]))
    nodes.append(helper.make_node("Transpose", ["x_s"], ["x"], perm=[0, 3, 1, 2]))

    shapes: dict[str, tuple[int, int, int]] = {"x": (3, nr, nc)}  # (C, H, W) per value, batch excluded
    alias: dict[str, str] = {}  # values that became no-ops (affine folded into the preceding conv)

    def src(name: str) -> str:
        return alias.get(name, name)

    for idx, step in enumerate(steps):
        layer = layers[step.layer]
        ins = [src(n) for n in step.inputs]
        c, h, w = shapes[step.inputs[0]]
        out = step.output
        if step.op == "con":
            a = layer.attrs
            filt = layer.arrays["filters"].astype(np.float64)
            bias = layer.arrays.get("biases", np.zeros(filt.shape[0], np.float32)).astype(np.float64)
            nxt = steps[idx + 1] if idx + 1 < len(steps) else None
            if nxt is not None and nxt.op == "affine" and nxt.inputs == (out,):
                # Fold the affine (frozen batch-norm) into the conv: gamma*(W*x+b)+beta.
                g = layers[nxt.layer].arrays["gamma"].astype(np.float64)
                be = layers[nxt.layer].arrays["beta"].astype(np.float64)
                filt = filt * g[:, None, None, None]
                bias = bias * g + be
                alias[nxt.output] = out
            kh, kw = filt.shape[2:]
            # dlib's con_ is a cross-correlation with filters laid out (num_filters, k, nr, nc): the same
            # convention as ONNX Conv, so no kernel flip.
            nodes.append(
                helper.make_node(
                    "Conv",
                    [ins[0], const(f"{out}_w", _f32(filt)), const(f"{out}_b", _f32(bias))],
                    [out],
                    kernel_shape=[kh, kw],
                    strides=[a["stride_y"], a["stride_x"]],
                    pads=[a["pad_y"], a["pad_x"], a["pad_y"], a["pad_x"]],
                )
            )
            shapes[out] = (
                filt.shape[0],
                1 + (h + 2 * a["pad_y"] - kh) // a["stride_y"],
                1 + (w + 2 * a["pad_x"] - kw) // a["stride_x"],
            )
        elif step.op == "affine":
            shapes[out] = (c, h, w)
            if out in alias:
                continue
            g = _f32(layer.arrays["gamma"]).reshape(1, -1, 1, 1)
            be = _f32(layer.arrays["beta"]).reshape(1, -1, 1, 1)
            nodes.append(helper.make_node("Mul", [ins[0], const(f"{out}_g", g)], [f"{out}_m"]))
            nodes.append(helper.make_node("Add", [f"{out}_m", const(f"{out}_b", be)], [out]))
        elif step.op == "relu":
            nodes.append(helper.make_node("Relu", ins, [out]))
            shapes[out] = (c, h, w)
        elif step.op in ("max_pool", "avg_pool"):
            a = layer.attrs
            if (
                a["nr"] == 0
                and a["nc"] == 0
                and a["pad_y"] == 0
                and a["pad_x"] == 0
                and step.op == "avg_pool"
            ):
                # avg_pool_everything: window = whole feature map.
                nodes.append(helper.make_node("GlobalAveragePool", ins, [out]))
                shapes[out] = (c, 1, 1)
            else:
                kh, kw = a["nr"] or h, a["nc"] or w
                pads = [a["pad_y"], a["pad_x"], a["pad_y"], a["pad_x"]]
                op = "MaxPool" if step.op == "max_pool" else "AveragePool"
                kwargs = {} if op == "MaxPool" else {"count_include_pad": 0}  # dlib/cuDNN exclude padding
                nodes.append(
                    helper.make_node(
                        op,
                        ins,
                        [out],
                        kernel_shape=[kh, kw],
                        strides=[a["stride_y"], a["stride_x"]],
                        pads=pads,
                        **kwargs,
                    )
                )
                shapes[out] = (
                    c,
                    1 + (h + 2 * a["pad_y"] - kh) // a["stride_y"],
                    1 + (w + 2 * a["pad_x"] - kw) // a["stride_x"],
                )
        elif step.op == "add":
            # dlib's add_prev output has max(k), max(nr), max(nc) of both inputs; each input contributes
            # where it exists (zero elsewhere).  Channel growth pads the skip path with zero channels;
            # the 3x3-vs-4x4 and 1x1-vs-2x2 mismatches pad the block output at the bottom/right.
            target = tuple(max(d) for d in zip(*(shapes[n] for n in step.inputs), strict=True))
            padded: list[str] = []
            for j, name in enumerate(step.inputs):
                diff = [t - s for t, s in zip(target, shapes[name], strict=True)]
                if any(diff):
                    pad_vals = np.array([0, 0, 0, 0, 0, *diff], dtype=np.int64)
                    pname = f"{out}_pad{j}"
                    nodes.append(helper.make_node("Pad", [src(name), const(f"{pname}_p", pad_vals)], [pname]))
                    padded.append(pname)
                else:
                    padded.append(src(name))
            nodes.append(helper.make_node("Add", padded, [out]))
            shapes[out] = target  # type: ignore[assignment]
        elif step.op == "fc":
            wmat = _f32(layer.arrays["weights"])
            if wmat.shape[0] != c * h * w:
                raise DlibSerializationError(f"fc expects {wmat.shape[0]} inputs, network gives {c * h * w}")
            nodes.append(helper.make_node("Flatten", ins, [f"{out}_flat"], axis=1))
            is_last = idx == len(steps) - 1
            mm_out = OUTPUT_NAME if is_last and "biases" not in layer.arrays else f"{out}_mm"
            nodes.append(helper.make_node("MatMul", [f"{out}_flat", const(f"{out}_w", wmat)], [mm_out]))
            if "biases" in layer.arrays:
                final = OUTPUT_NAME if is_last else out
                nodes.append(
                    helper.make_node(
                        "Add", [mm_out, const(f"{out}_b", _f32(layer.arrays["biases"]))], [final]
                    )
                )
                mm_out = final
            alias[out] = mm_out
            shapes[out] = (wmat.shape[1], 1, 1)
        else:  # pragma: no cover - _plan only yields the ops above
            raise DlibSerializationError(f"no ONNX lowering for {step.op}")

    emb_dim = shapes[steps[-1].output][0]
    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", nr, nc, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", emb_dim])],
        initializer=inits,
    )
    graph.doc_string = (
        "chip: float32 [N,150,150,3] NHWC RGB in 0..255 (dlib.get_face_chip output as float). "
        "embedding: float32 [N,128], un-normalised dlib face descriptor."
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="facevault.dlib_resnet_onnx",
        producer_version="1",
        ir_version=IR_VERSION,
    )
    helper.set_model_props(
        model, {"input_layout": "NHWC_RGB_0_255", "source": "dlib_face_recognition_resnet_model_v1"}
    )
    onnx.checker.check_model(model)
    return model


def convert(dat_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str]) -> str:
    """Parse ``dat_path``, write the ONNX model atomically to ``onnx_path``; return its sha256 (hex)."""
    data = build_onnx(parse_dlib_resnet(dat_path)).SerializeToString()
    dest = Path(onnx_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the model is not secret and is read by other users
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()
