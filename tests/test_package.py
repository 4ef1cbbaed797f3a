"""alexnet-exp as a real package: the configs ship in the wheel, an installed copy runs from any
folder, and a user's own config groups (``--config-dir``) compose beside ours."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from helpers.cli import TINY_MODEL, cli, runs_of, store
from helpers.configs import my_conf

from alexnet_exp import paths
from alexnet_exp.errors import UserError
from alexnet_exp.preflight import preflight

REPO = Path(__file__).resolve().parents[1]


# --- where the configs are found --------------------------------------------------------------

def test_a_checkout_keeps_conf_beside_the_package_and_a_wheel_inside(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "alexnet_exp").mkdir(parents=True)
    (checkout / "conf").mkdir()
    assert paths.find_config_dir(checkout / "alexnet_exp") == (checkout / "conf", checkout)
    installed = tmp_path / "site-packages" / "alexnet_exp"
    (installed / "conf").mkdir(parents=True)
    assert paths.find_config_dir(installed) == (installed / "conf", None)


def test_the_tests_compose_from_this_checkout():
    assert Path(paths.CONFIG_DIR) == REPO / "conf"
    assert paths.CHECKOUT_DIR == REPO


def test_the_wheel_lists_every_package_and_ships_every_config_file():
    """Packages are listed by hand in pyproject (find cannot name conf/ alexnet_exp.conf): a new
    subpackage missing there would be left out of the wheel, and so would a config file the
    package-data glob does not match."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {".".join(init.parent.relative_to(REPO).parts)
                for init in (REPO / "alexnet_exp").rglob("__init__.py")}
    assert set(setuptools["packages"]) == packages | {"alexnet_exp.conf"}
    assert setuptools["package-dir"] == {"alexnet_exp.conf": "conf"}
    assert setuptools["package-data"] == {"alexnet_exp.conf": ["**/*.yaml"]}
    assert [f for f in (REPO / "conf").rglob("*") if f.is_file() and f.suffix != ".yaml"] == []


COMMAND_LINE = {"__main__", "api", "commands", "cli", "sweep", "preflight", "user_configs",
                "config_store"}


@pytest.mark.parametrize("contract, side, allowed, external", [
    ("Only tracking imports MLflow", "source_modules", {"tracking"}, set()),
    ("Only the command line imports Hydra", "source_modules", COMMAND_LINE, set()),
    ("tracking is a sink", "forbidden_modules", {"tracking", "config", "errors", "keys", "paths"},
     {"keras", "tensorflow"}),
])
def test_a_forbidden_import_contract_covers_every_module_but_its_owners(contract, side, allowed,
                                                                        external):
    """import-linter's forbidden contracts list modules by hand: a new module missing from a
    list could import MLflow or Hydra, or be imported by tracking, and `make lint` would stay
    green."""
    tomllib = pytest.importorskip("tomllib")
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (listed,) = [c[side] for c in contracts["contracts"] if c["name"].startswith(contract)]
    package = REPO / "alexnet_exp"
    modules = ({f.stem for f in package.glob("*.py") if f.stem != "__init__"}
               | {d.name for d in package.iterdir() if (d / "__init__.py").exists()})
    assert sorted(listed) == sorted({f"alexnet_exp.{m}" for m in modules - allowed} | external)


# --- a user's own configs: --config-dir -------------------------------------------------------


def test_preflight_composes_the_users_experiment_and_names_it_among_the_choices(
        tmp_path, monkeypatch):
    from alexnet_exp.config_store import register_configs

    register_configs()
    monkeypatch.chdir(tmp_path)
    my_conf(tmp_path)
    preflight(["--config-dir", "my_conf", "experiment=my_study", "dry_run=true"])
    preflight(["-cd", "my_conf", "-m", "experiment=my_study", "model=tiny,small"])
    with pytest.raises(UserError,
                       match=r"choose one of demo, flowers_best, flowers_fast, my_study"):
        preflight(["--config-dir", "my_conf", "experiment=my_stduy"])
    with pytest.raises(UserError, match="model=tinny is not an option of model"):
        preflight(["--config-dir", "my_conf", "-m", "experiment=my_study", "model=tiny,tinny"])
    with pytest.raises(UserError, match="experiment=my_study is not an option"):
        preflight(["experiment=my_study"])  # without the folder, ours only


@pytest.mark.slow
def test_a_users_experiment_outside_the_repo_trains_with_config_dir(tmp_path):
    """The README's example as typed, from a project folder of the user's: their experiment and
    model file compose with ours, and the run is recorded under their experiment's name."""
    my_conf(tmp_path)
    client = store(tmp_path)
    done = cli(tmp_path, "--config-dir", "./my_conf", "experiment=my_study",
               "trainer.batch_size=32", "trainer.verbose=0", "tracking.log_model=false")
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = runs_of(client, "my_study")
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "tiny"
    assert run.data.params["model.filters"] == "[8, 16, 16, 16, 8]"


# --- the wheel, installed into a fresh venv ---------------------------------------------------

def _venv_seeing_our_dependencies(venv: Path) -> Path:
    """A fresh venv that sees the dependencies of the running one (TensorFlow, MLflow, Hydra)
    through a .pth file, so the test does not download ~1 GB again; the wheel goes in with
    --no-deps *before* the .pth exists, so pip never sees (nor touches) the other venv, whose
    own editable alexnet_exp then sits behind the installed copy on sys.path. The .pth adds only
    a path: that folder's own .pth files (the editable install's finder) are not run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def _copy_of_the_source(dest: Path) -> Path:
    """The files a wheel is built from, copied: building in the checkout would leave build/
    there, and two test workers would build in the same folder."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("alexnet_exp", "conf"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def _installed(tmp_path: Path, editable: bool = False) -> tuple[Path, dict]:
    """bin/ of a fresh venv holding alexnet-exp (built as a wheel, or editable), and the
    environment its commands run in (no PYTHONPATH: the checkout must not shadow it)."""
    src = _copy_of_the_source(tmp_path / "src")
    python = _venv_seeing_our_dependencies(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
    if editable:
        subprocess.run([*pip, "-e", str(src)], check=True, capture_output=True, text=True)
    else:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
        (wheel,) = (tmp_path / "dist").glob("alexnet_exp-*.whl")
        subprocess.run([*pip, str(wheel)], check=True, capture_output=True, text=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    (_site_packages(python) / "zz_shared_dependencies.pth").write_text(f"{ours}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return python.parent, {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _config_sources(bin_dir: Path, cwd: Path, env: dict) -> dict[str, str]:
    """Where Hydra found each part of the config (``--cfg hydra``, no TensorFlow)."""
    done = subprocess.run([str(bin_dir / "alexnet-exp"), "--cfg", "hydra"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sources = yaml.safe_load(done.stdout)["hydra"]["runtime"]["config_sources"]
    return {s["provider"]: f"{s['schema']}://{s['path']}" for s in sources}


@pytest.mark.slow
def test_the_installed_wheel_runs_from_a_folder_outside_the_repo(tmp_path):
    bin_dir, env = _installed(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    installed_conf = _site_packages(bin_dir / "python") / "alexnet_exp" / "conf"
    assert _config_sources(bin_dir, elsewhere, env)["main"] == f"file://{installed_conf}"

    def run(program, *args):
        done = subprocess.run([str(bin_dir / program), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{program} {args}: {done.stderr[-2000:]}"
        return done.stdout

    assert "alexnet-exp: train AlexNet" in run("alexnet-exp", "--help")
    assert "experiment_name: alexnet-exp-eval" in run("alexnet-exp-eval", "--help")  # eval.yaml
    out = run("alexnet-exp", "dry_run=true", "data=digits", *TINY_MODEL,
              f"hydra.run.dir={elsewhere / 'run'}")
    assert "dry run: nothing trained or logged" in out
    hydra = yaml.safe_load((elsewhere / "run" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    main = [s for s in hydra["runtime"]["config_sources"] if s["provider"] == "main"]
    assert main[0]["path"] == str(installed_conf)
    assert not (REPO / "build").exists()


@pytest.mark.slow
def test_an_editable_install_composes_from_the_checkouts_conf(tmp_path):
    """``make setup`` installs editable: the package-dir mapping must not break it."""
    bin_dir, env = _installed(tmp_path, editable=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _config_sources(bin_dir, elsewhere, env)["main"] == f"file://{tmp_path}/src/conf"
