"""End to end: a real sweep, ``mlflow ui`` on the real store, the pages in headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when missing)
and ``selenium`` (the ``dev`` extra). Nothing is downloaded: the browser and driver are the
system ones, passed by path, and Selenium Manager is kept offline.

What MLflow 3's UI shows (3.18): ``#/experiments/<id>`` opens in the *GenAI* workflow (a traces
overview, no runs): 3.18 follows its sidebar toggle "GenAI / Model training", kept in the
browser, over the experiment's ``mlflow.experimentKind`` tag (which every experiment of ours
has, for the versions that read it). ``?workflowType=machine_learning`` sets the toggle: the
run link a summary prints carries it, and so does the experiment address the test opens. The table
nests a sweep's child runs under the parent, collapsed: the (+) button in the parent's Run Name
cell expands them. It shows no metric columns by default, so the metric is checked on a child's
run page (reached by clicking its name), whose Metrics table prints the stored value unrounded.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import TINY_MODEL, cli, free_port, runs_of, store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--window-size=1600,1000",
]
WAIT_SECONDS = 60  # the React app loads everything by ajax, and CI machines are slow


def why_no_browser() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the Python package selenium (pip install -e '.[dev]')")
    if not missing:
        return None
    return (f"no headless browser: missing {', '.join(missing)}; install the Debian packages"
            " chromium and chromium-driver (make test does, when it may)")


@pytest.fixture
def chromium(tmp_path_factory, monkeypatch):
    """A headless Chromium driven through the system chromedriver; skips only if absent."""
    reason = why_no_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a thing
    home = tmp_path_factory.mktemp("chromium")
    profile = home / "profile"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER), log_output=str(home / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT_SECONDS)
        yield driver
    finally:
        driver.quit()


@contextmanager
def mlflow_ui(store_dir: Path, log: Path) -> Iterator[str]:
    """``make ui``'s command on a free port; yields the base URL once it answers HTTP.

    One worker and no job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``, which only
    serves GenAI jobs): the default four workers plus the job consumers take ~25 s to start on a
    2-core machine instead of ~8 s, and serve these pages no differently.
    """
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "ui",
               "--backend-store-uri", f"sqlite:///{store_dir / 'mlflow.db'}",
               "--default-artifact-root", str(store_dir / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        # Its own process group, so the uvicorn worker it spawns is stopped with it.
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow ui exited with {server.returncode}:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not answer on {url} within {WAIT_SECONDS} s:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow and its uvicorn), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(driver, condition: Callable, what: str, shots: Path):
    """WebDriverWait with a failure that says what was awaited and shows the page."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.25).until(condition)
    except TimeoutException:
        shot = shots / f"timeout-{int(time.time())}.png"
        driver.save_screenshot(str(shot))
        text = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"waited {WAIT_SECONDS} s for {what} at {driver.current_url}"
                    f" (screenshot {shot}); the page shows:\n{text[:3000]}")


def metric_shown(driver, name: str) -> str | None:
    """The Value cell of ``name`` in a run page's Metrics table, once rendered and visible."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(
        By.XPATH, f"//div[@role='row'][div[@role='cell'][normalize-space(.)='{name}']]")
    if not rows:
        return None
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", rows[0])
    cells = rows[0].find_elements(By.XPATH, "./div[@role='cell']")
    if len(cells) < 2 or not cells[1].is_displayed():
        return None
    return cells[1].text.strip() or None


@pytest.mark.slow
def test_mlflow_ui_shows_the_sweeps_child_runs_and_their_metrics(chromium, tmp_path, tiny_data):
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    client = store(tmp_path)
    result = cli(tmp_path, "-m", "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                 "trainer.epochs=1", "tracking.log_model=false", "norm=lrn,none")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("alexnet_exp.kind") == "sweep"]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.info.run_name)
    assert len(children) == 2
    experiment_id = parent.info.experiment_id
    trained = time.monotonic()

    with mlflow_ui(tmp_path / "mlruns", tmp_path / "mlflow-ui.log") as url:
        served = time.monotonic()
        # The link the run's summary printed, on this server's port: the run page in the
        # training view, not the GenAI overview.
        (printed,) = re.findall(rf"open (http://\S+/runs/{children[0].info.run_id}\S*)",
                                result.stdout)
        chromium.get(printed.replace("http://127.0.0.1:5000", url))
        wait_for(chromium, lambda d: metric_shown(d, "best_val_accuracy"),
                 "the printed link's run page with its metrics", tmp_path)
        assert "genai" not in chromium.current_url
        chromium.get(f"{url}/#/experiments/{experiment_id}?workflowType=machine_learning")

        def row(run_id: str) -> str:
            return f"div.ag-row[row-id='{run_id}']"

        wait_for(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, row(parent.info.run_id)),
                 f"the sweep's parent run {parent.info.run_id} in the runs table", tmp_path)
        if not chromium.find_elements(By.CSS_SELECTOR, row(children[0].info.run_id)):
            # Child runs start collapsed under their parent: the (+) in its Run Name cell.
            chromium.find_element(
                By.CSS_SELECTOR, f"{row(parent.info.run_id)} [col-id*='Run Name'] button").click()

        def names_shown(driver) -> list[str] | None:
            shown = [" ".join(e.text for e in driver.find_elements(
                By.CSS_SELECTOR, f"{row(r.info.run_id)} a[href*='{r.info.run_id}']"))
                for r in children]
            return shown if all(shown) else None

        shown = wait_for(chromium, names_shown, "both child runs in the runs table", tmp_path)
        assert shown == [r.info.run_name for r in children]
        body = chromium.find_element(By.TAG_NAME, "body").text
        for child in children:
            assert child.info.run_name in body
            assert child.info.run_name.endswith(f"norm={child.data.params['model.norm']}")
        chromium.save_screenshot(str(tmp_path / "runs-table.png"))

        # A user clicks a child's name to see its metrics.
        child = children[0]
        chromium.find_element(By.CSS_SELECTOR,
                              f"{row(child.info.run_id)} a[href*='{child.info.run_id}']").click()
        wait_for(chromium, lambda d: d.current_url.endswith(f"/runs/{child.info.run_id}"),
                 "the child's run page", tmp_path)
        for metric in ("best_val_accuracy", "best_val_loss"):
            text = wait_for(chromium, lambda d, m=metric: metric_shown(d, m),
                            f"{metric} in the Metrics table of run {child.info.run_id}", tmp_path)
            stored = child.data.metrics[metric]
            # The run page prints the value as stored (1.1014772653579712); should a version
            # round it (1.1015), it must still match to the last digit it shows.
            last_digit = 10.0 ** Decimal(text).as_tuple().exponent
            assert float(text) == pytest.approx(stored, abs=last_digit / 2 + 1e-12), (
                metric, text, stored)
        assert child.info.run_name in chromium.find_element(By.TAG_NAME, "body").text
        chromium.save_screenshot(str(tmp_path / "run-page.png"))
    print(f"train {trained - started:.1f} s, mlflow ui up {served - trained:.1f} s,"
          f" browser {time.monotonic() - served:.1f} s")


@pytest.mark.slow
def test_mlflow_preview_of_the_logged_report_shows_its_images(chromium, tmp_path):
    """The report.md logged to a run shows its plots inline in MLflow's artifact preview (which
    draws only absolute image URLs: a relative link shows as text). Logged through the server,
    as to a team's; no training: two runs written as the runner writes their summaries."""
    from mlflow.entities import Metric, Param

    from alexnet_exp.report import run_report
    from alexnet_exp.tool_config import ReportConfig

    client = store(tmp_path)
    experiment_id = client.create_experiment(
        "shown", artifact_location=(tmp_path / "mlruns" / "artifacts" / "shown").as_uri())
    for norm, accuracy in (("lrn", 0.983), ("bn", 0.975)):
        run_id = client.create_run(experiment_id, run_name=f"norm={norm}").info.run_id
        metrics = {"best_val_accuracy": accuracy, "best_val_loss": 0.1, "epochs_run": 2,
                   "train_seconds": 3.0, "parameters": 100}
        client.log_batch(run_id, params=[Param("model.norm", norm)], metrics=[
            *[Metric(k, v, 0, 0) for k, v in metrics.items()],
            *[Metric("val_accuracy", accuracy - 0.1 / step, 0, step) for step in (1, 2)]])
        client.set_terminated(run_id)
    from selenium.webdriver.common.by import By

    from alexnet_exp.config import TrackingConfig

    with mlflow_ui(tmp_path / "mlruns", tmp_path / "mlflow-ui.log") as url:
        report = run_report(ReportConfig(experiment_name="shown", output_dir=str(tmp_path / "r"),
                                         tracking=TrackingConfig(uri=url)), tmp_path)
        chromium.get(f"{url}/#/experiments/{experiment_id}/runs/{report.run_id}"
                     "/artifactPath/report/report.md")

        def images_loaded(driver):
            images = driver.find_elements(By.CSS_SELECTOR, "img[src*='get-artifact']")
            loaded = [i for i in images if driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", i)]
            return loaded if len(loaded) == 2 else None

        loaded = wait_for(chromium, images_loaded, "report.md's two plots in the preview",
                          tmp_path)
        assert {i.get_attribute("alt") for i in loaded} == {
            "val_accuracy_curves.png", "best_val_accuracy_by_group.png"}


@pytest.mark.slow
def test_the_printed_sweep_link_opens_its_children_expanded_with_short_distinct_names(
        chromium, tmp_path, tiny_data):
    """A sweep's children read ``model=small,da...`` in the runs table, all alike, and sat
    collapsed under their parent: now each is named by what the sweep varies, and the link the
    sweep prints opens its view (an experiment tag MLflow's UI reads as a shared view) with the
    parent expanded and the swept key as a column, without a click."""
    from selenium.webdriver.common.by import By

    client = store(tmp_path)
    result = cli(tmp_path, "-m", "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                 "trainer.epochs=1", "tracking.log_model=false", "dropout=off", "norm=lrn,bn")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("alexnet_exp.kind") == "sweep"]
    children = [r for r in runs if r is not parent]
    assert sorted(r.info.run_name for r in children) == ["norm=bn", "norm=lrn"]
    (printed,) = re.findall(r"compare the sweep's runs: (\S+)", result.stdout)

    with mlflow_ui(tmp_path / "mlruns", tmp_path / "mlflow-ui.log") as url:
        chromium.get(printed.replace("http://127.0.0.1:5000", url))
        parent_row = f"div.ag-row[row-id='{parent.info.run_id}']"
        wait_for(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, parent_row),
                 "the sweep's parent in the runs table", tmp_path)
        if not chromium.find_elements(By.CSS_SELECTOR,
                                      f"div.ag-row[row-id='{children[0].info.run_id}']"):
            # the shared view did not expand it (seen with 3.18): the (+) in its Run Name cell
            chromium.find_element(By.CSS_SELECTOR, f"{parent_row} [col-id*='Run Name'] button"
                                  ).click()

        def names_shown(driver) -> list[str] | None:
            shown = [" ".join(e.text for e in driver.find_elements(
                By.CSS_SELECTOR,
                f"div.ag-row[row-id='{r.info.run_id}'] a[href*='{r.info.run_id}']"))
                for r in children]
            return shown if all(shown) else None

        shown = wait_for(chromium, names_shown, "the sweep's children, expanded, in the runs"
                         " table", tmp_path)
        assert shown == [r.info.run_name for r in children]  # short, and told apart
        assert len(set(shown)) == 2
        chromium.save_screenshot(str(tmp_path / "sweep-compared.png"))
