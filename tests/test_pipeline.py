"""Pre/post ops against independent reference computations, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from edgerun.artifact import Quant, TensorSpec
from edgerun.errors import ArtifactError, InputError
from edgerun.pipeline import (
    Dequantize,
    InputCheck,
    Layout,
    Normalize,
    Quantize,
    Resize,
    Softmax,
    TopK,
    check_input,
    compile_post,
    compile_pre,
)


def _bilinear_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Per-pixel half-pixel bilinear (OpenCV INTER_LINEAR / torch align_corners=False)."""
    in_h, in_w = img.shape
    out = np.zeros((out_h, out_w))
    for oy in range(out_h):
        sy = min(max((oy + 0.5) * in_h / out_h - 0.5, 0), in_h - 1)
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, in_h - 1)
        fy = sy - y0
        for ox in range(out_w):
            sx = min(max((ox + 0.5) * in_w / out_w - 0.5, 0), in_w - 1)
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, in_w - 1)
            fx = sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[oy, ox] = top * (1 - fy) + bot * fy
    return out


@pytest.mark.parametrize("shape,size", [((8, 8), (64, 64)), ((5, 7), (3, 11)), ((16, 16), (4, 4))])
def test_resize_bilinear_matches_reference(shape, size):
    img = np.random.default_rng(0).random(shape).astype(np.float32) * 16
    got = Resize(size, "bilinear")(img)
    np.testing.assert_allclose(got, _bilinear_reference(img, *size), rtol=1e-5, atol=1e-5)


def test_resize_hwc_and_chw_agree_per_channel():
    img = np.random.default_rng(1).random((6, 9, 3)).astype(np.float32)
    hwc = Resize((12, 5), layout="HWC")(img)
    chw = Resize((12, 5), layout="CHW")(np.transpose(img, (2, 0, 1)))
    assert hwc.shape == (12, 5, 3) and chw.shape == (3, 12, 5)
    for c in range(3):
        np.testing.assert_allclose(hwc[..., c], _bilinear_reference(img[..., c], 12, 5), atol=1e-5)
        np.testing.assert_allclose(chw[c], hwc[..., c], atol=1e-6)


def test_resize_nearest_picks_source_pixels():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = Resize((8, 8), "nearest")(img)
    assert set(np.unique(out)) <= set(img.ravel())
    np.testing.assert_array_equal(out[::2, ::2], img)


def test_quantize_dequantize_round_trip_within_half_step():
    q = Quant(scale=0.05, zero_point=-10)
    x = np.linspace(-10, 10, 401, dtype=np.float32)
    codes = Quantize(q, "int8")(x)
    assert codes.dtype == np.int8
    back = Dequantize(q)(codes)
    inside = (x > q.scale * (-128 - q.zero_point)) & (x < q.scale * (127 - q.zero_point))
    assert np.all(np.abs(back[inside] - x[inside]) <= q.scale / 2 + 1e-6)
    assert codes.min() == -128 and codes.max() == 127  # saturates instead of wrapping


def test_normalize_per_channel_and_layout():
    x = np.ones((2, 2, 3), dtype=np.float32) * np.array([1, 2, 3], dtype=np.float32)
    y = Normalize((1.0, 2.0, 3.0), (1.0, 2.0, 3.0))(x)
    assert np.allclose(y, 0)
    chw = Layout("HWC", "CHW")(x)
    assert chw.shape == (3, 2, 2) and np.all(chw[2] == 3)


def test_softmax_and_topk():
    logits = np.array([[1.0, 3.0, 2.0, -1.0]], dtype=np.float32)
    p = Softmax()(logits)
    assert np.isclose(p.sum(), 1.0) and np.argmax(p) == 1
    top = TopK(2, ("a", "b", "c", "d")).select(p)
    assert [t.label for t in top] == ["b", "c"]
    assert top[0].score == pytest.approx(float(p[0, 1]))


def test_softmax_is_stable_for_large_logits():
    assert np.isfinite(Softmax()(np.array([1000.0, 1001.0], dtype=np.float32))).all()


SPEC = TensorSpec("image", (8, 8), "float32")


def test_check_input_names_the_input_and_expectation():
    with pytest.raises(InputError, match=r"input 'image': expected shape \[8, 8\].*got \[8, 9\]"):
        check_input(np.zeros((8, 9), np.float32), SPEC)
    with pytest.raises(InputError, match=r"input 'image': expected dtype float32.*got complex64"):
        check_input(np.zeros((8, 8), np.complex64), SPEC)
    with pytest.raises(InputError, match=r"input 'image': expected a numpy array"):
        check_input([[0.0] * 8] * 8, SPEC)
    bad = np.zeros((8, 8), np.float32)
    bad[3, 3] = np.nan
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match=r"input 'image': 2 NaN/Inf value"):
        check_input(bad, SPEC)


def test_check_input_casts_within_kind_and_accepts_dynamic_dims():
    out = check_input(np.zeros((8, 8), np.float64), SPEC)
    assert out.dtype == np.float32
    dyn = TensorSpec("x", (None, 3), "float32")
    assert check_input(np.zeros((5, 3), np.float32), dyn).shape == (5, 3)
    with pytest.raises(InputError):
        check_input(np.zeros((5, 3), np.float32), TensorSpec("q", (5, 3), "int8"))  # float -> int8 is not same-kind


def test_check_input_integer_casts_keep_every_value():
    spec = TensorSpec("q", (None,), "int8")
    assert check_input(np.array([-128, 0, 127], np.int64), spec).tolist() == [-128, 0, 127]
    with pytest.raises(InputError, match=r"input 'q': shape \[0\] holds no values; expected at least one"):
        check_input(np.zeros(0, np.int64), spec)  # refused before any range check (min() of nothing)
    assert check_input(np.array([-128, 127], np.int8), TensorSpec("w", (2,), "int32")).dtype == np.int32
    with pytest.raises(InputError, match=r"input 'q': values \[0, 200\] do not fit int8.*range \[-128, 127\]"):
        check_input(np.array([0, 200], np.uint8), spec)
    with pytest.raises(InputError, match=r"values \[1, 300\] do not fit uint8.*range \[0, 255\]"):
        check_input(np.array([1, 300], np.uint16), TensorSpec("u", (2,), "uint8"))
    with pytest.raises(InputError, match=r"values \[0, 18446744073709551615\] do not fit int64"):
        check_input(np.array([0, 2**64 - 1], np.uint64), TensorSpec("i", (2,), "int64"))


def test_check_input_refuses_masked_arrays_and_odd_objects():
    x = np.ma.masked_array(np.zeros((8, 8), np.float32), mask=np.eye(8, dtype=bool))
    with pytest.raises(InputError, match=r"input 'image': a masked array; expected a plain numpy array"):
        check_input(x, SPEC)
    with pytest.raises(InputError, match=r"input 'image': expected a numpy array .*got float32"):
        check_input(np.float32(1.0), SPEC)  # a numpy scalar is not an array
    with pytest.raises(InputError, match=r"expected dtype float32 .*got object"):
        check_input(np.zeros((8, 8), object), SPEC)
    with pytest.raises(InputError, match=r"expected shape \[8, 8\] .*got \[\]"):
        check_input(np.array(1.0, np.float32), SPEC)
    sub = np.zeros((8, 8), np.float32).view(np.recarray)  # a plain subclass still passes
    assert check_input(sub, SPEC).shape == (8, 8)


def _outcome(fn, x):
    try:
        y = fn(x)
    except InputError as exc:
        return "error", str(exc)
    return "ok", (y.dtype.str, y.shape, y.tobytes(), y is x)


def _odd_inputs():
    big = np.full((8, 8), 3e38, np.float32)  # a finite array whose sum of squares overflows
    nan, inf = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float64)
    nan[2, 5], inf[7, 0] = np.nan, -np.inf
    return [
        np.arange(64, dtype=np.float32).reshape(8, 8),
        np.arange(64, dtype=np.float32).reshape(8, 8).T,  # not contiguous
        np.arange(64, dtype=">f4").reshape(8, 8),  # byte-swapped: not the built-in dtype object
        np.zeros((8, 8), np.float64),
        np.zeros((8, 8), np.float16),
        big,
        nan,
        inf,
        np.zeros((8, 9), np.float32),
        np.zeros((8, 8), np.int64),
        np.zeros((8, 8), object),
        np.ma.masked_array(np.zeros((8, 8), np.float32)),
        np.zeros((8, 8), np.float32).view(np.recarray),
        [[0.0] * 8] * 8,
    ]


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        TensorSpec("d", (8, 8), "float64"),
        TensorSpec("h", (8, 8), "float16"),
        TensorSpec("q", (8, 8), "int64"),
        TensorSpec("q8", (8, 8), "int8"),
        TensorSpec("dyn", (None, 8), "float32"),
    ],
)
def test_input_check_agrees_with_check_input(spec):
    """The pipeline's compiled check takes a shortcut for exact matches: it must accept, return and
    refuse (with the same message) exactly what check_input does."""
    check = InputCheck(spec)
    for x in _odd_inputs():
        assert _outcome(check, x) == _outcome(lambda a: check_input(a, spec), x), (spec, x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(8, 8), (256, 256)])  # the cached-weights dot, and x . x past 16384 values
def test_huge_finite_inputs_pass_without_a_numpy_warning_and_an_inf_among_them_is_refused(dtype, shape):
    """Values whose squares overflow (float32 past ~1e19) are finite: accepted, with no "overflow
    encountered in dot" on stderr; one Inf or NaN among the largest values the dtype has is refused."""
    import warnings

    check = InputCheck(TensorSpec("x", shape, dtype))
    top = np.finfo(dtype).max
    x = np.full(shape, top, dtype)
    x.flat[1::2] = -top  # a sum that could cancel, next to one that could overflow
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy RuntimeWarning fails the test
        assert check(x) is x
        assert check_input(x, TensorSpec("x", shape, dtype)) is x
        for bad in (np.inf, -np.inf, np.nan):
            y = x.copy()
            y.flat[7] = bad
            with pytest.raises(InputError, match=r"1 NaN/Inf value"):
                check(y)


@pytest.mark.parametrize("size", [[10**9, 10**9], [0, 8], [8], "64", [8.0, 8], [True, 8], [8193, 8]])
def test_compile_pre_bounds_the_resize_target(size):
    with pytest.raises(ArtifactError, match=r"m.json: resize size must be \[H, W\], integers 1..8192"):
        compile_pre([{"op": "resize", "size": size}], SPEC, "m.json")
    assert compile_pre([{"op": "resize", "size": [8192, 8192]}], SPEC, "m.json")


def test_compile_rejects_unknown_and_misplaced_ops():
    spec = TensorSpec("x", (1, 4), "float32")
    with pytest.raises(ArtifactError, match="unknown pre-processing op 'blur'"):
        compile_pre([{"op": "blur"}], spec, "m.json")
    with pytest.raises(ArtifactError, match="needs parameter 'size'"):
        compile_pre([{"op": "resize"}], spec, "m.json")
    with pytest.raises(ArtifactError, match="quantize needs an integer model input"):
        compile_pre([{"op": "quantize"}], spec, "m.json")
    with pytest.raises(ArtifactError, match="must come last"):
        compile_post([{"op": "argmax"}, {"op": "softmax"}], spec, (), "m.json")
    with pytest.raises(ArtifactError, match="dequantize needs output scale"):
        compile_post([{"op": "dequantize"}], spec, (), "m.json")


def test_text_inputs_are_numpy_str_or_object_arrays_of_str():
    """onnxruntime takes a string tensor as a numpy str array or an object array of str (what onnx's
    numpy_helper gives); an object array holding anything else is refused by name."""
    spec = TensorSpec("text", (None,), "str")
    words = np.array(["monday", "tuesday"], dtype=object)
    assert check_input(words, spec) is words
    assert check_input(np.array(["a", "b"]), spec).dtype.kind == "U"
    with pytest.raises(InputError, match="an object array with values that are not str"):
        check_input(np.array(["a", 3], dtype=object), spec)
    with pytest.raises(InputError, match="dtype float32; expected text"):
        check_input(np.zeros(2, np.float32), spec)  # numbers are not text, though numpy would cast them
