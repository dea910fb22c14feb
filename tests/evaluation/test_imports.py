"""Postprocessing and evaluation stay light: using them never imports torch or MONAI."""

from __future__ import annotations

import subprocess
import sys


def test_postprocessing_and_evaluation_do_not_import_torch():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from voxseg.postprocessing import postprocess, object_table, choose_postprocessing\n"
        "from voxseg.evaluation import dice, hd95, surface_dice, detection_metrics\n"
        "m = np.zeros((8, 8, 8), np.uint8); m[2:5, 2:5, 2:5] = 1\n"
        "inst = postprocess(m, min_size=1); object_table(inst)\n"
        "dice(m, m); hd95(m, m); surface_dice(m, m, tolerance_mm=1); detection_metrics(inst, inst)\n"
        "choose_postprocessing([m], [m], labels=[1])\n"
        "heavy = sorted(k for k in ('torch', 'monai') if k in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
