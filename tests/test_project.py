"""The README's commands are the ones CI runs, and the required layout exists."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = _bash_blocks(readme)
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert test_cmd in (REPO / ".ci" / "run").read_text()


def test_layout():
    for p in ("hao", "search_spaces", "latency_models", "experiments", "tests", "setup.cfg", "pyproject.toml"):
        assert (REPO / p).exists(), p


def test_torch_pinned_to_cpu_wheel():
    text = (REPO / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in text


def test_cli_spaces_json():
    import json
    out = subprocess.run([sys.executable, "-m", "hao.cli", "spaces", "--json"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert int(rows["mbconv-fmnist"]["size"]) >= 10**15
    assert int(rows["quant-resnet18"]["size"]) == 2**16
    assert rows["quant-resnet18"]["searchable_layers"] == 19
