"""The sensitivity measurement: every kept-float combination, calibrated once per method."""
from __future__ import annotations

from fcn_deploy.datasets import SyntheticShapes
from fcn_deploy.quantize import CalibrationReader
from fcn_deploy.quantize.sensitivity import format_table, kind_combinations, measure_sensitivity

from .conftest import CALIB_SEED, DATA_KW, EVAL_SEED


def test_kind_combinations():
    combos = kind_combinations()
    assert len(combos) == 8 and combos[0] == () and combos[-1] == ("first_conv", "score", "upsample")


def test_measure_sensitivity_calibrates_once_and_evaluates_every_variant(trained_tiny, tmp_path):
    class Counting(CalibrationReader):
        fed = 0

        def get_next(self):
            feed = super().get_next()
            Counting.fed += feed is not None
            return feed

    calib = SyntheticShapes(num_images=4, seed=CALIB_SEED, **DATA_KW)
    reader = Counting(calib, mean=[104.0, 117.0, 123.0], progress=False)
    combos = [(), ("upsample",), ("score", "upsample")]
    miou, rows = measure_sensitivity(trained_tiny, reader,
                                     SyntheticShapes(num_images=6, seed=EVAL_SEED, **DATA_KW),
                                     combinations=combos, work_dir=tmp_path, progress=False)
    assert Counting.fed == 4  # ranges cached after the first variant
    assert [r.kept_float for r in rows] == combos
    assert [r.int8_layers for r in rows] == [8, 6, 4]
    for r in rows:
        assert abs(r.delta_mean_iu - (r.mean_iu - miou)) < 1e-12
        assert 0.9 < r.agreement <= 1.0
    table = format_table(miou, rows)
    assert "| percentile | score, upsample | 4 |" in table and "| percentile | nothing | 8 |" in table
    assert list(tmp_path.iterdir()) == []  # variants were temporary
