"""The flagship demo runs end to end (tiny settings) and writes its pictures."""

import os

import numpy as np
import pytest

pytest.importorskip("imageio")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from softjax import demo  # noqa: E402


def test_demo_fits_and_writes_its_pictures(tmp_path):
    """Tiny settings: the fit must still improve the held-out IoU of the starting sphere."""
    result = demo.main(["--steps", "40", "--level", "1", "--image-size", "16",
                        "--out", str(tmp_path)])  # fmt: skip
    for name in ("grid.png", "fit.gif", "curves.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert len(result["heldout_iou_per_view"]) == len(demo._TEST_VIEWS)
    assert result["heldout_iou"] == pytest.approx(np.mean(result["heldout_iou_per_view"]))
    assert result["heldout_iou"] > result["initial_heldout_iou"] + 0.1


def test_demo_rejects_bad_flags():
    with pytest.raises(SystemExit):
        demo.parse_args(["--steps", "0"])
