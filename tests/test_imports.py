"""The house's import rules, checked on the source (no imports run): no import cycles, the library
never reaches into the commands, models stay below runtime and video, and the CLI's front door and the
torch-free modules load without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "psr2video"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


MODULES = _modules()


def _targets(mod: str, is_pkg: bool, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The psr2video modules an import statement loads (nothing from outside the package)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        if node.level:
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
    out = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != mod:
            out.add(name)
    return out


def import_graph(import_time_only: bool) -> dict[str, set[str]]:
    """module -> modules it imports; ``import_time_only`` keeps the module-level imports (not the lazy ones
    inside functions, nor ``if TYPE_CHECKING:`` blocks)."""
    graph = {}
    for mod, (path, is_pkg) in MODULES.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if import_time_only else ast.walk(tree)
        graph[mod] = set().union(*(_targets(mod, is_pkg, n) for n in nodes
                                   if isinstance(n, (ast.Import, ast.ImportFrom))))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    """Neither at import time nor through the imports inside functions (which only hide a cycle)."""
    assert cycles(import_graph(import_time_only=True)) == []
    assert cycles(import_graph(import_time_only=False)) == []


def test_library_never_imports_the_commands() -> None:
    graph = import_graph(import_time_only=False)
    front = ("psr2video.cli", "psr2video.commands")
    bad = {m: sorted(t for t in ts if t.startswith(front)) for m, ts in graph.items()
           if not m.startswith(front) and not m.endswith("__main__")}
    assert {m: t for m, t in bad.items() if t} == {}


def test_models_stay_below_runtime_and_video() -> None:
    graph = import_graph(import_time_only=False)
    bad = {m: sorted(t for t in ts if t.startswith(("psr2video.runtime", "psr2video.video", "psr2video.commands")))
           for m, ts in graph.items() if m.startswith("psr2video.models")}
    assert {m: t for m, t in bad.items() if t} == {}


def test_front_door_and_names_load_without_torch() -> None:
    code = ("import sys; import psr2video.names, psr2video.errors, psr2video.cli; "
            "from psr2video.cli import cli, COMMANDS; "
            "[cli.get_command(None, n) for n in COMMANDS]; "
            "print(sorted(m for m in ('torch', 'av', 'numpy', 'onnxruntime') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_top_level_exports_load_lazily() -> None:
    """``from psr2video import Backend`` (and the other names a user reaches for) works, each the same object as
    in its own module, while ``import psr2video`` alone still loads no torch."""
    code = ("import sys; import psr2video; "
            "print(sorted(m for m in ('torch', 'av', 'numpy', 'onnxruntime') if m in sys.modules)); "
            "from psr2video import Backend, BackendConfig, MagicKernelSharp2021, PsrError, SCALES, Upscaler, "
            "VARIANTS, WeightsError, build_model, list_shipped, load_model, load_model_file; "
            "import psr2video.runtime as rt, psr2video.models as m; "
            "assert Backend is rt.Backend and Upscaler is rt.Upscaler and load_model is m.load_model; "
            "assert Backend.ORT(provider='cpu').name == 'onnxruntime'; "
            "assert set(psr2video.__all__) <= set(dir(psr2video)); "
            "print(all(hasattr(psr2video, n) for n in psr2video.__all__))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "True"]
    import psr2video

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        psr2video.nope  # noqa: B018
