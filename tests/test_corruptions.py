"""CIFAR-10-C corruptions: the procedural reimplementation of make_cifar_c.py, the official-file loader,
corruption_accuracy and its plot. Small batches of smooth synthetic images: the whole file runs in
well under a minute on two CPU cores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

import augbench.evaluation.corruptions as C
from augbench.errors import DatasetError
from augbench.evaluation.corruptions import _core, blur, digital

SEVS = (1, 2, 3, 4, 5)
SEEDLESS = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
            "gaussian_blur", "saturate"}  # no random draws in make_cifar_c.py either
# the CIFAR constants do not grow monotonically: glass (σ .4 once, then σ .25 twice), elastic (the
# affine jitter shrinks as the elastic part grows), saturate (severities 1-2 desaturate, 3-5 oversaturate)
NOT_MONOTONE = {"glass_blur", "elastic_transform", "saturate"}


def smooth_images(n: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Low-frequency random images stretched to the full 0..255 range: closer to photos than noise."""
    rng = np.random.default_rng(seed)
    b = ndimage.gaussian_filter(rng.random((n, channels, 32, 32)), (0, 0, 2, 2))
    lo, hi = b.min(axis=(1, 2, 3), keepdims=True), b.max(axis=(1, 2, 3), keepdims=True)
    return torch.from_numpy(np.rint((b - lo) / (hi - lo) * 255).astype(np.uint8))


IMAGES = smooth_images(8)
MANY = smooth_images(64, seed=1)


def constant(value: int, n: int = 64, channels: int = 3) -> torch.Tensor:
    return torch.full((n, channels, 32, 32), value, dtype=torch.uint8)


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


# --- the registry ---------------------------------------------------------------------------------------

def test_registry_covers_the_19_and_says_why_for_the_rest():
    assert len(C.BENCHMARK_15) == 15 and len(C.EXTRA_4) == 4
    everything = set(C.BENCHMARK_15) | set(C.EXTRA_4)
    assert set(C.CORRUPTIONS) | set(C.LEFT_OUT) == everything
    assert not set(C.CORRUPTIONS) & set(C.LEFT_OUT)
    assert set(C.LEFT_OUT) == {"frost", "spatter"}
    for reasons in (C.LEFT_OUT, C.LEFT_OUT_GRAYSCALE):
        assert all(isinstance(why, str) and len(why) > 40 for why in reasons.values())
    assert all(len(consts) == 5 for _, consts in C.CORRUPTIONS.values())
    with pytest.raises(ValueError, match="frost.*photographs"):
        C.corrupt(IMAGES, "frost", 1)
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corrupt(IMAGES, "rain", 1)


def test_cifar_constants_not_imagenet_ones():
    consts = {name: c for name, (_, c) in C.CORRUPTIONS.items()}
    assert consts["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert consts["shot_noise"] == (500, 250, 100, 75, 50)
    assert consts["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert consts["contrast"] == (0.75, 0.5, 0.4, 0.3, 0.15)
    assert consts["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert [len(z) for z in consts["zoom_blur"]] == [7, 12, 16, 21, 26]  # np.arange(1, 1.06, .01) has 1.06
    assert consts["zoom_blur"][0][-1] == pytest.approx(1.06) and consts["zoom_blur"][4][-1] == pytest.approx(1.25)
    assert consts["elastic_transform"][1] == pytest.approx((1.6, 6.4, 2.24))
    assert consts["motion_blur"][4] == (9, 2.5) and consts["snow"][4][4:6] == (14, 12)


# --- every implemented corruption ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(C.CORRUPTIONS))
def test_shape_dtype_determinism_and_change(name):
    fn = C.CORRUPTIONS[name][0]
    for s in (1, 5):
        out = C.corrupt(IMAGES, name, s, seed=3)
        assert out.shape == IMAGES.shape and out.dtype == torch.uint8
        assert torch.equal(out, C.corrupt(IMAGES, name, s, seed=3))
        assert not torch.equal(out, IMAGES)
        assert torch.equal(fn(IMAGES.float() / 255, s, 7), fn(IMAGES, s, np.random.default_rng(7)))
    other_seed = C.corrupt(IMAGES, name, 5, seed=4)
    assert torch.equal(other_seed, C.corrupt(IMAGES, name, 5, seed=3)) == (name in SEEDLESS)
    with pytest.raises(ValueError, match="severity"):
        fn(IMAGES, 6, 0)


@pytest.mark.parametrize("name", sorted(set(C.CORRUPTIONS) - NOT_MONOTONE))
def test_distortion_grows_with_severity(name):
    d = [mean_abs_diff(C.corrupt(MANY, name, s, seed=1), MANY) for s in SEVS]
    if name == "motion_blur":  # severities 3 and 4 differ only in taps of weight exp(-49/8): equal up to the angles
        assert d[0] < d[1] < d[2] < d[4] and d[3] == pytest.approx(d[2], rel=0.05)
    else:
        assert all(b > a for a, b in zip(d, d[1:])), d


def test_non_monotone_ones_still_differ_by_severity():
    for name in NOT_MONOTONE:
        outs = [C.corrupt(MANY, name, s, seed=1) for s in SEVS]
        assert all(not torch.equal(a, b) for a, b in zip(outs, outs[1:]))


# --- noise: the formulas, statistically ------------------------------------------------------------------

QUANT_VAR = 1 / 12 / 255 ** 2  # truncation to uint8 adds U(−1, 0)/255


@pytest.mark.parametrize("severity", SEVS)
def test_gaussian_noise_matches_its_sigma(severity):
    sigma = C.CORRUPTIONS["gaussian_noise"][1][severity - 1]
    x = constant(128)
    diff = (C.corrupt(x, "gaussian_noise", severity, seed=0).double() - 128) / 255
    assert diff.std().item() == pytest.approx(math.sqrt(sigma ** 2 + QUANT_VAR), rel=0.02)
    assert diff.mean().item() == pytest.approx(-0.5 / 255, abs=0.001)  # unbiased noise, then truncation


def test_shot_and_speckle_noise_variance_and_impulse_rate():
    x = constant(128)
    p = 128 / 255
    for s, lam in zip(SEVS, C.CORRUPTIONS["shot_noise"][1]):
        got = C.corrupt(x, "shot_noise", s, seed=0).double() / 255
        assert got.var().item() == pytest.approx(p / lam + QUANT_VAR, rel=0.05)
    for s, c in zip(SEVS, C.CORRUPTIONS["speckle_noise"][1]):
        got = C.corrupt(x, "speckle_noise", s, seed=0).double() / 255
        assert got.std().item() == pytest.approx(math.sqrt((p * c) ** 2 + QUANT_VAR), rel=0.02)
    for s, amount in zip(SEVS, C.CORRUPTIONS["impulse_noise"][1]):
        got = C.corrupt(x, "impulse_noise", s, seed=0)
        assert ((got == 0) | (got == 255) | (got == 128)).all()
        for value in (0, 255):  # salt and pepper half each
            assert (got == value).double().mean().item() == pytest.approx(amount / 2, rel=0.1)


# --- exact formulas on hand-built images -------------------------------------------------------------

def test_contrast_exact():
    chan = [[0, 100], [200, 255]]
    img = torch.tensor([chan, [[7, 7], [7, 7]], [[30, 60], [90, 120]]], dtype=torch.uint8)[None]
    for s, c in zip(SEVS, C.CORRUPTIONS["contrast"][1]):
        out = C.corrupt(img, "contrast", s)[0]
        for k in range(3):
            vals = [v / 255 for v in img[0, k].flatten().tolist()]
            m = sum(vals) / 4
            expected = [math.floor(min(max((v - m) * c + m, 0), 1) * 255) for v in vals]
            assert out[k].flatten().tolist() == expected


def test_brightness_exact_and_hue_kept():
    # HSV value + c keeps hue and saturation: RGB scaled by min(V + c, 1) / V; black becomes grey c
    pixels = [(200, 100, 50), (0, 0, 0), (255, 128, 0), (250, 250, 250), (13, 29, 47), (90, 181, 44)]
    img = torch.tensor(pixels, dtype=torch.uint8).T.reshape(1, 3, 2, 3).contiguous()
    for s, c in zip(SEVS, C.CORRUPTIONS["brightness"][1]):
        out = C.corrupt(img, "brightness", s)[0].reshape(3, -1).T.tolist()
        for got, rgb in zip(out, pixels):
            v = max(rgb) / 255
            top = min(v + c, 1.0)  # the brightest channel (and black's every channel) is the new value itself
            scaled = [top if q == max(rgb) else q / 255 * top / v for q in rgb]
            # the test's other channels sit on no rounding edge, so any faithful arithmetic floors them alike
            assert v + c >= 1 or all(q in (0, max(rgb)) or abs(f * 255 - round(f * 255)) > 1e-6
                                     for q, f in zip(rgb, scaled))
            assert got == [math.floor(min(f, 1.0) * 255) for f in scaled], (s, rgb)
    grey = torch.tensor([[[[0, 40], [200, 250]]]], dtype=torch.uint8)
    out = C.corrupt(grey, "brightness", 5)
    assert out.flatten().tolist() == [math.floor(min(v / 255 + 0.3, 1) * 255) for v in (0, 40, 200, 250)]


def test_jpeg_quality_ordering_and_pil_equality():
    from PIL import Image
    import io

    errors = [mean_abs_diff(C.corrupt(MANY, "jpeg_compression", s), MANY) for s in SEVS]
    assert all(b > a for a, b in zip(errors, errors[1:]))
    buf = io.BytesIO()
    Image.fromarray(IMAGES[0].permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=58)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue()))).transpose(2, 0, 1)
    assert np.array_equal(C.corrupt(IMAGES[:1], "jpeg_compression", 3)[0].numpy(), ref)


# --- the library operations, against their references ----------------------------------------------------

def test_pixelate_is_pil_box_resampling():
    from PIL import Image

    x = np.random.default_rng(1).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    for s, c in zip(SEVS, C.CORRUPTIONS["pixelate"][1]):
        side = int(32 * c)
        ref = np.stack([np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((side, side), Image.BOX)
                                   .resize((32, 32), Image.BOX)).transpose(2, 0, 1) for im in x])
        assert np.array_equal(C.corrupt(x, "pixelate", s).numpy(), ref)


def test_clipped_zoom_is_scipy_zoom():
    x = (np.random.default_rng(2).random((4, 3, 32, 32))).astype(np.float32)
    for z in (1.0, 1.06, 1.13, 1.25, 1.75, 2.25):
        ch = math.ceil(32 / z)
        top = (32 - ch) // 2
        ref = ndimage.zoom(x[..., top:top + ch, top:top + ch], (1, 1, z, z), order=1)
        trim = (ref.shape[-1] - 32) // 2
        np.testing.assert_allclose(_core.clipped_zoom(x, z), ref[..., trim:trim + 32, trim:trim + 32], atol=2e-7)


def test_glass_shuffle_is_the_original_loop():
    rng = np.random.default_rng(3)
    u = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    d = rng.integers(-1, 1, (2, 2, 32, 32))
    got = blur.glass_shuffle(u, d[:, 0], d[:, 1])
    for n in range(2):
        x = u[n].transpose(1, 2, 0).copy()
        for h in range(31, 1, -1):
            for w in range(31, 1, -1):
                hp, wp = h + d[n, 1, h, w], w + d[n, 0, h, w]
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]  # make_cifar_c.py's statement, numpy views and all
        assert np.array_equal(got[n], x.transpose(2, 0, 1))


def test_magick_motion_blur_direction_and_flat_images():
    flat = np.full((1, 3, 32, 32), 77, np.uint8)
    assert (_core.magick_motion_blur(flat, 6, 2, np.array([13.0])) == 77).all()
    lines = np.zeros((2, 1, 32, 32), np.uint8)
    lines[:, :, ::4, :] = 200  # horizontal lines
    out = _core.magick_motion_blur(lines, 6, 2, np.array([0.0, 90.0]))
    assert np.array_equal(out[0], lines[0])  # 0°: along the lines, nothing changes
    assert not np.array_equal(out[1], lines[1]) and (out[1][0, 1] > 0).all()  # 90°: smeared downwards


def test_warp_affine_identity_and_shift_with_reflect101_border():
    img = np.random.default_rng(4).random((2, 3, 32, 32)).astype(np.float32)
    maps = np.array([[[1, 0, 0], [0, 1, 0]], [[1, 0, 2], [0, 1, -1]]], dtype=np.float64)
    out = digital.warp_affine(img, maps)
    assert np.array_equal(out[0], img[0])
    rows = np.arange(32) + 1
    rows[rows == 32] = 30  # reflect-101: past the last row comes the one before it
    assert np.array_equal(out[1], img[1][:, rows][:, :, np.abs(np.arange(32) - 2)])


def test_hsv_round_trip():
    x = np.random.default_rng(5).random((2, 3, 8, 8))
    np.testing.assert_allclose(_core.hsv2rgb(_core.rgb2hsv(x)), x, atol=1e-12)


# --- grey images -------------------------------------------------------------------------------------------

def test_grayscale_every_corruption_but_saturate():
    grey = smooth_images(4, channels=1)
    names = C.implemented(1)
    assert set(names) == set(C.CORRUPTIONS) - {"saturate"} and "saturate" in C.left_out(1)
    for name in names:
        out = C.corrupt(grey, name, 3, seed=0)
        assert out.shape == grey.shape and out.dtype == torch.uint8 and not torch.equal(out, grey)
    with pytest.raises(ValueError, match="RGB"):
        C.corrupt(grey, "saturate", 1)


# --- the official files ---------------------------------------------------------------------------------

def write_official(folder, names=("gaussian_noise",), k=6, labels=None, image_at=None):
    """A CIFAR-10-C folder in the real layout, k images per severity: rows (s − 1)·k + i hold
    ``image_at(s, i)`` (default: every pixel 10·s + i)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(k) % 10 if labels is None else np.asarray(labels)
    image_at = image_at or (lambda s, i: 10 * s + i)
    for name in names:
        arr = np.stack([np.full((32, 32, 3), image_at(s, i), np.uint8) for s in SEVS for i in range(k)])
        np.save(folder / f"{name}.npy", arr)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    return folder


def test_official_dir_and_loader_read_severity_major(tmp_path):
    assert C.official_dir(tmp_path, "cifar10") is None
    folder = write_official(tmp_path / "CIFAR-10-C")
    assert C.official_dir(tmp_path, "cifar10") == folder == C.official_dir(folder, "cifar10")
    assert C.official_dir(tmp_path, "cifar100") is None and C.official_dir(tmp_path, "fashion_mnist") is None
    images, labels = C.load_official(folder, "gaussian_noise", 3)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.uint8
    assert [int(im.unique()) for im in images] == [30 + i for i in range(6)]
    assert labels.tolist() == list(range(6))
    images, labels = C.load_official(folder, "gaussian_noise", 5, n=2)
    assert [int(im.unique()) for im in images] == [50, 51] and labels.tolist() == [0, 1]


def test_truncated_or_misshapen_official_file_is_one_clear_line(tmp_path):
    folder = write_official(tmp_path / "CIFAR-10-C")
    path = folder / "gaussian_noise.npy"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError) as err:
        C.load_official(folder, "gaussian_noise", 1)
    msg = str(err.value)
    assert "\n" not in msg and "truncated or corrupt" in msg and str(path) in msg and "delete" in msg
    np.save(path, np.zeros((7, 32, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"not uint8 \(5·n, 32, 32, 3\)"):
        C.load_official(folder, "gaussian_noise", 1)
    with pytest.raises(DatasetError, match="missing"):
        C.load_official(folder, "fog", 1)


# --- corruption_accuracy ---------------------------------------------------------------------------------

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def bright_is_class_1(x: torch.Tensor) -> torch.Tensor:
    """Logits of a two-class 'model': class 1 when the normalised image is brighter than the mean pixel."""
    m = x.mean(dim=(1, 2, 3))
    return torch.stack([-m, m], dim=1)


def test_corruption_accuracy_uses_official_files_when_present(tmp_path):
    k = 6
    labels = torch.ones(k, dtype=torch.int64)
    # odd severities bright (right), even ones dark (wrong): the severity-major layout shows in the result
    write_official(tmp_path / "CIFAR-10-C", labels=labels.numpy(), k=k, image_at=lambda s, i: 255 * (s % 2))
    got = C.corruption_accuracy(bright_is_class_1, constant(0, n=k), labels, MEAN, STD, dataset="cifar10",
                                root=tmp_path, names=["gaussian_noise", "frost"], batch_size=4)
    assert got["source"] == f"official CIFAR-10-C files at {tmp_path / 'CIFAR-10-C'}"
    assert got["corruption"] == {"gaussian_noise": {"1": 1.0, "2": 0.0, "3": 1.0, "4": 0.0, "5": 1.0}}
    assert got["corruption_mean_over"] == ["gaussian_noise"] and got["corruption_mean_acc"] == pytest.approx(0.6)
    assert "frost" in got["left_out"] and got["n_images"] == k
    with pytest.raises(DatasetError, match="does not match"):
        C.corruption_accuracy(bright_is_class_1, constant(0, n=k), 1 - labels, MEAN, STD, dataset="cifar10",
                              root=tmp_path, names=["gaussian_noise"])


def test_corruption_accuracy_procedural_otherwise(tmp_path):
    images, labels = smooth_images(6), torch.tensor([0, 1, 0, 1, 1, 0])
    got = C.corruption_accuracy(bright_is_class_1, images, labels, MEAN, STD, dataset="cifar10", root=tmp_path,
                                n_images=4, batch_size=3)
    assert got["source"].startswith("procedural") and "not the published CIFAR-10-C files" in got["source"]
    assert set(got["corruption"]) == set(C.CORRUPTIONS) and set(got["left_out"]) == {"frost", "spatter"}
    assert got["corruption_mean_over"] == [nm for nm in C.BENCHMARK_15 if nm != "frost"]
    assert got["n_images"] == 4
    for row in got["corruption"].values():
        assert list(row) == ["1", "2", "3", "4", "5"] and all(a in (0, 0.25, 0.5, 0.75, 1) for a in row.values())
    means = [sum(got["corruption"][nm].values()) / 5 for nm in got["corruption_mean_over"]]
    assert got["corruption_mean_acc"] == pytest.approx(sum(means) / len(means))
    again = C.corruption_accuracy(bright_is_class_1, images, labels, MEAN, STD, dataset="cifar10", root=tmp_path,
                                  n_images=4, batch_size=1000, names=["snow", "fog"], severities=(2, 5))
    assert again["corruption"] == {nm: {s: got["corruption"][nm][s] for s in ("2", "5")} for nm in ("snow", "fog")}
    import json
    json.dumps(got)


def test_corruption_accuracy_grayscale_dataset():
    grey = smooth_images(4, channels=1)
    got = C.corruption_accuracy(bright_is_class_1, grey, torch.tensor([0, 1, 1, 0]), (0.2,), (0.3,),
                                dataset="fashion_mnist", root=None, names=["saturate", "fog"], severities=(1,))
    assert "no published files exist for fashion_mnist" in got["source"]
    assert list(got["corruption"]) == ["fog"] and "saturate" in got["left_out"]
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corruption_accuracy(bright_is_class_1, grey, torch.zeros(4), (0.2,), (0.3,), dataset="fashion_mnist",
                              root=None, names=["rain"])


def test_plot_corruptions_writes_a_png_atomically(tmp_path):
    result = {"corruption": {"gaussian_noise": {str(s): 0.9 - 0.1 * s for s in SEVS},
                             "saturate": {str(s): 0.8 for s in SEVS}},
              "corruption_mean_acc": 0.6, "corruption_mean_over": ["gaussian_noise"]}
    path = tmp_path / "eval" / "corruption.png"
    C.plot_corruptions(result, path, "cifar10 / resnet18: corruptions")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["corruption.png"]
