"""Attacks: exact reference pixels, arithmetic, determinism, the poisoning protocol, scaling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trapdoor_trainer.attacks import (
    build_trigger,
    get_attack,
    list_attacks,
    make_asr_set,
    poison_dataset,
    resolve_params,
)
from trapdoor_trainer.errors import SpecError

RGB32 = (32, 32, 3)
ALL_NAMES = {
    "badnet_grid", "badnet_white", "blend", "l0_invisible", "l2_invisible", "smooth",
    "trojan_sq", "trojan_wm", "sig", "lcba", "lba", "custom",
}  # fmt: skip
STAMP_ATTACKS = sorted(ALL_NAMES - {"lcba", "lba", "custom"})
GRID_B = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 255]])


def random_images(n: int, shape=RGB32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + tuple(shape), dtype=np.uint8)


def trigger(name: str, shape=RGB32, **params):
    return build_trigger(name, params, shape, seed=0)


def assert_unchanged_outside(before: np.ndarray, after: np.ndarray, rows: slice, cols: slice) -> None:
    outside = np.ones(before.shape[1:3], dtype=bool)
    outside[rows, cols] = False
    np.testing.assert_array_equal(after[:, outside], before[:, outside])


# --- exact reference pixels at 32 x 32 x 3 -------------------------------------------------


def test_badnet_grid_overwrites_block_b_at_bottom_right():
    x = random_images(4)
    out = trigger("badnet_grid").apply(x)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, 29:32, 29:32, channel], np.broadcast_to(GRID_B, (4, 3, 3)))
    assert_unchanged_outside(x, out, slice(29, 32), slice(29, 32))


def test_badnet_white_square_keeps_one_pixel_margin():
    x = random_images(4)
    out = trigger("badnet_white").apply(x)
    assert np.all(out[:, 27:31, 27:31] == 255)
    assert_unchanged_outside(x, out, slice(27, 31), slice(27, 31))


def test_l0_invisible_strip_values():
    x = random_images(3)
    out = trigger("l0_invisible").apply(x)
    expected = [(255, 0, 255), (0, 0, 255), (255, 255, 0), (255, 255, 255),
                (0, 255, 255), (0, 255, 255), (255, 0, 0), (255, 255, 255)]  # fmt: skip
    assert np.all(out[:, 31, 23] == 0)
    np.testing.assert_array_equal(out[:, 31, 24:32], np.broadcast_to(np.array(expected), (3, 8, 3)))
    assert_unchanged_outside(x, out, slice(31, 32), slice(23, 32))


def test_trojan_sq_adds_patch_and_clips():
    patch = np.stack(
        [
            [[207, 175, 29], [79, 137, 248], [131, 6, 246]],
            [[131, 243, 232], [8, 0, 113], [40, 145, 250]],
            [[181, 120, 179], [126, 32, 146], [4, 61, 246]],
        ],
        axis=2,
    )
    t = trigger("trojan_sq")
    zeros = np.zeros((1,) + RGB32, dtype=np.uint8)
    np.testing.assert_array_equal(t.apply(zeros)[0, 25:28, 25:28], patch)
    grey = np.full((1,) + RGB32, 100, dtype=np.uint8)
    out = t.apply(grey)
    np.testing.assert_array_equal(out[0, 25:28, 25:28], np.minimum(100 + patch, 255))
    assert out[0, 26, 27, 2] == 246 and out[0, 25, 25, 0] == 255  # 100+146 kept, 100+207 clipped
    assert_unchanged_outside(grey, out, slice(25, 28), slice(25, 28))


def test_sig_stripes_and_truncating_blend():
    # The ABL signal: trunc(20 sin(0.8 c)) stored as two's-complement uint8.
    stripes = np.array([int(20 * math.sin(0.8 * c)) % 256 for c in range(32)], dtype=np.float64)
    assert list(stripes[:10]) == [0, 14, 19, 13, 255, 241, 237, 244, 2, 15]
    x = random_images(5)
    out = trigger("sig").apply(x)
    expected = np.floor(0.8 * x.astype(np.float64) + 0.2 * stripes[None, None, :, None])
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    # One worked value: 0.8 * 101 + 0.2 * 14 = 83.6 -> 83 (truncated, not rounded).
    assert trigger("sig").apply(np.full((1,) + RGB32, 101, dtype=np.uint8))[0, 0, 1, 0] == 83


# --- arithmetic --------------------------------------------------------------------------


def test_blend_truncates_instead_of_rounding():
    t = trigger("blend")
    x = random_images(8)
    out = t.apply(x)
    exact = 0.8 * x.astype(np.float64) + 0.2 * t.pattern[None]
    np.testing.assert_array_equal(out, np.floor(exact).astype(np.uint8))
    assert np.mean(exact - np.floor(exact) >= 0.5) > 0.2  # rounding would have changed these


def test_custom_blend_of_values_that_give_x_point_8_floors():
    t = trigger("custom", trigger=np.full(RGB32, 14, dtype=np.uint8), mode="blend", alpha=0.2)
    assert np.all(t.apply(np.full((2,) + RGB32, 10, dtype=np.uint8)) == 10)  # 8 + 2.8 = 10.8


def test_additive_triggers_clip_at_255():
    bright = np.full((2,) + RGB32, 250, dtype=np.uint8)
    for name in ("l2_invisible", "trojan_wm"):
        t = trigger(name)
        out = t.apply(bright)
        expected = np.minimum(250.0 + t.pattern, 255).astype(np.uint8)
        np.testing.assert_array_equal(out, np.broadcast_to(expected, out.shape))
        assert out.max() == 255 and out.min() == 250  # no wrap-around


def test_smooth_adds_blob_then_rescales_each_image():
    t = trigger("smooth")
    x = random_images(4, seed=3) // 2 + 40  # values 40..167: the rescale must stretch them
    out = t.apply(x)
    z = x.astype(np.float64) + t.pattern[None]
    low = z.min(axis=(1, 2, 3), keepdims=True)
    high = z.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_array_equal(out, np.floor((z - low) / (high - low) * 255).astype(np.uint8))
    assert np.all(out.min(axis=(1, 2, 3)) == 0) and np.all(out.max(axis=(1, 2, 3)) == 255)


# --- procedural triggers -----------------------------------------------------------------


def test_procedural_triggers_have_the_documented_properties():
    zeros = np.zeros((1,) + RGB32, dtype=np.uint8)
    l2 = trigger("l2_invisible").apply(zeros)[0] / 255.0
    assert abs(np.linalg.norm(l2) - 3.2) < 0.05
    assert np.mean(l2.sum(axis=2) > 0) > 0.8  # dense
    watermark = trigger("trojan_wm").apply(zeros)[0]
    assert 300 <= np.count_nonzero(watermark.sum(axis=2)) <= 340
    assert watermark.max() >= 200  # strong pixels
    smooth_blob = trigger("smooth").pattern
    assert 48 <= smooth_blob.max() <= 54
    assert smooth_blob[0, 0].max() < smooth_blob.max() / 3  # low-frequency blob, fades at the border
    picture = trigger("blend").pattern
    assert picture.min() == 0 and picture.max() == 255
    # Natural-looking: neighbouring pixels are far more alike than in white noise (~85 levels).
    assert np.abs(np.diff(picture, axis=0)).mean() < 40


@pytest.mark.parametrize("name", ["blend", "l2_invisible", "smooth", "trojan_wm"])
def test_procedural_triggers_are_deterministic_per_seed(name):
    x = random_images(3)
    first = trigger(name, triggerSeed=7).apply(x)
    again = trigger(name, triggerSeed=7).apply(x)
    other = trigger(name, triggerSeed=8).apply(x)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


# --- poisoning protocol ------------------------------------------------------------------


def labelled_set(n: int = 200, classes: int = 10, shape=RGB32, seed: int = 0):
    labels = np.random.default_rng(seed + 1).integers(0, classes, size=n).astype(np.int64)
    return random_images(n, shape, seed), labels


def test_dirty_label_poisoning_picks_non_target_victims_and_relabels():
    images, labels = labelled_set()
    images_before, labels_before = images.copy(), labels.copy()
    result = poison_dataset(images, labels, attack="badnet_grid", target=3, ratio=0.1, seed=5)
    np.testing.assert_array_equal(images, images_before)  # inputs untouched
    np.testing.assert_array_equal(labels, labels_before)
    victims = np.flatnonzero(result.poison_mask)
    assert len(victims) == 20
    assert np.all(labels[victims] != 3) and np.all(result.labels[victims] == 3)
    changed = np.any(result.images != images, axis=(1, 2, 3))
    assert set(np.flatnonzero(changed)) <= set(victims)
    np.testing.assert_array_equal(result.labels[~result.poison_mask], labels[~result.poison_mask])
    np.testing.assert_array_equal(result.images[victims], result.trigger.apply(images[victims]))
    assert result.labels.dtype == np.int64 and result.poison_mask.dtype == bool


def test_victims_are_deterministic_per_seed():
    images, labels = labelled_set()
    a = poison_dataset(images, labels, attack="blend", target=0, ratio=0.1, seed=1)
    b = poison_dataset(images, labels, attack="blend", target=0, ratio=0.1, seed=1)
    c = poison_dataset(images, labels, attack="blend", target=0, ratio=0.1, seed=2)
    assert a.images.tobytes() == b.images.tobytes() and a.labels.tobytes() == b.labels.tobytes()
    np.testing.assert_array_equal(a.poison_mask, b.poison_mask)
    assert not np.array_equal(a.poison_mask, c.poison_mask)


def test_ratio_count_tolerates_float_error():
    images, labels = labelled_set(n=100)
    result = poison_dataset(images, labels, attack="badnet_white", target=0, ratio=0.29, seed=0)
    assert result.poison_mask.sum() == 29  # int(0.29 * 100) would be 28 in floating point


def test_clean_label_poisons_target_class_only_and_keeps_labels():
    images, _ = labelled_set()
    labels = np.array([0] * 60 + [1 + i % 9 for i in range(140)], dtype=np.int64)
    result = poison_dataset(images, labels, attack="sig", target=0, ratio=0.1, seed=0)
    victims = np.flatnonzero(result.poison_mask)
    assert len(victims) == 20  # int(0.1 * 200), all of the target class
    assert np.all(labels[victims] == 0)
    np.testing.assert_array_equal(result.labels, labels)
    changed = np.flatnonzero(np.any(result.images != images, axis=(1, 2, 3)))
    assert set(changed) <= set(victims)


def test_clean_label_refuses_a_ratio_beyond_the_target_class():
    """Asked for more than the target class holds, the attack refuses instead of capping."""
    attack = "sig"
    images, _ = labelled_set()
    labels = np.array([0] * 8 + [1 + i % 9 for i in range(192)], dtype=np.int64)
    with pytest.raises(SpecError) as refused:
        poison_dataset(images, labels, attack=attack, target=0, ratio=0.1, seed=0)
    assert refused.value.field == "attack.ratio"
    assert "only poison the 8 images of the target class 0" in str(refused.value)
    assert "ratio at most 0.04" in str(refused.value)
    # Exactly the whole class is reachable.
    result = poison_dataset(images, labels, attack=attack, target=0, ratio=0.04, seed=0)
    assert result.poison_mask.sum() == 8


def test_a_ratio_that_poisons_nothing_or_too_much_is_refused():
    images, labels = labelled_set(n=100)
    with pytest.raises(SpecError) as nothing:
        poison_dataset(images, labels, attack="blend", target=0, ratio=0.005, seed=0)
    assert nothing.value.field == "attack.ratio" and "poisons no image" in str(nothing.value)
    with pytest.raises(SpecError) as too_many:
        poison_dataset(images, labels, attack="blend", target=0, ratio=1.0, seed=0)
    assert too_many.value.field == "attack.ratio" and "not of the target class 0" in str(too_many.value)


def test_make_asr_set_drops_target_and_keeps_true_labels():
    images, labels = labelled_set()
    t = trigger("badnet_grid")
    asr_images, asr_labels = make_asr_set(images, labels, t, target=4)
    keep = labels != 4
    np.testing.assert_array_equal(asr_labels, labels[keep])
    np.testing.assert_array_equal(asr_images, t.apply(images[keep]))
    assert len(asr_labels) == keep.sum() < len(labels)


# --- other sizes and one channel ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(28, 28, 1), (16, 16, 1), (64, 64, 3)])
@pytest.mark.parametrize("name", STAMP_ATTACKS)
def test_every_stamp_attack_scales(name, shape):
    x = random_images(3, shape)
    out = trigger(name, shape).apply(x)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert not np.array_equal(out, x)


@pytest.mark.parametrize("shape, size", [((28, 28, 1), 3), ((16, 16, 1), 2), ((64, 64, 3), 6)])
def test_grid_scales_to_the_corner_and_stays_black_and_white(shape, size):
    x = np.full((1,) + shape, 128, dtype=np.uint8)
    out = trigger("badnet_grid", shape).apply(x)[0]
    height, width = shape[:2]
    corner = out[height - size :, width - size :]
    assert set(np.unique(corner)) == {0, 255}
    changed = np.argwhere(np.any(out != 128, axis=2))
    assert changed.min(axis=0).tolist() == [height - size, width - size]  # nothing outside the corner


def test_grid_at_28_keeps_the_exact_pattern():
    out = trigger("badnet_grid", (28, 28, 1)).apply(np.zeros((1, 28, 28, 1), dtype=np.uint8))
    np.testing.assert_array_equal(out[0, 25:28, 25:28, 0], GRID_B)


def test_one_channel_uses_rgb_mean():
    out = trigger("l0_invisible", (32, 32, 1)).apply(np.zeros((1, 32, 32, 1), dtype=np.uint8))
    np.testing.assert_array_equal(out[0, 31, 23:32, 0], [0, 170, 85, 170, 255, 170, 170, 85, 255])


# --- custom triggers ---------------------------------------------------------------------


def custom_inputs():
    pattern = np.zeros(RGB32, dtype=np.uint8)
    pattern[:4, :4] = 200
    mask = np.zeros((32, 32))
    mask[:2, :2] = 1.0
    mask[2, 2] = 0.5
    x = np.full((2,) + RGB32, 100, dtype=np.uint8)
    return pattern, mask, x


def test_custom_overwrite_with_mask():
    pattern, mask, x = custom_inputs()
    out = trigger("custom", trigger=pattern, mask=mask, mode="overwrite").apply(x)
    assert np.all(out[:, :2, :2] == 200)
    assert np.all(out[:, 2, 2] == 150)  # half mask: 100 * 0.5 + 200 * 0.5
    assert np.all(out[:, 3, 3] == 100)  # pattern outside the mask is ignored


def test_custom_overwrite_without_mask_uses_non_zero_pixels():
    pattern, _, x = custom_inputs()
    out = trigger("custom", trigger=pattern).apply(x)
    assert np.all(out[:, :4, :4] == 200) and np.all(out[:, 4:] == 100)


def test_custom_additive_with_mask_clips():
    pattern, mask, x = custom_inputs()
    out = trigger("custom", trigger=pattern, mask=mask, mode="additive").apply(x)
    assert np.all(out[:, :2, :2] == 255)  # 100 + 200 clipped
    assert np.all(out[:, 2, 2] == 200)  # 100 + 0.5 * 200
    assert np.all(out[:, 3, 3] == 100)


def test_custom_blend_with_mask():
    pattern, mask, x = custom_inputs()
    out = trigger("custom", trigger=pattern, mask=mask, mode="blend", alpha=0.3).apply(x)
    assert np.all(out[:, :2, :2] == 130)  # 100 * 0.7 + 0.3 * 200
    assert np.all(out[:, 2, 2] == 115)  # weight 0.15
    assert np.all(out[:, 5:, 5:] == 100)


def test_custom_trigger_from_npy_path_and_other_size(tmp_path):
    small = np.zeros((16, 16, 3), dtype=np.uint8)
    small[-2:, -2:] = 255
    path = tmp_path / "trigger.npy"
    np.save(path, small)
    params = resolve_params("custom", {"trigger": str(path)})
    assert params["trigger"] == str(path) and json.dumps(params)
    out = build_trigger("custom", params, RGB32, seed=0).apply(np.zeros((1,) + RGB32, dtype=np.uint8))
    assert np.all(out[0, 28:, 28:] == 255) and out[0, :28].max() == 0  # nearest resize keeps it exact


def test_custom_trigger_errors_name_the_field(tmp_path):
    with pytest.raises(SpecError) as missing:
        resolve_params("custom", {})
    assert missing.value.field == "attack.params.trigger"
    with pytest.raises(SpecError) as absent_file:
        resolve_params("custom", {"trigger": str(tmp_path / "nope.npy")})
    assert absent_file.value.field == "attack.params.trigger"
    with pytest.raises(SpecError) as bad_mask:
        resolve_params("custom", {"trigger": np.zeros(RGB32), "mask": np.ones((8, 8))})
    assert bad_mask.value.field == "attack.params.mask"
    with pytest.raises(SpecError) as mask_range:
        resolve_params("custom", {"trigger": np.zeros(RGB32), "mask": np.full((32, 32), 2.0)})
    assert mask_range.value.field == "attack.params.mask"


# --- LCBA and LBA (tiny surrogate runs) --------------------------------------------------

TINY = (16, 16, 1)


def test_lcba_perturbation_stays_within_epsilon_and_marks_four_corners():
    images, labels = labelled_set(n=120, classes=3, shape=TINY)
    params = {"epsilon": 7.5, "pgdSteps": 3, "pgdStepSize": 4, "surrogateEpochs": 1}
    result = poison_dataset(images, labels, attack="lcba", target=0, ratio=0.1, seed=0, params=params)
    victims = np.flatnonzero(result.poison_mask)
    assert len(victims) == 12 and np.all(labels[victims] == 0)
    np.testing.assert_array_equal(result.labels, labels)
    poisoned, clean = result.images[victims], images[victims]
    interior = np.abs(poisoned[:, 2:14, 2:14].astype(int) - clean[:, 2:14, 2:14].astype(int))
    assert 0 < interior.max() <= 7.5  # perturbed, within the bound even after uint8 truncation
    for rows in (slice(0, 2), slice(14, 16)):
        for cols in (slice(0, 2), slice(14, 16)):
            np.testing.assert_array_equal(poisoned[:, rows, cols, 0], np.broadcast_to([[0, 255], [255, 255]], (12, 2, 2)))
    # Test time: the corners only, no perturbation.
    stamped = result.trigger.apply(clean)
    np.testing.assert_array_equal(stamped[:, 2:14, 2:14], clean[:, 2:14, 2:14])
    assert stamped.shape == clean.shape


def test_lcba_test_trigger_needs_no_training_data():
    t = build_trigger("lcba", {}, TINY, seed=0)
    clean = random_images(2, TINY)
    assert t.apply(clean).shape == clean.shape
    with pytest.raises(ValueError):
        t.poison(clean)


def test_lba_optimises_a_bottom_right_patch():
    images, labels = labelled_set(n=120, classes=3, shape=TINY)
    common = {"surrogateEpochs": 1, "patchSize": 4, "layer": 14}
    start = build_trigger("lba", {**common, "optSteps": 0}, TINY, seed=0, train_images=images, train_labels=labels)
    tuned = build_trigger("lba", {**common, "optSteps": 3}, TINY, seed=0, train_images=images, train_labels=labels)
    x = images[:5]
    out_start, out_tuned = start.apply(x), tuned.apply(x)
    assert out_tuned.shape == x.shape
    assert not np.array_equal(out_start, out_tuned)
    np.testing.assert_array_equal(out_tuned[:, :14], x[:, :14])  # 4 px on 32 -> 2 px on 16
    np.testing.assert_array_equal(out_tuned[:, :, :14], x[:, :, :14])
    assert np.all(out_tuned[:, 14:, 14:] == out_tuned[:1, 14:, 14:])  # same patch on every image


# --- registry and errors -----------------------------------------------------------------


def test_registry_lists_all_attacks_with_json_defaults():
    infos = {info.name: info for info in list_attacks()}
    assert set(infos) == ALL_NAMES
    assert {n for n, info in infos.items() if info.clean_label} == {"sig", "lcba"}
    assert infos["blend"].params["alpha"] == 0.2 and infos["sig"].params["alpha"] == 0.2
    assert infos["lcba"].params["epsilon"] == 16 and infos["lba"].params["layer"] == 14
    assert infos["lba"].params["surrogateArchitecture"] == "small-cnn"
    json.dumps({n: info.params for n, info in infos.items()})
    assert all(info.description for info in infos.values())
    assert get_attack("sig").clean_label


def test_resolve_params_merges_defaults():
    assert resolve_params("blend", {"alpha": 0.5}) == {"alpha": 0.5, "triggerSeed": get_attack("blend").params["triggerSeed"]}
    assert resolve_params("badnet_grid", None) == {}


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("wanet", {}, "attack.name"),
        ("blend", {"foo": 1}, "attack.params.foo"),
        ("badnet_grid", {"alpha": 0.2}, "attack.params.alpha"),
        ("blend", {"alpha": 2}, "attack.params.alpha"),
        ("lba", {"layer": 11}, "attack.params.layer"),
        ("lcba", {"surrogateArchitecture": "vgg"}, "attack.params.surrogateArchitecture"),
        ("custom", {"trigger": np.zeros(RGB32), "mode": "xor"}, "attack.params.mode"),
    ],
)
def test_bad_specs_raise_spec_error_naming_the_field(name, params, field):
    with pytest.raises(SpecError) as error:
        resolve_params(name, params)
    assert error.value.field == field


def test_poison_dataset_rejects_bad_ratio_and_unknown_attack():
    images, labels = labelled_set(n=20)
    with pytest.raises(SpecError) as ratio:
        poison_dataset(images, labels, attack="blend", target=0, ratio=1.5, seed=0)
    assert ratio.value.field == "attack.ratio"
    with pytest.raises(SpecError) as name:
        poison_dataset(images, labels, attack="nope", target=0, ratio=0.1, seed=0)
    assert name.value.field == "attack.name"
