"""Modules that moved keep their old import paths, with a DeprecationWarning naming the new one."""
import importlib
import runpy
import sys
import warnings

import pytest

from recbole_hllm import old_paths


def _import_fresh(name):
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    return importlib.import_module(name)


@pytest.mark.parametrize("old, new", sorted(old_paths.MOVED.items()))
def test_old_module_path_warns_and_gives_the_same_module(old, new):
    module = importlib.import_module(new)
    try:
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            assert _import_fresh(old) is module
        assert module.__spec__.name == new  # the alias left the module its own spec
        assert importlib.import_module(old) is module  # later imports: no new module, no second warning
    finally:
        sys.modules.pop(old, None)


def test_old_from_import_works():
    sys.modules.pop("recbole_hllm.compat", None)
    try:
        with pytest.warns(DeprecationWarning, match="recbole_hllm.integration.compat"):
            from recbole_hllm.compat import restore_numpy_aliases
        from recbole_hllm.integration.compat import restore_numpy_aliases as new
        assert restore_numpy_aliases is new
    finally:
        sys.modules.pop("recbole_hllm.compat", None)


@pytest.mark.parametrize("old", sorted(old_paths.SPLIT))
def test_split_package_imports_empty_and_warns(old):
    try:
        with pytest.warns(DeprecationWarning, match=f"{old} was split into"):
            package = _import_fresh(old)
        assert package.__path__ == [] and "Split" in package.__doc__
    finally:
        sys.modules.pop(old, None)


@pytest.mark.parametrize("module, name", sorted(old_paths.MOVED_NAMES))
def test_names_that_left_a_module_are_still_found_there(module, name):
    new = importlib.import_module(old_paths.MOVED_NAMES[(module, name)])
    with pytest.warns(DeprecationWarning, match=f"{module}.{name} moved to"):
        assert getattr(importlib.import_module(module), name) is getattr(new, name)


def test_unknown_names_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("recbole_hllm.no_such_module")
    with pytest.raises(AttributeError):
        old_paths.moved_name("recbole_hllm.cli", "no_such_name")


def _run_as_main(module):
    """``python -m module`` in this process; the import warnings are tested above (and
    runpy warns that a module this test process already imported is run again)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if module in old_paths.MOVED:  # an alias: the next import must find it anew
            sys.modules.pop(module, None)


@pytest.mark.parametrize("old", sorted(old_paths.OLD_SCRIPTS))
def test_old_script_module_runs_the_moved_script(old, monkeypatch, capsys):
    """``python -m <old module>`` still runs the console script it used to be, with a note."""
    new, script = old_paths.OLD_SCRIPTS[old]
    monkeypatch.setattr(sys, "argv", [old, "--help"])
    with pytest.raises(SystemExit) as exited:
        _run_as_main(old)
    out = capsys.readouterr()
    assert exited.value.code == 0, out.err
    assert f"note: python -m {old} is deprecated; the script is `{script}` (python -m {new})" in out.err
    assert out.out.startswith(f"usage: {script}")


def test_old_module_that_was_no_script_says_so():
    with pytest.raises(SystemExit, match=r"recbole_hllm.config_creator is not a script \(it moved to recbole_hllm.config\)"):
        _run_as_main("recbole_hllm.config_creator")
