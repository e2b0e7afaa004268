"""``import recbole_hllm`` is light; RecBole gets its fixes and models when it is imported."""
import sys

from recbole_hllm.integration.import_hook import when_imported

from conftest import run_python as _python


def test_import_recbole_hllm_loads_neither_recbole_nor_torch(tmp_path):
    out = _python("import sys, recbole_hllm, recbole_hllm.cli.evaluate, recbole_hllm.cli.build_creatives, "
                  "recbole_hllm.cli.serve, recbole_hllm.chat.openai_server\n"
                  "print(sorted(m for m in ('recbole', 'torch', 'sklearn', 'transformers') if m in sys.modules))",
                  tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_recbole_imported_before_recbole_hllm_gets_the_models(tmp_path):
    """(The other order, recbole_hllm first, is how every other test runs: conftest.py.)"""
    out = _python("import recbole.config; import recbole_hllm\nfrom recbole.utils import get_model\n"
                  "print(get_model('HLLM').__name__, get_model('HLLMCreator').__name__)", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "HLLM HLLMCreator"


def test_when_imported_runs_after_init_before_submodules(tmp_path, monkeypatch):
    package = tmp_path / "hooked_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("ORDER = ['init']\n")
    (package / "sub.py").write_text("import hooked_pkg\nhooked_pkg.ORDER.append('sub')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []

    def callback():
        module = sys.modules["hooked_pkg"]
        module.ORDER.append("callback")
        calls.append(1)

    try:
        when_imported("hooked_pkg", callback)
        when_imported("hooked_pkg", callback)  # the same request twice runs once
        import hooked_pkg.sub

        assert hooked_pkg.ORDER == ["init", "callback", "sub"] and calls == [1]
        assert "exec_module" not in vars(hooked_pkg.__spec__.loader)  # the loader is left as found
        when_imported("hooked_pkg", callback)  # already imported: runs at once
        assert calls == [1, 1]
    finally:
        for name in ("hooked_pkg.sub", "hooked_pkg"):
            sys.modules.pop(name, None)


def test_first_import_from_inside_a_plugin_module_registers_at_the_first_lookup(tmp_path):
    """A spawned worker unpickling a config, or ``hllm-generate``, may import a model module
    before RecBole: registering inside that half-run import would import it again."""
    out = _python("import recbole_hllm.data.creative_dataset\n"
                  "import recbole.trainer, recbole.data.dataset\n"
                  "from recbole.utils import get_trainer, ModelType\n"
                  "print(recbole.data.dataset.HLLMCreatorDataset.__name__, "
                  "get_trainer(ModelType.SEQUENTIAL, 'HLLM').__name__)", tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "HLLMCreatorDataset HLLMTrainer"


def test_plugin_module_running_only_while_a_tracked_module_body_runs(tmp_path, monkeypatch):
    from recbole_hllm.integration import import_hook

    package = tmp_path / "tracked_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sub.py").write_text("from recbole_hllm.integration.import_hook import plugin_module_running\n"
                                    "SEEN = plugin_module_running()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_hook.track_imports("tracked_pkg.")
    try:
        assert not import_hook.plugin_module_running()
        import tracked_pkg.sub

        assert tracked_pkg.sub.SEEN and not import_hook.plugin_module_running()
        assert "exec_module" not in vars(tracked_pkg.sub.__spec__.loader)  # the loader is left as found
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "prefix", None) != "tracked_pkg."]
        for name in ("tracked_pkg.sub", "tracked_pkg"):
            sys.modules.pop(name, None)


def test_registering_the_models_loads_neither_data_construction_nor_chat_nor_commands(tmp_path):
    out = _python("import sys, recbole_hllm\nfrom recbole.utils import get_model, get_trainer\n"
                  "get_trainer(get_model('HLLMCreator').type, 'HLLMCreator')\n"
                  "rooms = ('construction', 'chat', 'cli')\n"
                  "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('recbole_hllm.')} & set(rooms)))",
                  tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
