"""Convert dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) to ONNX.

The ``.dat`` file is the dlib ``serialize()`` output of the network in dlib's
``examples/dnn_mmod_face_detection_ex.cpp``::

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16, SUBNET>>>>>>>>>
    rcon5       = relu<affine<con5<45, SUBNET>>>          (con5d: 5x5 stride 2, con5: 5x5 stride 1)

It is read with the pure-Python reader of ``convert`` (the ResNet converter); what this file adds to the
format: the ``loss_mmod_`` options (detector windows, non-max-suppression overlap rule), the
``input_rgb_image_pyramid`` layer (mean colour, tile padding), and ``affine`` layers stored as the
training-time ``bn_con2`` batch-norm they were trained as (dlib turns them into an affine on load:
``gamma' = gamma / sqrt(running_var + eps)``, ``beta' = beta - gamma' * running_mean``).
``pyramid_down<6>`` is a template argument and is not in the file: it is part of the known network type.

Graph contract
--------------
* input ``pyramid``: float32 ``[N, 3, H, W]`` (H, W dynamic) -- the tiled image pyramid in dlib's own
  units: ``(pixel - mean_rgb) / 256`` inside the tiles, 0 elsewhere (what dlib's input layer builds;
  ``mmod.py`` builds it the same way).
* output ``score``: float32 ``[N, K, h, w]`` -- the detector's score per output cell and detector window
  (K = 1 here); a cell is a detection when its score exceeds the threshold (0 in dlib).
* metadata ``mmod_config`` (JSON): the loss options, the input layer's mean and padding, the pyramid
  rate, and the cell-to-input mapping ``x_in = stride * x_out + offset`` (dlib's ``map_output_to_input``
  composed over the conv layers).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx is imported only to convert (0.3-2 s): a search never needs it
    import onnx

from .convert import (
    IR_VERSION,
    OPSET,
    DlibLayer,
    DlibSerializationError,
    _read_layer_details,
    _Reader,
    _skip_add_layer_state,
)

__all__ = [
    "CONVERTER_VERSION",
    "DlibMmodWeights",
    "MmodConfig",
    "build_onnx",
    "convert",
    "converted_mmod_path",
    "parse_dlib_mmod",
    "read_config",
]

INPUT_NAME = "pyramid"
OUTPUT_NAME = "score"
CONFIG_KEY = "mmod_config"
# Bump when the converter's output changes, so cached ONNX files are rebuilt.
CONVERTER_VERSION = "1"
PYRAMID_DOWN = 6  # pyramid_down<6>: each level is 5/6 of the previous one (not serialized)
# dlib's padding defaults for files written before input_rgb_image_pyramid2 stored them.
_DEFAULT_PADDING = 10
_DEFAULT_OUTER_PADDING = 11
# Expected strides of the seven convolutions (downsampler x3, rcon5 x3, the 9x9 scorer).
_STRIDES = (2, 2, 2, 1, 1, 1, 1)


@dataclass(frozen=True)
class MmodConfig:
    """What the detector needs besides the convolutions; stored in the ONNX file as JSON."""

    detector_windows: list[tuple[int, int, str]]  # width, height, label
    nms_iou: float  # test_box_overlap: two boxes overlap when inner/hull > nms_iou ...
    nms_covered: float  # ... or inner covers more than this share of either box
    mean_rgb: tuple[float, float, float]
    pyramid_padding: int
    pyramid_outer_padding: int
    pyramid_down: int
    cell_stride: int  # x_in = cell_stride * x_out + cell_offset (tensor coordinates)
    cell_offset: int
    use_bbr: bool = False
    loss: dict[str, float] = field(default_factory=dict)  # training-only options, kept for reference

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MmodConfig:
        raw = json.loads(text)
        raw["detector_windows"] = [(int(w), int(h), str(label)) for w, h, label in raw["detector_windows"]]
        raw["mean_rgb"] = tuple(raw["mean_rgb"])
        return cls(**raw)


@dataclass(frozen=True)
class DlibMmodWeights:
    """The parsed file: ``layers`` (con, affine, relu) are ordered from the input outwards."""

    config: MmodConfig
    layers: list[DlibLayer]
    wrapper_versions: list[int]


# --------------------------------------------------------------------------------------------------
# Parsing


def _read_test_box_overlap(r: _Reader) -> tuple[float, float]:
    return r.real(), r.real()  # iou_thresh, percent_covered_thresh


def _read_mmod_options(r: _Reader) -> dict[str, object]:
    version = r.integer()
    if not 1 <= version <= 4:
        raise DlibSerializationError(f"unknown mmod_options version {version}")
    windows: list[tuple[int, int, str]] = []
    if version == 1:
        windows.append((r.integer(), r.integer(), ""))
    else:
        for _ in range(r.integer()):
            wv = r.integer()
            if wv not in (1, 2):
                raise DlibSerializationError(f"unknown detector_window_details version {wv}")
            w, h = r.integer(), r.integer()
            windows.append((w, h, r.string() if wv == 2 else ""))
    loss = {
        "loss_per_false_alarm": r.real(),
        "loss_per_missed_target": r.real(),
        "truth_match_iou_threshold": r.real(),
    }
    nms = _read_test_box_overlap(r)
    loss["ignore_iou"], loss["ignore_covered"] = _read_test_box_overlap(r)
    if version >= 3 and r.integer() != 1:  # assume_image_pyramid: use_image_pyramid::yes
        raise DlibSerializationError("only image-pyramid MMOD detectors are supported")
    use_bbr = False
    if version >= 4:
        use_bbr = r.boolean()
        loss["bbr_lambda"] = r.real()
    return {"windows": windows, "nms": nms, "loss": loss, "use_bbr": use_bbr}


def _read_bn_con_as_affine(r: _Reader) -> DlibLayer:
    """A ``bn_con2`` payload (after its tag), folded into the affine layer dlib makes of it."""
    params = r.tensor()
    gamma_shape = r.alias_tensor()
    beta_shape = r.alias_tensor()
    for _ in range(2):  # means, invstds: training-time batch statistics
        r.tensor()
    running_means = r.tensor().reshape(-1).astype(np.float64)
    running_vars = r.tensor().reshape(-1).astype(np.float64)
    r.integer()  # num_updates
    r.integer()  # running_stats_window_size
    for _ in range(4):  # learning-rate / weight-decay multipliers
        r.real()
    eps = r.real()
    flat = params.reshape(-1).astype(np.float64)
    n = int(np.prod(gamma_shape))
    if int(np.prod(beta_shape)) != n or flat.size != 2 * n or running_means.size != n:
        raise DlibSerializationError("bn_con2 parameter sizes do not agree")
    gamma = flat[:n] / np.sqrt(running_vars + eps)
    beta = flat[n:] - gamma * running_means
    arrays = {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)}
    return DlibLayer("affine", "bn_con2", {"mode": 1}, arrays)


def _read_layer(r: _Reader) -> DlibLayer:
    if r.peek_identifier() == "bn_con2":
        r.string()
        return _read_bn_con_as_affine(r)
    return _read_layer_details(r)


def parse_dlib_mmod(dat_path: str | os.PathLike[str]) -> DlibMmodWeights:
    """Parse dlib's serialized MMOD face detector into numpy arrays and options (no dlib needed)."""
    r = _Reader(Path(dat_path).read_bytes())
    if r.integer() != 1:
        raise DlibSerializationError("expected add_loss_layer version 1 at start of file")
    if (loss_name := r.string()) != "loss_mmod_":
        raise DlibSerializationError(f"expected a loss_mmod_ network, got {loss_name!r}")
    opts = _read_mmod_options(r)

    wrappers: list[int] = []
    while True:
        v = r.integer()
        name = r.peek_identifier()
        if name is not None and name.startswith("input"):
            input_add_layer_version = v
            break
        if v != 2:  # this network has no tag or skip layers
            raise DlibSerializationError(f"unexpected wrapper version {v} at offset {r.pos}")
        wrappers.append(v)

    input_name = r.string()
    if input_name not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise DlibSerializationError(f"expected input_rgb_image_pyramid, got {input_name!r}")
    mean = (float(r.real()), float(r.real()), float(r.real()))
    padding, outer = _DEFAULT_PADDING, _DEFAULT_OUTER_PADDING
    if input_name == "input_rgb_image_pyramid2":
        padding, outer = r.integer(), r.integer()

    layers = [_read_layer(r)]
    _skip_add_layer_state(r, 3)
    if input_add_layer_version >= 3:
        r.integer()  # _sample_expansion_factor
    for _ in wrappers:
        layers.append(_read_layer(r))
        _skip_add_layer_state(r, 3)
    if not r.at_end():
        raise DlibSerializationError(f"{len(r.buf) - r.pos} trailing bytes after the network")

    stride, offset = _check_topology(layers, len(opts["windows"]), bool(opts["use_bbr"]))  # type: ignore[arg-type]
    nms_iou, nms_covered = opts["nms"]  # type: ignore[misc]
    config = MmodConfig(
        detector_windows=opts["windows"],  # type: ignore[arg-type]
        nms_iou=float(nms_iou),
        nms_covered=float(nms_covered),
        mean_rgb=mean,
        pyramid_padding=int(padding),
        pyramid_outer_padding=int(outer),
        pyramid_down=PYRAMID_DOWN,
        cell_stride=stride,
        cell_offset=offset,
        use_bbr=bool(opts["use_bbr"]),
        loss={k: float(v) for k, v in opts["loss"].items()},  # type: ignore[attr-defined]
    )
    return DlibMmodWeights(config=config, layers=layers, wrapper_versions=wrappers)


def _check_topology(layers: list[DlibLayer], n_windows: int, use_bbr: bool) -> tuple[int, int]:
    """Check the layer list is the known detector and return the cell-to-input mapping.

    dlib maps an output cell to the input tensor through each layer's ``map_output_to_input``, from the
    last layer inwards; for a conv: ``p * stride - padding + kernel // 2`` (relu and affine keep p).
    """
    kinds = [layer.kind for layer in layers]
    expected = ["con", "affine", "relu"] * 6 + ["con"]
    if kinds != expected:
        raise DlibSerializationError(f"layer sequence {kinds} is not dlib's MMOD face detector")
    convs = [layer for layer in layers if layer.kind == "con"]
    channels = 3
    for conv, stride in zip(convs, _STRIDES, strict=True):
        a = conv.attrs
        f = conv.arrays["filters"]
        if (a["stride_y"], a["stride_x"]) != (stride, stride) or f.shape[1] != channels:
            raise DlibSerializationError(f"unexpected convolution {f.shape} stride {a['stride_y']}")
        channels = f.shape[0]
    if channels != n_windows * (5 if use_bbr else 1):
        raise DlibSerializationError(f"scorer has {channels} channels for {n_windows} windows")
    for i, layer in enumerate(layers):
        if (
            layer.kind == "affine"
            and layer.arrays["gamma"].shape[0] != layers[i - 1].arrays["filters"].shape[0]
        ):
            raise DlibSerializationError("affine size does not match its convolution")
    stride, offset = 1, 0
    for conv in reversed(convs):
        a = conv.attrs
        kh, kw = conv.arrays["filters"].shape[2:]
        if (a["pad_y"], kh) != (a["pad_x"], kw):
            raise DlibSerializationError("only square kernels with equal padding are supported")
        # p_in = p * s - pad + k // 2, composed: x_in = stride * x_out + offset
        offset = offset * a["stride_y"] - a["pad_y"] + kh // 2
        stride *= a["stride_y"]
    return stride, offset


# --------------------------------------------------------------------------------------------------
# ONNX graph


def build_onnx(weights: DlibMmodWeights) -> onnx.ModelProto:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    """An ONNX model (opset 17) of the detector's convolutions; see the module docstring."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    layers = weights.layers
    cur = INPUT_NAME
    i = 0
    while i < len(layers):
        conv = layers[i]
        filt = conv.arrays["filters"].astype(np.float64)
        bias = conv.arrays.get("biases", np.zeros(filt.shape[0], np.float32)).astype(np.float64)
        if i + 1 < len(layers) and layers[i + 1].kind == "affine":
            # Fold the affine into the conv: gamma * (W * x + b) + beta.
            g = layers[i + 1].arrays["gamma"].astype(np.float64)
            filt = filt * g[:, None, None, None]
            bias = bias * g + layers[i + 1].arrays["beta"].astype(np.float64)
        relu = i + 2 < len(layers) and layers[i + 2].kind == "relu"
        name = f"c{len(nodes)}"
        out = OUTPUT_NAME if i == len(layers) - 1 else name
        a = conv.attrs
        inits.append(numpy_helper.from_array(filt.astype(np.float32), f"{name}_w"))
        inits.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}_b"))
        nodes.append(
            helper.make_node(
                "Conv",
                [cur, f"{name}_w", f"{name}_b"],
                [name + "_c" if relu else out],
                kernel_shape=list(filt.shape[2:]),
                strides=[a["stride_y"], a["stride_x"]],
                pads=[a["pad_y"], a["pad_x"], a["pad_y"], a["pad_x"]],
            )
        )
        if relu:
            nodes.append(helper.make_node("Relu", [name + "_c"], [out]))
        cur = out
        i += 3 if relu else 1
    k = layers[-1].arrays["filters"].shape[0]
    graph = helper.make_graph(
        nodes,
        "dlib_mmod_human_face_detector",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", k, "h", "w"])],
        initializer=inits,
    )
    graph.doc_string = (
        "pyramid: float32 [N,3,H,W], dlib's tiled image pyramid, (pixel - mean)/256, 0 between tiles. "
        "score: float32 [N,K,h,w], MMOD detection score per cell and detector window."
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="facevault.dlib_mmod_onnx",
        producer_version=CONVERTER_VERSION,
        ir_version=IR_VERSION,
    )
    helper.set_model_props(
        model, {CONFIG_KEY: weights.config.to_json(), "source": "mmod_human_face_detector"}
    )
    onnx.checker.check_model(model)
    return model


def read_config(model_path: str | os.PathLike[str]) -> MmodConfig:
    """The detector options stored in a converted model."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if CONFIG_KEY not in props:
        raise DlibSerializationError(f"{model_path} is not a converted MMOD detector")
    return MmodConfig.from_json(props[CONFIG_KEY])


def convert(dat_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str]) -> str:
    """Parse ``dat_path``, write the ONNX model atomically to ``onnx_path``; return its sha256 (hex)."""
    data = build_onnx(parse_dlib_mmod(dat_path)).SerializeToString()
    digest = hashlib.sha256(data).hexdigest()
    _atomic_write(Path(onnx_path), data)
    return digest


def _atomic_write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the model is not secret
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def converted_mmod_path(source: Path, cache_dir: Path) -> Path:
    """The ONNX form of ``source``, converted on first use and cached in ``cache_dir`` under a name that
    carries the source's hash and the converter version. A ``.sha256`` file next to it records the
    converted bytes' hash: a cached file that no longer matches it (truncated, edited) is rebuilt."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    dest = cache_dir / f"dlib-mmod-face-{digest}-c{CONVERTER_VERSION}.onnx"
    check = dest.with_name(dest.name + ".sha256")
    if (
        dest.exists()
        and check.exists()
        and hashlib.sha256(dest.read_bytes()).hexdigest() == check.read_text().strip()
    ):
        return dest
    onnx_digest = convert(source, dest)
    _atomic_write(check, (onnx_digest + "\n").encode())
    return dest
