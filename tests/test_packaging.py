"""properties/ is found from a regular wheel install, not only from the source tree."""
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

REPO = Path(__file__).resolve().parents[1]


def test_wheel_install_finds_yaml_defaults(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(REPO), "-w", str(wheel_dir)], capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheel_dir.glob("recbole_hllm-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=240)
    assert install.returncode == 0, install.stderr[-2000:]
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r})\n"
        "import recbole_hllm\n"
        "from recbole_hllm.registry import properties_dir\n"
        "from recbole.config import Config\n"
        "print('PROPS', properties_dir())\n"
        "print('USER_LLM', Config(model='HLLM', dataset='ml-100k', config_dict={'state': 'ERROR'})['user_llm'])\n"
        "from recbole_hllm.construction.prompts import default_settings_path\n"
        "print('COT', default_settings_path())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**subprocess_env(tmp_path), "PYTHONPATH": ""}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"PROPS {target}/recbole_hllm/properties" in out.stdout
    assert "USER_LLM smollm2" in out.stdout
    assert f"COT {target}/recbole_hllm/properties/construction/cot.yaml" in out.stdout
