"""Views and meshes sharded over 8 simulated CPU devices, and a 2-process `jax.distributed`
run on 127.0.0.1; each in fresh processes, since JAX fixes its devices when it starts."""

import json
import os
import pathlib
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The suite's compiler setting (tests/conftest.py), for the child processes too.
ENV = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def _run(args):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def _finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_views_and_meshes_sharded_over_8_devices_equal_unsharded():
    out = _finish(_run([ROOT / "tests" / "sharded_check.py", 8]))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 8
    jit = result["jit"]
    assert jit["image_error"] <= 1e-6 and jit["grad_error"] <= 1e-5
    # Each device holds, and renders, its 2 of the 16 views: the output is sharded along the
    # view axis and the compiled program gathers nothing from the other devices.
    assert jit["image_spec"] == ["views"] and jit["shard_shapes"] == [2]
    assert jit["all_gathers"] == 0 and jit["grad_replicated"]
    assert result["shard_map"]["image_error"] <= 1e-6
    assert result["shard_map"]["grad_error"] <= 1e-5
    explicit = result["explicit"]
    assert explicit["image_error"] <= 1e-6 and explicit["image_spec"] == ["views"]
    assert explicit["hint"]
    losses = result["optax"]["losses"]
    assert losses[-1] < losses[0] and result["optax"]["offsets_replicated"]
    meshes = result["meshes"]
    assert meshes["image_error"] <= 1e-6
    assert meshes["image_spec"] == ["views"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_loss_and_gradient_of_one(tmp_path):
    """examples/sharded_views.py in 2 local processes (`jax.distributed`, gloo), each with
    its half of the views, and in one process with all of them: the first step's global
    loss and gradient agree."""
    example = ROOT / "examples" / "sharded_views.py"
    common = [example, "--views", 8, "--steps", 2, "--image-size", 16, "--level", 1,
              "--heldout", 0]  # fmt: skip
    port = _free_port()
    procs = [
        _run(
            [
                *common,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                2,
                "--process-id",
                i,
                "--report",
                tmp_path / f"two{i}.json",
            ]
        )  # fmt: skip
        for i in range(2)
    ]
    procs.append(_run([*common, "--report", tmp_path / "one.json"]))
    outputs = [_finish(p) for p in procs]
    assert "2 devices in 2 process(es)" in outputs[0]
    assert "process 1, cpu:" in outputs[1] and "views 4..7" in outputs[1]
    assert not (tmp_path / "two1.json").exists()  # process 0 reports
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two0.json").read_text())
    assert abs(two["loss"] - one["loss"]) <= 1e-6 * abs(one["loss"])
    diff = max(abs(a - b) for ra, rb in zip(one["grad"], two["grad"], strict=True)
               for a, b in zip(ra, rb, strict=True))  # fmt: skip
    scale = max(abs(a) for row in one["grad"] for a in row)
    assert scale > 0
    assert diff <= 1e-5 * scale
