"""Evaluation, prediction and export of a model trained by the real CLI into a real store."""

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import (
    TINY_MODEL,
    catches,
    cli,
    empty_store,
    free_port,
    make_image_folder,
    run_model_uri,
    signal_when,
    store,
)

from alexnet_exp.bundle import load_bundle, sidecar_path
from alexnet_exp.config import DataConfig, TrackingConfig
from alexnet_exp.errors import DataError
from alexnet_exp.evaluation import evaluate_folder
from alexnet_exp.export import check_parity, export_model, exported_predictor, run_export
from alexnet_exp.prediction import predict_files, view_size
from alexnet_exp.tool_config import EvalConfig, ExportConfig

CLASSES = {"apple": 10, "kiwi": 10, "plum": 10}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny model trained with augment=paper (so evaluation crops from a larger resize).

    It trains through the CLI, so every test that takes it (or ``bundle``) is marked slow:
    ``make test-fast`` trains nothing."""
    work = tmp_path_factory.mktemp("trained")
    data = make_image_folder(work / "data", classes=CLASSES, size=(48, 40))
    test = make_image_folder(work / "test", classes={c: 4 for c in CLASSES}, size=(48, 40),
                             seed=7)
    env = {"ALEXNET_EXP_CACHE_DIR": str(work / "cache")}
    result = cli(work, "data=folder", f"data.dir={data}", *TINY_MODEL, "trainer.epochs=3",
                 "augment=paper", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((work / "outputs" / "run" / "summary.json").read_text())
    return SimpleNamespace(work=work, data=data, test=test, run_id=summary["run_id"], env=env,
                           uri=f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")


@pytest.fixture(scope="module")
def bundle(trained):
    cfg = EvalConfig(run_id=trained.run_id, tracking=TrackingConfig(uri=trained.uri))
    return load_bundle(cfg, trained.work)


def load_resized(files, size):
    """Decode and resize exactly as the pipeline does, outside it."""
    images = []
    for f in files:
        image = tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False)
        resized = tf.image.resize(image, [size, size])
        images.append(np.clip(np.round(resized.numpy()), 0, 255).astype(np.float32))
    return np.stack(images)


@pytest.mark.slow
def test_bundle_records_training_preprocessing(bundle):
    assert bundle.class_names == ["apple", "kiwi", "plum"]
    assert bundle.input_size == 64
    assert bundle.eval_resize == round(64 * 1.1278)  # augment=paper's crop_scale


@pytest.mark.slow
def test_evaluation_equals_a_hand_computation(bundle, trained):
    result = evaluate_folder(bundle, trained.test, "none", top_k=2, batch_size=5)
    size, s = view_size(bundle, "none"), bundle.input_size
    offset = (size - s) // 2
    images = load_resized(result.files, size)[:, offset:offset + s, offset:offset + s]
    probs = bundle.model.predict(images, verbose=0)
    truth = np.array([bundle.class_names.index(Path(f).parent.name) for f in result.files])
    np.testing.assert_allclose(result.probs, probs, atol=1e-5)
    assert result.accuracy == pytest.approx(np.mean(probs.argmax(1) == truth))
    top2 = np.argsort(-probs, axis=1)[:, :2]
    assert result.top_k_accuracy == pytest.approx(np.mean([t in row for t, row in
                                                           zip(truth, top2, strict=True)]))
    assert result.matrix.sum() == len(result.files) == 12


@pytest.mark.slow
def test_ten_crop_is_the_mean_of_ten_numpy_crops(bundle, trained):
    files = sorted(str(p) for p in trained.test.rglob("*.jpg"))[:5]
    size, s = view_size(bundle, "ten_crop"), bundle.input_size
    images = load_resized(files, size)
    far, mid = size - s, (size - s) // 2
    crops = [images[:, t:t + s, left:left + s] for t, left in
             [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]]
    crops += [c[:, :, ::-1] for c in crops]
    expected = np.mean([bundle.model.predict(c, verbose=0) for c in crops], axis=0)
    np.testing.assert_allclose(predict_files(bundle, files, "ten_crop", 4), expected, atol=1e-5)
    flip = np.mean([bundle.model.predict(c, verbose=0) for c in (crops[4], crops[9])], axis=0)
    np.testing.assert_allclose(predict_files(bundle, files, "flip", 4), flip, atol=1e-5)


@pytest.mark.slow
def test_classes_are_matched_by_name_not_folder_order(bundle, trained, tmp_path):
    partial = tmp_path / "partial"
    for name in ("kiwi", "plum"):  # folder indices 0, 1 are model classes 1, 2
        shutil.copytree(trained.test / name, partial / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_folder(bundle, partial, "none", top_k=2, batch_size=8)
    assert any("apple" in str(w.message) for w in caught)
    assert result.missing_classes == ["apple"]
    assert sorted(set(result.true.tolist())) == [1, 2]
    full = evaluate_folder(bundle, trained.test, "none", top_k=2, batch_size=8)
    rel = lambda f: Path(f).relative_to(Path(f).parents[1])  # noqa: E731
    by_file = {rel(f): p for f, p in zip(full.files, full.probs, strict=True)}
    for f, p in zip(result.files, result.probs, strict=True):
        np.testing.assert_allclose(p, by_file[rel(f)], atol=1e-6)
    assert result.matrix[0].sum() == 0 and result.matrix.sum() == 8


@pytest.mark.slow
def test_unknown_test_class_is_a_clear_error(bundle, trained, tmp_path):
    odd = make_image_folder(tmp_path / "odd", classes={"apple": 2, "durian": 2})
    with pytest.raises(DataError, match="durian are not classes of the model"):
        evaluate_folder(bundle, odd, "none", top_k=2, batch_size=8)


@pytest.mark.parametrize(("fmt", "quantize", "tolerance"),
                         [("keras", "none", 1e-6), ("savedmodel", "none", 1e-5),
                          ("tflite", "none", 1e-4), ("tflite", "float16", 1e-2)])
@pytest.mark.slow
def test_exports_predict_like_the_keras_model(bundle, trained, tmp_path, fmt, quantize,
                                              tolerance):
    path = export_model(bundle, fmt, quantize, tmp_path)
    assert path.exists() and not list(tmp_path.glob(".export-*"))
    assert json.loads(sidecar_path(path).read_text())["class_names"] == list(CLASSES)
    files = sorted(str(p) for p in trained.test.rglob("*.jpg"))
    parity = check_parity(bundle, exported_predictor(path, fmt), files)
    assert parity.max_abs_diff <= tolerance
    assert parity.top1_agreement == 1.0


@pytest.mark.slow
def test_keras_export_evaluates_like_the_logged_model(bundle, trained, tmp_path):
    cfg = ExportConfig(run_id=trained.run_id, format="keras", output_dir=str(tmp_path),
                       data_dir=str(trained.test), log=False,
                       tracking=TrackingConfig(uri=trained.uri))
    path, parity = run_export(cfg, trained.work)
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["class_names"] == ["apple", "kiwi", "plum"]
    assert sidecar["train_run_id"] == trained.run_id
    reloaded = load_bundle(EvalConfig(model_path=str(path)), trained.work)
    a = evaluate_folder(reloaded, trained.test, "ten_crop", 2, 8)
    b = evaluate_folder(bundle, trained.test, "ten_crop", 2, 8)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


@pytest.mark.slow
def test_a_packed_test_set_scores_as_its_folder_does(bundle, trained, tmp_path):
    from alexnet_exp.pack import run_pack
    from alexnet_exp.tool_config import PackConfig

    cfg = PackConfig(data=DataConfig(name="folder", dir=str(trained.test), val_split=0.0),
                     output=str(tmp_path / "test-pack"), shard_size="8KB")
    manifest = run_pack(cfg, tmp_path)
    assert len(manifest.splits["test"].shards) > 1
    from_pack = evaluate_folder(bundle, tmp_path / "test-pack", "ten_crop", 2, 8)
    from_folder = evaluate_folder(bundle, trained.test, "ten_crop", 2, 8)
    assert from_pack.accuracy == from_folder.accuracy
    np.testing.assert_array_equal(from_pack.matrix, from_folder.matrix)
    by_name = dict(zip((str(Path(f).relative_to(trained.test)) for f in from_folder.files),
                       from_folder.probs, strict=True))
    assert sorted(from_pack.files) == sorted(by_name)
    for name, probs in zip(from_pack.files, from_pack.probs, strict=True):
        np.testing.assert_allclose(probs, by_name[name], atol=1e-6)


@pytest.mark.slow
def test_eval_cli_prints_writes_csv_and_logs_a_linked_run(trained):
    csv = trained.work / "preds.csv"
    scratch = trained.work / "tmp-of-eval"  # the child's TMPDIR
    scratch.mkdir()
    result = cli(trained.work, f"run_id={trained.run_id}", f"data.dir={trained.test}",
                 "tta=ten_crop", f"output={csv}", program="alexnet-exp-eval",
                 env={**trained.env, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-3000:]
    # the downloaded model is removed once loaded (MLflow's loaders left a copy per call)
    assert not list(scratch.rglob("MLmodel")), "a copy of the model is left in TMPDIR"
    assert "accuracy" in result.stdout and "top-2 accuracy" in result.stdout
    assert "precision" in result.stdout and "true \\ pred" in result.stdout
    frame = pd.read_csv(csv)
    assert len(frame) == 12
    assert list(frame.columns) == ["path", "true_class", "predicted_class", "p_apple", "p_kiwi",
                                   "p_plum"]
    np.testing.assert_allclose(frame[["p_apple", "p_kiwi", "p_plum"]].sum(axis=1), 1, rtol=1e-4)
    client = store(trained.work)
    train_run = client.get_run(trained.run_id)
    (eval_run,) = client.search_runs(
        [train_run.info.experiment_id],
        filter_string=f"tags.`alexnet_exp.train_run_id` = '{trained.run_id}'")
    accuracy = float(result.stdout.split("accuracy ", 1)[1].split()[0])
    assert eval_run.data.metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert eval_run.data.params["tta"] == "ten_crop"
    logged = {a.path for a in client.list_artifacts(eval_run.info.run_id, "plots")}
    assert logged == {"plots/confusion_matrix.png"}


@pytest.mark.slow
def test_sigterm_to_eval_is_one_line_and_exit_143(trained):
    """The tools take SIGTERM as Ctrl-C: an evaluation killed while it logs ends its run KILLED
    (tests/test_tracking_models.py), not RUNNING as under Python's default of dying at once."""
    exe = str(Path(sys.executable).with_name("alexnet-exp-eval"))
    process = subprocess.Popen(
        [exe, f"run_id={trained.run_id}", f"data.dir={trained.test}"], cwd=trained.work,
        env={**os.environ, **trained.env}, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, errors = signal_when(process, lambda: catches(process.pid, signal.SIGTERM),
                            "a SIGTERM handler", signal.SIGTERM)
    assert process.returncode == 143, errors[-3000:]
    assert errors.strip().splitlines()[-1] == "alexnet-exp-eval: error: terminated (SIGTERM)"


@pytest.mark.slow
def test_predict_cli_json_and_table(trained, tmp_path):
    """JSON of the files named (a broken one named on stderr, the JSON clean), then a table of
    a bare folder (``images=<folder>``, no list brackets)."""
    files = sorted(str(p) for p in (trained.test / "kiwi").glob("*.jpg"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = cli(trained.work, f"run_id={trained.run_id}", f"images=[{','.join(files)},{broken}]",
                 "format=json", "top_k=2", program="alexnet-exp-predict", env=trained.env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)  # nothing else on stdout
    assert [r["path"] for r in rows] == files
    assert "broken.png" in result.stderr
    assert all(len(r["top"]) == 2 for r in rows)
    assert all(r["top"][0]["probability"] >= r["top"][1]["probability"] for r in rows)
    # the id's first 8 characters, as the summary and the UI's run table show it
    table = cli(trained.work, f"run_id={trained.run_id[:8]}", f"images={trained.test / 'plum'}",
                program="alexnet-exp-predict", env=trained.env)
    assert table.returncode == 0, table.stderr[-3000:]
    assert len([line for line in table.stdout.splitlines() if "plum_" in line]) == 4


@pytest.mark.slow
def test_export_cli_tflite_is_checked_and_logged_to_the_training_run(trained):
    result = cli(trained.work, f"run_id={trained.run_id}", "format=tflite", "quantize=dynamic",
                 "min_top1_agreement=0.5", program="alexnet-exp-export", env=trained.env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parity on 30 images" in result.stdout  # the training run's data by default
    assert "XNNPACK" not in result.stderr  # LiteRT's INFO line about its CPU delegate
    client = store(trained.work)
    exported = {a.path for a in client.list_artifacts(trained.run_id, "exports/tflite")}
    name = f"alexnet-{trained.run_id[:12]}_dynamic"
    assert exported == {f"exports/tflite/{name}.tflite", f"exports/tflite/{name}.tflite.json"}


@pytest.mark.parametrize(
    ("program", "args", "message"),
    [
        ("alexnet-exp-eval", ["run_id=0123456789abcdef", "data.dir=."], "no MLflow store at"),
        ("alexnet-exp-eval", ["model_path=/nowhere/model.keras", "data.dir=."],
         "model_path=/nowhere/model.keras does not exist"),
        ("alexnet-exp-eval", ["data.dir=."], "give exactly one of run_id"),
        ("alexnet-exp-export", ["model_path=m.keras", "format=onnx"],
         "format='onnx' is not one of keras, savedmodel, tflite"),
        ("alexnet-exp-predict", ["run_id=abc"], "images is empty"),
        ("alexnet-exp-eval", ["model_path=m.keras", "data.dir=empty"], "has 0 class folder(s)"),
        ("alexnet-exp-eval", ["model_path=m.keras", "data.dir=nowhere"], "nowhere is not a folder"),
    ],
)
def test_bad_tool_inputs_exit_2_with_one_line_before_tensorflow_loads(tmp_path, program, args,
                                                                     message):
    (tmp_path / "m.keras").touch()
    (tmp_path / "empty").mkdir()
    result = cli(tmp_path, *args, program=program, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert_one_line_before_tensorflow(result, program, message)


def test_an_unknown_run_id_in_a_real_store_is_one_line_before_tensorflow_loads(tmp_path):
    empty_store(tmp_path / "mlruns")
    result = cli(tmp_path, "run_id=0123456789abcdef", "data.dir=.", program="alexnet-exp-eval",
                 env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert_one_line_before_tensorflow(result, "alexnet-exp-eval",
                                      "run_id=0123456789abcdef: no such run in sqlite:///")


def assert_one_line_before_tensorflow(result, program: str, message: str) -> None:
    """Exit 2, the one error line, no traceback, and no ``import tensorflow`` in the import
    log ``PYTHONPROFILEIMPORTTIME`` wrote."""
    assert result.returncode == 2, result.stderr[-2000:]
    imports = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    errors = [line for line in result.stderr.splitlines() if line not in imports]
    assert errors == [f"{program}: error: {message}"] or message in errors[-1], errors
    assert "Traceback" not in result.stderr
    assert imports and not any(line.endswith("| tensorflow") for line in imports)


@pytest.mark.slow
def test_logged_model_serves_raw_pixels_with_mlflow_models_serve(trained, bundle):
    """``mlflow models serve`` on 127.0.0.1 answers a JSON batch of raw uint8 pixels, served
    from the Model Registry as a sweep's winner is (``models:/<name>@champion``)."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from alexnet_exp.tracking import Store, register_champion

    assert register_champion(Store(trained.uri), "served", trained.run_id) == 1
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained.uri, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [f"{bin_dir}/mlflow", "models", "serve", "-m", "models:/served@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"server did not start: {server.stderr.read()[-2000:]}")
                time.sleep(1)
        files = sorted(str(p) for p in trained.test.rglob("*.jpg"))[:3]
        pixels = load_resized(files, bundle.input_size).astype(np.uint8)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": pixels.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.array(json.loads(response.read())["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = bundle.model.predict(pixels.astype(np.float32), verbose=0)
    assert served.shape == (3, 3)
    np.testing.assert_allclose(served, expected, atol=1e-5)


@pytest.mark.slow
def test_eval_of_an_exported_file_and_of_a_model_uri_link_to_the_training_run(trained):
    exported = cli(trained.work, f"run_id={trained.run_id}", "format=keras", "log=false",
                   program="alexnet-exp-export", env=trained.env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    path = trained.work / "exports" / f"alexnet-{trained.run_id[:12]}.keras"
    uri = run_model_uri(store(trained.work), trained.run_id)
    assert uri != f"runs:/{trained.run_id}/model"  # named for what it is
    for source in (f"model_path={path}", f"model_uri={uri}"):
        result = cli(trained.work, source, f"data.dir={trained.test}", "tta=flip",
                     program="alexnet-exp-eval", env=trained.env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    client = store(trained.work)
    experiment = client.get_run(trained.run_id).info.experiment_id
    linked = client.search_runs(
        [experiment], filter_string=f"tags.`alexnet_exp.train_run_id` = '{trained.run_id}'"
        " and params.tta = 'flip'")
    assert sorted(r.data.tags["model_source"] for r in linked) == sorted(
        [str(path), uri])
    assert len({round(r.data.metrics["test_accuracy"], 6) for r in linked}) == 1
    assert all("test_f1.kiwi" in r.data.metrics for r in linked)


@pytest.mark.slow
def test_parity_images_skip_files_that_do_not_decode(trained, bundle, tmp_path):
    from alexnet_exp.export import parity_images

    folder = make_image_folder(tmp_path / "imgs", classes={"apple": 3})
    (folder / "apple" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    picked = parity_images(str(folder), 10)
    assert len(picked) == 3 and all("broken" not in p for p in picked)


class _FirstPixelRed:
    """A stand-in two-class model: p(class 0) grows with the top-left pixel's red value."""

    def predict_on_batch(self, x):
        red = np.asarray(x)[:, 0, 0, 0] / 255.0
        return np.stack([red, 1.0 - red], axis=1)


def test_a_two_class_model_evaluates_without_a_traceback(tmp_path):
    from alexnet_exp.bundle import ModelBundle

    root = make_image_folder(tmp_path / "test", classes={"cat": 3, "dog": 3}, size=(32, 32))
    bundle = ModelBundle(_FirstPixelRed(), ["cat", "dog"], input_size=32, eval_resize=32,
                         source="test")
    result = evaluate_folder(bundle, root, "none", top_k=5, batch_size=4)
    assert result.top_k == 1 and result.top_k_accuracy == result.accuracy
    assert len(result.files) == 6
