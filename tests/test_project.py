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


def _run_section_snippets(heading: str, count: int) -> dict:
    """Runs the `count` python snippets of the README section starting with `heading` in
    order, in one namespace, and returns it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python")[1:]]
    assert len(blocks) == count
    namespace = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_batches_snippets_run():
    """The "Batches" section's snippets run in order (one device here: the sharded step
    still runs, with every view on it)."""
    namespace = _run_section_snippets("## Batches:", 3)
    jnp = namespace["jnp"]
    assert namespace["images"].shape == (3, 32, 32, 4)
    grads = namespace["grads"]
    assert float(jnp.abs(grads[0, 12:]).max()) == 0.0 and float(jnp.abs(grads[0]).max()) > 0
    assert namespace["rgba"].shape == (32, 32, 4)
    shards = namespace["target"].addressable_shards
    assert len(shards) == namespace["jax"].device_count() and shards[0].data.shape[0] == 4
    assert bool(jnp.isfinite(namespace["loss"]))


def test_readme_hard_snippets_run():
    """The "Hard rasterization" section's snippets run in order."""
    namespace = _run_section_snippets("## Hard rasterization", 2)
    jnp = namespace["jnp"]
    assert namespace["rgba"].shape == (48, 64, 4) and namespace["image"].shape == (48, 64, 4)
    assert float(jnp.abs(namespace["grad"]).max()) > 0
    assert namespace["layers"].face_id.shape == (48, 64, 3)
    alpha = namespace["image"][..., 3]
    assert float(alpha.min()) == 0.0 and float(alpha.max()) == 1.0
    assert bool(jnp.any((alpha > 0) & (alpha < 1)))  # antialiased edge pixels


def test_readme_family_snippet_runs():
    """The "soft-rasterizer family" section's snippet runs."""
    namespace = _run_section_snippets("## The soft-rasterizer family", 1)
    assert namespace["rgba"].shape == (32, 32, 4) and namespace["alpha"].shape == (32, 32)
    assert 0.5 < float(namespace["alpha"].max()) <= 1.0


def test_readme_shader_snippet_runs():
    """The "Shaders of your own" section's snippet runs: both modes render and the gradient
    reaches the shader's parameters."""
    namespace = _run_section_snippets("## Shaders of your own", 1)
    jnp = namespace["jnp"]
    rgba = namespace["rgba"]
    assert rgba.shape == (48, 64, 4) and float(rgba[..., 3].max()) == 1.0
    assert bool(jnp.all(jnp.isfinite(rgba)))
    grad = namespace["grad"]
    assert float(jnp.abs(grad["ao_weight"])) > 0 and float(jnp.abs(grad["light"]).max()) > 0
