"""The flagship demo runs end to end (tiny settings) and writes its pictures."""

import os

import pytest

pytest.importorskip("imageio")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from softjax import demo  # noqa: E402


def test_demo_smoke(tmp_path):
    result = demo.main(["--steps", "3", "--level", "1", "--image-size", "16",
                        "--out", str(tmp_path)])  # fmt: skip
    for name in ("grid.png", "fit.gif", "curves.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert 0.0 <= result["heldout_iou"] <= 1.0
    assert len(result["heldout_iou_per_view"]) == len(demo._TEST_VIEWS)


def test_demo_rejects_bad_flags():
    with pytest.raises(SystemExit):
        demo.parse_args(["--steps", "0"])
