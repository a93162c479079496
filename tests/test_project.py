"""The README's set-up commands stay true: CI runs exactly the README's test command."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("python3 -m venv")]


def test_readme_starts_with_demo_and_test_commands():
    demo, test = _commands()
    assert demo.endswith("python -m softjax.demo")
    assert '".[examples]"' in demo
    assert "pytest" in test and '".[test]"' in test


def test_ci_runs_the_readme_test_command():
    _, test = _commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines


def test_readme_usage_example_runs_and_fits():
    code = (ROOT / "README.md").read_text().split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    first = float(namespace["loss_fn"](namespace["jnp"].zeros_like(namespace["mesh"].verts)))
    assert float(namespace["loss"]) < 0.5 * first
    assert namespace["rgba"].shape == (32, 32, 4)
