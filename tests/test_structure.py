"""The package's structure stays readable: one idea per module (a docstring that states it,
at most 400 lines), imports that flow one way (no cycles), and a top-level namespace that is
the API and nothing else."""

import ast
import pathlib

import softjax as sj

PACKAGE = pathlib.Path(sj.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set:
    """The softjax modules that `path` imports at run time (`from softjax.x import y` counts
    `softjax.x.y` when that is a module, else `softjax.x`)."""
    names = {_name(p) for p in MODULES}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("softjax"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in names else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("softjax")}
    return found


def test_every_module_states_its_idea_and_stays_small():
    assert len(MODULES) > 30
    for path in MODULES:
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text))
        assert doc and len(doc.split()) >= 5, f"{path.name} opens with no docstring"
        assert len(text.splitlines()) <= 400, f"{_name(path)} has over 400 lines"


def test_imports_have_no_cycles():
    graph = {_name(p): _imports(p) - {_name(p)} for p in MODULES}
    # A package's own __init__ is imported before any of its modules, so an edge into a
    # package counts as an edge into its __init__ alone.
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_top_level_namespace_is_the_api():
    # `softjax.demo` (the flagship demo, `python -m softjax.demo`) is imported on demand and
    # shows up as an attribute once something has imported it.
    public = {n for n in dir(sj) if not n.startswith("_")} - {"demo"}
    assert public == set(sj.__all__)
    for name in sj.__all__:
        assert getattr(sj, name) is not None
    # The implementation is private: internal modules live under softjax._src only.
    assert {p.name for p in PACKAGE.glob("*.py")} == {
        "__init__.py", "coverage.py", "demo.py", "io.py", "losses.py",
    }  # fmt: skip
