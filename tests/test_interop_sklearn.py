"""scikit-learn models converted by skl2onnx (its own converters, not ours) load, run and agree
with scikit-learn on the breast cancer set that ships with scikit-learn.

skl2onnx is how scikit-learn models reach onnxruntime (https://onnx.ai/sklearn-onnx/); clinical
tabular models are often exactly these. Its classifiers end in a ZipMap (a sequence of maps) unless
converted with ``options={'zipmap': False}``: that one is refused at load with what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skl2onnx  # the test extra: a missing one fails here rather than skip
from sklearn import datasets as sklearn_datasets

import edgerun
from edgerun.errors import ArtifactError


def _models():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = sklearn_datasets.load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    models = {
        "scaler+logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "forest": RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0),
    }
    for m in models.values():
        m.fit(x[::2], y[::2])
    return models, x[1::2]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, tuple[object, Path]], np.ndarray]:
    models, x_test = _models()
    folder = tmp_path_factory.mktemp("sklearn")
    out = {}
    for name, model in models.items():
        onx = skl2onnx.to_onnx(model, x_test[:1], options={"zipmap": False}, target_opset=17)
        path = folder / f"{name}.onnx"
        path.write_bytes(onx.SerializeToString())
        out[name] = (model, path)
    return out, x_test


@pytest.mark.parametrize("name", ["scaler+logreg", "forest"])
def test_a_converted_classifier_agrees_with_scikit_learn(converted, name: str):
    models, x_test = converted
    model, path = models[name]
    rt = edgerun.load(str(path))
    labels = []
    probabilities = []
    for row in x_test:
        outputs = rt.run(row[None, :]).outputs
        labels.append(int(outputs["label"][0]))
        probabilities.append(outputs["probabilities"][0])
    np.testing.assert_array_equal(labels, model.predict(x_test))
    np.testing.assert_allclose(np.array(probabilities), model.predict_proba(x_test), atol=1e-5)


def test_the_default_zipmap_conversion_is_one_line_with_the_option_to_use(tmp_path: Path):
    models, x_test = _models()
    path = tmp_path / "forest-zipmap.onnx"
    path.write_bytes(skl2onnx.to_onnx(models["forest"], x_test[:1], target_opset=17).SerializeToString())
    with pytest.raises(ArtifactError, match=r"'output_probability' is a seq\(map\(int64,tensor\(float\)\)\)") as info:
        edgerun.load(str(path))
    assert "options={'zipmap': False}" in str(info.value)


def test_bench_runs_a_converted_model(converted, tmp_path: Path):
    import json

    from edgerun.cli import main

    _, path = converted[0]["forest"]
    report = tmp_path / "bench.json"
    fast = ["--runs", "700", "--min-seconds", "0", "--warmup-seconds", "0", "-q"]
    main(["bench", str(path), *fast, "--json", str(report)])  # its exit code: this host's verdicts
    (result,) = json.loads(report.read_text())["results"]
    assert result["status"] == "ok", result.get("error")
    assert result["artifact"]["format"] == "onnx" and result["input_source"].startswith("random")
