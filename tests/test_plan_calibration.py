"""The plan's calibrated MFU against MaxText's published measurements (independent references:
figures read from MaxText's docs, not our outputs; the sources are in planning/calibration.py)."""
import numpy as np
import pytest

from synthflaw_jax.planning import calibration, estimate

TOLERANCE = 0.09  # absolute MFU (9 points): the largest miss, on a held-out point, is 8.4
HELD_OUT_MEAN_TOLERANCE = 0.06


def test_published_points_are_the_ones_read():
    """A guard against an edit of the reference figures: the MFUs as published, by slice."""
    got = {(p.slice, p.model, p.seq_len): p.mfu for p in calibration.PUBLISHED}
    assert got == {
        ("v5p-128", "maxtext_32b", 2048): 0.7147, ("v5p-128", "maxtext_64b", 2048): 0.7031,
        ("512 chips", "llama2_70b", 4096): 0.654, ("v5e-256", "maxtext_16b", 2048): 0.6110,
        ("v5e-256", "maxtext_32b", 2048): 0.6686, ("v5e-256", "maxtext_64b", 2048): 0.5990,
        ("v5e-256", "llama2_70b", 2048): 0.57, ("256 chips", "llama3_8b", 8192): 0.4546,
        ("256 chips", "llama3_70b", 8192): 0.5033, ("256 chips", "llama2_70b", 4096): 0.438,
        ("v4-128", "llama2_70b", 2048): 0.57,
    }
    held = [p for p in calibration.PUBLISHED if p.role == "held out"]
    assert {p.chip for p in held} == {"v4", "v5e", "v5p", "v6e"}  # one per generation, all of v4
    assert not any(p.chip == "v4" and p.role == "fit" for p in calibration.PUBLISHED)


def test_maxtext_scaled_models_have_their_nominal_size():
    """MaxText calls them 16B, 32B and 64B: our reconstruction of their shapes must agree."""
    for name, nominal in (("maxtext_16b", 16e9), ("maxtext_32b", 32e9), ("maxtext_64b", 64e9)):
        assert calibration.model(name).num_params() == pytest.approx(nominal, rel=0.03)


def test_constants_are_the_least_squares_fit():
    """The constants in estimate.py are what the fit gives (not tuned by hand)."""
    a, c = calibration.fit()
    assert estimate.MATMUL_TIME_FACTOR == pytest.approx(a, abs=1e-3)
    assert estimate.ACTIVATION_BYTES == pytest.approx(c, rel=1e-3)
    # the fit solves the normal equations: the residuals are orthogonal to both regressors
    rows = [calibration.features(p) + (p.mfu,) for p in calibration.PUBLISHED if p.role == "fit"]
    residual = np.array([r / m - (a + c * x) for r, x, m in rows])
    assert abs(residual.sum()) < 1e-9 and abs(residual @ np.array([x for _, x, _ in rows])) < 1e-9


@pytest.mark.parametrize("point", calibration.PUBLISHED, ids=lambda p: f"{p.chip}-{p.model}-{p.seq_len}-{p.role}")
def test_calibrated_mfu_within_tolerance_of_published(point):
    est = calibration.estimates(point)
    assert abs(est["after"] - point.mfu) <= TOLERANCE, (est, point.mfu)
    assert est["after"] < est["before"]  # the roofline stays an upper bound


def test_held_out_points_and_improvement_over_the_roofline():
    held = [p for p in calibration.PUBLISHED if p.role == "held out"]
    after = [abs(calibration.estimates(p)["after"] - p.mfu) for p in held]
    before = [abs(calibration.estimates(p)["before"] - p.mfu) for p in held]
    assert np.mean(after) <= HELD_OUT_MEAN_TOLERANCE
    assert np.mean(after) < np.mean(before) / 2
    # v6e (the chip with the most FLOPs per HBM byte) is estimated lower than v5p for the same model
    v5p, v6e = (calibration.estimates(calibration.Published(c, "", "llama2_70b", 4096, 0, "", ""))["after"]
                for c in ("v5p", "v6e"))
    assert v6e < v5p


def test_roofline_calibrated_arithmetic():
    """Hand-computed: 1 s of matmuls at peak, 1 GB of activation bytes on a 2765 GB/s chip."""
    from synthflaw_jax import tpu_specs

    topo = tpu_specs.parse_topology("v5p-8")
    r = estimate.roofline(topo, flops_per_chip=459e12, hbm_bytes_per_chip=0.0, collective_bytes_per_chip=0.0,
                          useful_flops_global=topo.chips * 459e12 * 0.5, policy_tokens=1000,
                          activation_bytes_per_chip=2765e9)
    assert r["step_s_calibrated"] == pytest.approx(estimate.MATMUL_TIME_FACTOR + 1.0)
    assert r["mfu_calibrated"] == pytest.approx(0.5 / (estimate.MATMUL_TIME_FACTOR + 1.0))
    # an ICI-bound step stays ICI-bound
    r = estimate.roofline(topo, 459e12, 0.0, 10 * 600e9, topo.chips * 459e12, 1000, 0.0)
    assert r["step_s_calibrated"] == pytest.approx(10.0)
