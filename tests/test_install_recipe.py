"""The install recipe for Python 3.11-3.13: RecBole is installed with ``--no-deps`` (its
``ray<=2.6.3`` pin has no wheel for 3.12+), so setup.py must not declare it but must declare
what RecBole itself needs, and a missing RecBole must say so in one line, with the recipe."""
import ast
import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from recbole_hllm import RECBOLE_MISSING

from conftest import run_python

REPO = Path(__file__).resolve().parents[1]
RECIPE = "pip install --no-deps recbole==1.2.1"

# PathFinder that does not see RecBole: what an environment without RecBole looks like
HIDE_RECBOLE = """\
import importlib.machinery, sys
class HideRecBole(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split('.')[0] == 'recbole' else super().find_spec(name, path, target)
sys.meta_path[:] = [HideRecBole if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def _setup_kwargs() -> dict:
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    wanted = ("install_requires", "python_requires")
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in wanted}


def test_missing_recbole_is_one_line_that_names_the_recipe(tmp_path):
    out = run_python(HIDE_RECBOLE + "from recbole_hllm.cli.run_recbole import main\n"
                     "sys.exit(main(['--model=HLLM', '--epochs=1']))", tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [f"run_recbole: error: {RECBOLE_MISSING}"]
    assert RECIPE in RECBOLE_MISSING and "\n" not in RECBOLE_MISSING


def test_missing_recbole_from_python_is_a_module_not_found_error_with_the_recipe(tmp_path):
    out = run_python(HIDE_RECBOLE + "import recbole_hllm\n"  # the light import itself still works
                     "try:\n    from recbole.quick_start import run_recbole\n"
                     "except ModuleNotFoundError as exc:\n    print(exc.name, '|', exc)\n", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"recbole | {RECBOLE_MISSING}"


def test_setup_declares_recboles_needs_but_not_recbole():
    kwargs = _setup_kwargs()
    declared = {Requirement(r).name.lower(): Requirement(r) for r in kwargs["install_requires"]}
    assert "recbole" not in declared  # pip could not resolve it on 3.12+ (ray)
    recbole_needs = [Requirement(r) for r in importlib.metadata.requires("recbole") or []]
    for need in recbole_needs:
        if need.marker is not None or need.name == "ray":  # extras (hyperopt) and ray: optional
            continue
        assert need.name.lower() in declared, f"setup.py lacks RecBole's requirement {need}"
        if any(spec.operator == "==" for spec in need.specifier):  # RecBole's exact pins, kept exact
            assert declared[need.name.lower()].specifier == need.specifier, need
    python = SpecifierSet(kwargs["python_requires"])
    assert all(version in python for version in ("3.11.7", "3.12.1", "3.13.0")) and "3.10.13" not in python


def test_makefile_and_readme_install_recbole_as_the_error_says():
    assert "pip install -q --no-deps recbole==1.2.1" in (REPO / "Makefile").read_text(encoding="utf-8")
    assert RECIPE in (REPO / "README.md").read_text(encoding="utf-8")
