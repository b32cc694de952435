"""Table importers as plug-ins: an installed package's entry point (group ``hao.table_importers``) and
``hao latency import --plugin module:Class`` both register an importer that then behaves like a built-in."""
from __future__ import annotations

import json
import textwrap

import pytest

from hao.errors import ConfigError
from hao.latency.importers import IMPORTERS
from hao.latency.table import LatencyTable
from hao.testing.latency import check_importer

PLUGIN = textwrap.dedent('''
    from hao.latency.importers import IMPORTERS

    Hawq = IMPORTERS.get("hawq")

    class RenamedHawq(Hawq):
        """A third-party importer (here: HAWQ-V3's file under another default folder name)."""
        default_hardware = "plugin-t4"

    class OtherHawq(Hawq):
        """Not an entry point: given by hand with --plugin."""
        default_hardware = "plugin-other"
''')


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    (tmp_path / "hao_plugin_demo.py").write_text(PLUGIN)
    dist = tmp_path / "hao_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hao-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hao.table_importers]\nrenamed-hawq = hao_plugin_demo:RenamedHawq\n"
                                           "broken = hao_plugin_demo:NoSuchThing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("renamed-hawq", "broken", "otherhawq"):
        IMPORTERS.unregister(name)


def test_entry_point_plugin_is_registered_and_conforms(plugin_path):
    with pytest.warns(UserWarning, match="could not load the table importer plug-in 'broken'"):
        IMPORTERS.load(force=True)
    assert "renamed-hawq" in IMPORTERS.names() and "broken" not in IMPORTERS.names()
    imp = IMPORTERS.create("renamed-hawq")
    assert imp.name == "renamed-hawq" and imp.default_hardware == "plugin-t4"
    check_importer(imp)


def test_cli_plugin_option(plugin_path, tmp_path, capsys):
    from hao.cli import main
    root = tmp_path / "tables"
    assert main(["latency", "import", "--plugin", "hao_plugin_demo:OtherHawq", "--root", str(root)]) == 0
    out = json.loads(capsys.readouterr().out)
    table = LatencyTable.load(root / "plugin-other")
    assert out["hardware"] == "plugin-other" and len(table) > 0 and table.meta["importer"] == "otherhawq"
    assert "otherhawq" in IMPORTERS.names()
    assert main(["latency", "import", "--plugin", "hao_plugin_demo:Nope", "--root", str(root)]) == 2
    assert "has no 'Nope'" in capsys.readouterr().err
    assert main(["latency", "import", "--plugin", "no_such_module_x:Y", "--root", str(root)]) == 2
    assert "Cannot import" in capsys.readouterr().err
    assert main(["latency", "import", "--root", str(root)]) == 2
    assert "needs a format" in capsys.readouterr().err


def test_load_plugin_errors():
    with pytest.raises(ConfigError, match="package.module:Class"):
        IMPORTERS.load_plugin("just_a_module")
