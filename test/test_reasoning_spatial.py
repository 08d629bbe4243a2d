"""Every reasoning operation against ground truth computed independently in the test.

Scenes are built on a table seen by a camera pitched down: each object has table coordinates (right, height,
forward); its optical centre is right * x + (height - camera height) * up + forward * fwd with the unit
vectors written out with trigonometry. References are computed from the table coordinates.
"""

import itertools
import math

import numpy as np
import pytest

from n3d_ros.backends.tabletop import TabletopBackend
from n3d_ros.core.scene import make_scene
from n3d_ros.core.types import Box3D
from n3d_ros.reasoning.questions import ParsedQuestion, parse_question
from n3d_ros.reasoning.spatial import answer_question

CAMERA_HEIGHT = 0.6
COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["box", "cylinder", "sphere"]


def _axes(pitch):
    up = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])
    forward = np.array([0.0, -math.sin(pitch), math.cos(pitch)])
    return np.array([1.0, 0.0, 0.0]), up, forward


def make_table_scene(seed, n=5, pitch_deg=35.0, with_gravity=True):
    """(boxes, table coordinates (n, 3) = right, height of centre, forward)."""
    rng = np.random.default_rng(seed)
    right, up, forward = _axes(math.radians(pitch_deg))
    boxes, table = [], []
    # well-separated coordinates (>= 3 cm apart on every axis) so that no comparison is a tie by accident
    rights = rng.permutation(np.arange(-0.3, 0.31, 0.06))[:n]
    forwards = rng.permutation(np.arange(0.6, 1.3, 0.05))[:n]
    heights = rng.permutation(np.arange(0.02, 0.3, 0.03))[:n]
    sizes = rng.uniform(0.04, 0.2, size=(n, 3))
    for i in range(n):
        r, h, f = rights[i], heights[i], forwards[i]
        centre = r * right + (h - CAMERA_HEIGHT) * up + f * forward
        color, shape = COLORS[i % len(COLORS)], SHAPES[i % len(SHAPES)]
        attributes = {"color": color, "shape": shape}
        if with_gravity:
            attributes["support_up"] = up.tolist()
        boxes.append(Box3D(f"{color} {shape}", centre, sizes[i], id=i, attributes=attributes))
        table.append((r, h, f))
    return boxes, np.array(table)


def ask(question, boxes, **kwargs):
    parsed = parse_question(question)
    assert parsed is not None, question
    answer = answer_question(parsed, boxes, **kwargs)
    assert answer.path == "geometry"
    return answer


@pytest.mark.parametrize("seed", range(4))
def test_centre_distance_between_every_pair(seed):
    boxes, _ = make_table_scene(seed)
    for a, b in itertools.permutations(boxes, 2):
        answer = ask(f"How far is the {a.label} from the {b.label}?", boxes)
        expected = math.dist(a.center.tolist(), b.center.tolist())
        assert answer.success and answer.unit == "m"
        assert answer.value == pytest.approx(expected, abs=1e-9)
        assert f"{expected:.2f} m" in answer.text
        assert answer.objects == [a, b]
        assert answer.reasoning


@pytest.mark.parametrize("seed", range(2))
def test_distance_from_the_camera(seed):
    boxes, _ = make_table_scene(seed)
    for box in boxes:
        answer = ask(f"How far away is the {box.label}?", boxes)
        assert answer.value == pytest.approx(math.sqrt(sum(c * c for c in box.center)))


def test_surface_distance_of_axis_aligned_boxes():
    boxes, _ = make_table_scene(7, with_gravity=False)
    for a, b in itertools.permutations(boxes, 2):
        gaps = [max(0.0, abs(a.center[k] - b.center[k]) - (a.size[k] + b.size[k]) / 2) for k in range(3)]
        answer = ask(f"What is the gap between the {a.label} and the {b.label}?", boxes)
        assert answer.value == pytest.approx(math.sqrt(sum(g * g for g in gaps)), abs=1e-9)
        assert answer.value <= math.dist(a.center, b.center)


def _truth_dimensions(scene, obj):
    """(width, height, depth) of a rendered upright solid: its footprint extent along the camera's horizontal
    right and forward, computed in the table frame from the scene's pose, and its height."""
    rot = scene.optical_from_table[:3, :3]
    forward = np.array([rot[2, 0], rot[2, 1], 0.0])  # optical z in table coordinates, made horizontal
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    pose, shape = obj.attributes["pose_table"], obj.attributes["shape"]
    if shape == "box":
        c, s = math.cos(pose["yaw"]), math.sin(pose["yaw"])
        axis_x, axis_y = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
        extent = [abs(e @ axis_x) * pose["size_x"] + abs(e @ axis_y) * pose["size_y"] for e in (right, forward)]
        return extent[0], pose["height"], extent[1]
    diameter = 2 * pose["radius"]
    return diameter, (pose["height"] if shape == "cylinder" else diameter), diameter


@pytest.fixture(scope="module")
def rendered():
    """Rendered tabletop scenes (camera pitched 30-42 deg) and the tabletop backend's boxes for them."""
    scenes = {seed: make_scene(seed) for seed in (1, 3, 8)}
    backend = TabletopBackend()
    return {seed: (scene, backend.detect(scene.frame).boxes) for seed, scene in scenes.items()}


@pytest.mark.parametrize("seed", (1, 3, 8))
def test_dimensions_and_volume(rendered, seed):
    # a pitched camera's optical box mixes height and depth: the answers must be the objects' true ones
    scene, boxes = rendered[seed]
    assert len(boxes) == len(scene.objects)
    for obj in scene.objects:
        color = obj.attributes["color"]
        w, h, d = _truth_dimensions(scene, obj)
        tall = ask(f"How tall is the {color} object?", boxes)
        assert tall.success and tall.value == pytest.approx(h, abs=0.008), (obj.label, h, obj.size)
        assert ask(f"How wide is the {color} object?", boxes).value == pytest.approx(w, abs=0.015)
        assert ask(f"How deep is the {color} object?", boxes).value == pytest.approx(d, abs=0.02)
        size = ask(f"How big is the {color} object?", boxes)
        assert size.unit == "m^3" and size.value == pytest.approx(w * h * d, rel=0.35)
        assert f"{tall.value:.2f} m tall" in size.text


def test_dimensions_without_measurements():
    # no gravity: N3D's convention, sizes along optical x, y, z (spec section 6: height = sy)
    boxes, _ = make_table_scene(3, with_gravity=False)
    for box in boxes:
        w, h, d = (float(s) for s in box.size)
        assert ask(f"How tall is the {box.label}?", boxes).value == pytest.approx(h)
        assert ask(f"How wide is the {box.label}?", boxes).value == pytest.approx(w)
        assert ask(f"How deep is the {box.label}?", boxes).value == pytest.approx(d)
        size = ask(f"How big is the {box.label}?", boxes)
        assert size.value == pytest.approx(w * h * d) and f"{h:.2f} m tall" in size.text
    # gravity known, nothing measured: the box solid's extent along up, from its eight corners
    boxes, _ = make_table_scene(3)
    for box in boxes:
        up = np.array(box.attributes["support_up"])
        corners = np.array([box.center + np.array([sx, sy, sz]) * box.size / 2
                            for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        height = float((corners @ up).max() - (corners @ up).min())
        assert ask(f"How tall is the {box.label}?", boxes).value == pytest.approx(height)


RELATION_REFERENCE = {  # relation -> (table axis, A's coordinate minus B's must have this sign)
    "to the left of": (0, -1), "to the right of": (0, 1), "above": (1, 1), "below": (1, -1),
    "in front of": (2, -1), "behind": (2, 1),
}


@pytest.mark.parametrize("seed", range(3))
def test_relations_use_the_table_frame_and_the_viewpoint(seed):
    boxes, table = make_table_scene(seed)
    for (i, a), (j, b) in itertools.permutations(enumerate(boxes), 2):
        for words, (axis, sign) in RELATION_REFERENCE.items():
            expected = sign * (table[i, axis] - table[j, axis]) > 0
            answer = ask(f"Is the {a.label} {words} the {b.label}?", boxes)
            assert answer.success
            assert answer.value == (1.0 if expected else 0.0), (words, a.label, b.label)
            assert answer.text.startswith(f"That is {expected}")
            opposite = ask(f"Is the {a.label} {words} the {b.label} as seen from the opposite side?", boxes)
            flipped = expected if axis == 1 else not expected  # above/below do not change
            assert opposite.value == (1.0 if flipped else 0.0), (words, "opposite")


def test_above_uses_gravity_when_the_boxes_carry_it():
    right, up, forward = _axes(math.radians(40))
    near = Box3D("red box", 0.0 * right + (0.05 - CAMERA_HEIGHT) * up + 0.6 * forward, [0.1] * 3,
                 attributes={"color": "red", "support_up": up.tolist()})
    far = Box3D("blue box", 0.0 * right + (0.05 - CAMERA_HEIGHT) * up + 1.2 * forward, [0.1] * 3,
                attributes={"color": "blue", "support_up": up.tolist()})
    # same height on the table: neither is above the other
    answer = ask("Is the blue box above the red box?", [near, far])
    assert answer.value == 0.0 and "level" in answer.text
    # without gravity the camera's up is used, and in the image the far box is higher
    for box in (near, far):
        del box.attributes["support_up"]
    assert far.center[1] < near.center[1]
    assert ask("Is the blue box above the red box?", [near, far]).value == 1.0
    # an explicit up vector wins over the camera
    assert ask("Is the blue box above the red box?", [near, far], up=up).value == 0.0


def test_relation_list():
    boxes, table = make_table_scene(5)
    for j, ref in enumerate(boxes):
        answer = ask(f"What is to the left of the {ref.label}?", boxes)
        expected = {boxes[i].id for i in range(len(boxes)) if table[i, 0] < table[j, 0]}
        assert answer.value == len(expected)
        assert {b.id for b in answer.objects if b is not ref} == expected
        if not expected:
            assert answer.text.startswith("Nothing is to the left of")


@pytest.mark.parametrize("seed", (1, 3, 8))
def test_size_comparison_relations(rendered, seed):
    scene, boxes = rendered[seed]
    for a, b in itertools.permutations(scene.objects, 2):
        ha, hb = _truth_dimensions(scene, a)[1], _truth_dimensions(scene, b)[1]
        question = f"Is the {a.attributes['color']} object taller than the {b.attributes['color']} object?"
        if abs(ha - hb) > 0.02:  # beyond the measurement error
            assert ask(question, boxes).value == float(ha > hb), (a.label, ha, b.label, hb)
        va, vb = (np.prod(_truth_dimensions(scene, o)) for o in (a, b))
        if abs(va - vb) > 0.5 * max(va, vb):
            question = f"Is the {a.attributes['color']} object bigger than the {b.attributes['color']} object?"
            assert ask(question, boxes).value == float(va > vb)
    heights = sorted((_truth_dimensions(scene, o)[1], o.attributes["color"]) for o in scene.objects)
    if heights[-1][0] - heights[-2][0] > 0.02:
        assert ask("Which object is the tallest?", boxes).objects[0].attributes["color"] == heights[-1][1]
    if heights[1][0] - heights[0][0] > 0.02:
        assert ask("Which object is the shortest?", boxes).objects[0].attributes["color"] == heights[0][1]
    # differences under 1 % of volume or 5 mm of height are ties, answered False with the reason
    flat = [Box3D("red box", [-0.2, 0.1, 1.0], [0.1, 0.1, 0.1], attributes={"color": "red"}),
            Box3D("blue box", [0.2, 0.1, 1.0], [0.1, 0.1008, 0.1], attributes={"color": "blue"})]
    tie = ask("Is the blue box taller than the red box?", flat)
    assert tie.value == 0.0 and "level" in tie.text
    assert ask("Is the blue box bigger than the red box?", flat).value == 0.0


def _vertical_extent(box):
    """Extent of the box solid along its support_up, from its eight corners."""
    up = np.array(box.attributes["support_up"])
    corners = np.array([box.center + np.array([sx, sy, sz]) * box.size / 2
                        for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    return float((corners @ up).max() - (corners @ up).min())


SUPERLATIVES = {  # question word -> key over (box, table row), and whether the largest key wins
    "closest to the camera": (lambda b, t: math.sqrt(sum(c * c for c in b.center)), False),
    "farthest": (lambda b, t: math.sqrt(sum(c * c for c in b.center)), True),
    "largest": (lambda b, t: b.size[0] * b.size[1] * b.size[2], True),
    "smallest": (lambda b, t: b.size[0] * b.size[1] * b.size[2], False),
    "tallest": (lambda b, t: _vertical_extent(b), True),
    "shortest": (lambda b, t: _vertical_extent(b), False),
    "leftmost": (lambda b, t: t[0], False),
    "rightmost": (lambda b, t: t[0], True),
    # heights are reported relative to the camera (the reasoning knows the table's normal, not its offset)
    "highest": (lambda b, t: t[1] - CAMERA_HEIGHT, True),
    "lowest": (lambda b, t: t[1] - CAMERA_HEIGHT, False),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("words", sorted(SUPERLATIVES))
def test_superlatives(seed, words):
    boxes, table = make_table_scene(seed, n=6)
    key, biggest = SUPERLATIVES[words]
    ranked = sorted(zip(boxes, table), key=lambda bt: key(*bt), reverse=biggest)
    answer = ask(f"Which object is the {words}?", boxes)
    assert answer.success and answer.objects == [ranked[0][0]], answer.text
    assert answer.value == pytest.approx(key(*ranked[0]))


def test_superlative_among_a_phrase_and_from_a_reference():
    boxes, _ = make_table_scene(11, n=6)
    spheres = [b for b in boxes if b.attributes["shape"] == "sphere"]
    answer = ask("Which sphere is the largest?", boxes)
    assert answer.objects == [max(spheres, key=lambda b: b.volume)]
    ref = boxes[0]
    others = [b for b in boxes if b is not ref]
    answer = ask(f"Which object is nearest to the {ref.label}?", boxes)
    assert answer.objects == [min(others, key=lambda b: math.dist(b.center, ref.center))]
    answer = ask(f"Which is closer, the {boxes[1].label} or the {boxes[2].label}?", boxes)
    assert answer.objects == [min(boxes[1:3], key=lambda b: np.linalg.norm(b.center))]


def test_ties_are_reported_not_broken():
    a = Box3D("red box", [-0.3, 0.1, 1.0], [0.1, 0.1, 0.1], id=0, attributes={"color": "red"})
    b = Box3D("blue box", [0.3, 0.1, 1.0], [0.1, 0.1, 0.1], id=1, attributes={"color": "blue"})
    c = Box3D("green box", [0.0, 0.1, 1.5], [0.1, 0.1, 0.1], id=2, attributes={"color": "green"})
    answer = ask("Which object is closest to the camera?", [a, b, c])
    assert answer.success and "tie" in answer.text and {o.id for o in answer.objects} == {0, 1}
    answer = ask("What is the largest object?", [a, b, c])
    assert {o.id for o in answer.objects} == {0, 1, 2}
    # a yes/no relation on a tie is False with the reason
    answer = ask("Is the red box in front of the blue box?", [a, b, c])
    assert answer.value == 0.0 and "level" in answer.text
    # a phrase selector on a tie stays ambiguous
    answer = ask("Where is the nearest box?", [a, b, c])
    assert not answer.success and "ambiguous" in answer.text


def test_counting():
    boxes, _ = make_table_scene(1, n=6)
    assert ask("How many objects are there?", boxes).value == 6
    for color in COLORS:
        n = sum(b.attributes["color"] == color for b in boxes)
        assert ask(f"How many {color} objects are there?", boxes).value == n
    for shape in SHAPES:
        answer = ask(f"How many {shape}s do you see?", boxes)
        assert answer.value == sum(b.attributes["shape"] == shape for b in boxes) and answer.unit == "count"
    zero = ask("How many white spheres are there?", boxes)
    assert zero.success and zero.value == 0 and "I see no white spheres" in zero.text


@pytest.mark.parametrize("seed", range(3))
def test_clock_direction_from_table_coordinates(seed):
    boxes, table = make_table_scene(seed)
    for (i, a), (j, b) in itertools.permutations(enumerate(boxes), 2):
        d_right, d_forward = table[j, 0] - table[i, 0], table[j, 2] - table[i, 2]
        # compass bearing, clockwise from forward; N3D angles run the other way
        bearing = math.degrees(math.atan2(d_right, d_forward)) % 360
        ccw = (360 - bearing) % 360
        hour = 12 - int(ccw // 30)
        answer = ask(f"If you are at the {a.label}, where will you find the {b.label}?", boxes)
        assert answer.value == hour, (a.label, b.label, bearing)
        assert f"{hour} o'clock" in answer.text


def test_where():
    boxes, table = make_table_scene(4)
    for box, (r, _, f) in zip(boxes, table):
        answer = ask(f"Where is the {box.label}?", boxes)
        assert answer.value == pytest.approx(np.linalg.norm(box.center))
        side = "right" if r >= 0 else "left"
        assert f"{abs(r):.2f} m {side} of the camera" in answer.text
        assert f"{f:.2f} m ahead" in answer.text


def test_missing_object():
    boxes, _ = make_table_scene(0)
    answer = ask("Where is the red mug?", boxes)
    assert not answer.success and answer.text == "I see no red mug."
    answer = ask("How far is the red box from the white sphere?", boxes)
    assert not answer.success and answer.text == "I see no white sphere."


def test_ambiguous_phrase_picks_nothing_unless_counting_or_superlative():
    boxes, _ = make_table_scene(0, n=6)  # colours repeat? no: six colours; make two red ones
    boxes[3].attributes["color"] = "red"
    boxes[3].label = "red box"
    boxes[0].label, boxes[0].attributes["shape"] = "red box", "box"
    answer = ask("Where is the red box?", boxes)
    assert not answer.success and "ambiguous" in answer.text
    assert {b.id for b in answer.objects} == {0, 3}
    assert ask("How many red boxes are there?", boxes).value == 2
    nearest = min((boxes[0], boxes[3]), key=lambda b: np.linalg.norm(b.center))
    assert ask("Which red box is the closest?", boxes).objects == [nearest]
    # a position word resolves the ambiguity
    left = min((boxes[0], boxes[3]), key=lambda b: b.center[0])
    assert ask("Where is the left red box?", boxes).objects == [left]
    assert ask("Where is object 3?", boxes).objects == [boxes[3]]


def test_unknown_categories_are_admitted_not_guessed():
    boxes = [Box3D("red object", [0.0, 0.1, 1.0], [0.1] * 3, id=0,
                   attributes={"color": "red", "category_known": False}),
             Box3D("blue object", [0.2, 0.1, 1.0], [0.1] * 3, id=1,
                   attributes={"color": "blue", "category_known": False})]
    answer = ask("Where is the red mug?", boxes)
    assert answer.success and answer.objects == [boxes[0]]
    assert "'mug'" in answer.text and "cannot verify" in answer.text
    answer = ask("Where is the mug?", boxes)
    assert not answer.success and "ambiguous" in answer.text
    answer = ask("How many mugs are there?", boxes)
    assert not answer.success and "cannot recognise object categories" in answer.text


def test_same_object_twice_is_refused():
    boxes, _ = make_table_scene(0)
    answer = ask(f"How far is the {boxes[0].label} from the {boxes[0].label}?", boxes)
    assert not answer.success and "same object" in answer.text


def test_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError):
        answer_question(ParsedQuestion("teleport", []), [])
