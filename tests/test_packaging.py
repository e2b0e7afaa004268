"""A regular (wheel) install works on its own: every module imports, the yaml defaults
are found, and the installed console script trains a tiny model.

The check runs in a fresh virtual environment that sees this environment's installed
dependencies (one ``.pth`` line) but neither the source tree nor the editable install:
setuptools' editable finder is activated by a ``.pth`` file of its own, which a path
line does not process, so a subpackage missing from the wheel fails to import here
instead of being served from the source tree.
"""
import pkgutil
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import yaml

import recbole_hllm

from conftest import subprocess_env, tiny_config, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(recbole_hllm.__path__, "recbole_hllm.")
                 if not m.name.endswith("__main__"))  # importing __main__ would run the command


def _clean_source(tmp_path: Path) -> Path:
    """The source tree without build outputs: setuptools packs whatever an earlier build
    left in build/lib, which would hide a package that setup.py no longer finds."""
    ignore = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "results", "saved", "log",
                                    "log_tensorboard", "__pycache__")
    return Path(shutil.copytree(REPO, tmp_path / "src", ignore=ignore))


def _fresh_env_with_wheel(tmp_path: Path) -> Path:
    """A venv with the built wheel installed and this environment's packages visible."""
    wheel_dir, env_dir = tmp_path / "wheel", tmp_path / "env"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(_clean_source(tmp_path)), "-w", str(wheel_dir)], capture_output=True, text=True,
                           timeout=240)
    assert build.returncode == 0, build.stderr[-2000:]
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    env_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    (Path(env_site) / "parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheel_dir.glob("recbole_hllm-*.whl"))
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=240)
    assert install.returncode == 0, install.stderr[-2000:]
    return env_dir


def test_wheel_install_imports_every_module_and_runs_the_console_script(tmp_path):
    assert "recbole_hllm.integration.launch" in MODULES and len(MODULES) > 40
    env_dir = _fresh_env_with_wheel(tmp_path)
    code = (
        "import importlib, recbole_hllm\n"
        f"for name in {MODULES!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    assert '/env/' in module.__file__, (name, module.__file__)\n"
        "from recbole_hllm.config import properties_dir\n"
        "from recbole.config import Config\n"
        "print('PROPS', properties_dir())\n"
        "print('USER_LLM', Config(model='HLLM', dataset='ml-100k', config_dict={'state': 'ERROR'})['user_llm'])\n"
        "from recbole_hllm.construction.prompts import default_settings_path\n"
        "print('COT', default_settings_path())\n"
    )
    env = {**subprocess_env(tmp_path), "PYTHONPATH": ""}
    out = subprocess.run([env_dir / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    site = f"{env_dir}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    assert f"PROPS {site}/recbole_hllm/properties" in out.stdout
    assert "USER_LLM smollm2" in out.stdout
    assert f"COT {site}/recbole_hllm/properties/construction/cot.yaml" in out.stdout

    data = write_tiny_dataset(tmp_path / "data").parent
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data, epochs=1, state="INFO")))
    run = subprocess.run([env_dir / "bin" / "run_recbole", "--model=HLLM", "--dataset=tiny",
                          f"--config_files={config}"], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test result" in run.stdout + run.stderr
