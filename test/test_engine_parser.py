"""The turn-1 output parser: appendix vectors, the spec 5.2 failure modes, and fuzzed text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n3d_ros.engine.protocol.box_parser import parse_boxes

DEMO2 = "bbox_0=Bbox(person,519,587,394,500,278,254,199)\nbbox_1=Bbox(orange/tangerine,720,858,73,500,161,53,84)"
DEMO3 = "bbox_0=Bbox(person,275,483,61,500,316,468,390)"


def test_appendix_vectors():
    out = parse_boxes(DEMO2)
    assert [(b.id, b.label, b.bins) for b in out.boxes] == [
        (0, "person", (519, 587, 394, 500, 278, 254, 199)),
        (1, "orange/tangerine", (720, 858, 73, 500, 161, 53, 84)),
    ]
    assert out.skipped_lines == 0 and not out.truncated
    assert parse_boxes(DEMO3).boxes[0].bins == (275, 483, 61, 500, 316, 468, 390)


def test_bad_lines_are_skipped_one_by_one():
    text = "\n".join([
        "bbox_1=Bbox(chair,100,200,300,500,10,20,30)",  # no bbox_0: still decoded (the demo would not)
        "bbox_2=Bbox(table,1,2,3,4,5,6)",  # 7 fields
        "bbox_3=Bbox(lamp,1,2,x,4,5,6,7)",  # non-numeric: only this line is lost (the demo dropped all)
        "Here are the boxes:",
        "bbox_4=Bbox( red mug ,  10, 20 ,30,500,1,2,3)",
        "bbox_1=Bbox(dup,1,2,3,4,5,6,7)",  # repeated id
        "bbox_5=Bbox(sofa,10,20,3",  # truncated by max_new_tokens
    ])
    out = parse_boxes(text)
    assert [(b.id, b.label) for b in out.boxes] == [(1, "chair"), (4, "red mug")]
    assert out.boxes[1].bins == (10, 20, 30, 500, 1, 2, 3)
    assert out.skipped_lines == 5 and out.truncated
    assert len(out.problems) == 5


def test_a_broken_line_does_not_swallow_the_next():
    # The demo's [^,]+ crosses newlines, so a broken line could eat the next one; lines stand alone here.
    text = "bbox_0=Bbox(cup,1,2,3\nbbox_1=Bbox(plate,4,5,6,500,7,8,9)"
    out = parse_boxes(text)
    assert [b.label for b in out.boxes] == ["plate"] and out.skipped_lines == 1 and not out.truncated


def test_empty_and_streamer_whitespace():
    assert parse_boxes("").boxes == [] and parse_boxes("").skipped_lines == 0
    spaced = "bbox_0=Bbox(hotair                            ballon,1,2,3,500,5,6,7)\n\n"
    assert parse_boxes(spaced).boxes[0].label == "hotair                            ballon"
    floats = parse_boxes("bbox_0=Bbox(box,1.0,2.5,3,500,-5,6,7)").boxes[0]
    assert floats.bins == (1.0, 2.5, 3.0, 500.0, -5.0, 6.0, 7.0)


labels = st.text(alphabet=st.characters(blacklist_characters=",()\n\r", blacklist_categories=("Cs",)),
                 min_size=1, max_size=20).filter(lambda s: s.strip())
bins = st.lists(st.integers(0, 999), min_size=7, max_size=7)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(labels, bins), max_size=8), st.lists(st.text(max_size=40), max_size=5), st.randoms())
def test_fuzz_valid_lines_survive_noise(boxes, noise, rnd):
    lines = [f"bbox_{i}=Bbox({label},{','.join(map(str, b))})" for i, (label, b) in enumerate(boxes)]
    noise_lines = [n.replace("\n", " ") for n in noise if not re.search(r"bbox_\d+\s*=\s*Bbox\(", n)]
    mixed = lines + noise_lines
    rnd.shuffle(mixed)
    out = parse_boxes("\n".join(mixed))
    got = {b.id: (b.label, b.bins) for b in out.boxes}
    assert got == {i: (label.strip(), tuple(map(float, b))) for i, (label, b) in enumerate(boxes)}
    assert out.skipped_lines == sum(1 for n in noise_lines if n.strip())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_never_raises(text):
    out = parse_boxes(text)
    assert out.skipped_lines + len(out.boxes) >= 0
    for box in out.boxes:
        assert len(box.bins) == 7 and box.label == box.label.strip() and box.label


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(labels, bins), min_size=1, max_size=5), st.integers(1, 30))
def test_fuzz_truncation_keeps_complete_lines(boxes, cut):
    text = "\n".join(f"bbox_{i}=Bbox({label},{','.join(map(str, b))})" for i, (label, b) in enumerate(boxes))
    last_start = text.rfind("bbox_")
    truncated = text[:max(last_start + 1, len(text) - cut)]
    out = parse_boxes(truncated)
    complete = truncated.endswith(")")
    assert len(out.boxes) == len(boxes) - (0 if complete else 1)
    assert out.truncated == (not complete)


# ---------------------------------------------------------------- class names with parentheses (issue 12)
def test_balanced_parentheses_in_a_class_are_kept_as_the_official_parser_keeps_them():
    official = re.compile(r"bbox_(\d+)=Bbox\(([^,]+),([^,]+),([^,]+),([^,]+),([^,]+),([^,]+),([^,]+),([^,]+)\)")
    for text in ("bbox_0=Bbox(mug (red),519,587,394,500,278,254,199)",
                 "bbox_0=Bbox(a (b (c)),1,2,3,500,5,6,7)", "bbox_0=Bbox(chair(),1,2,3,500,5,6,7)"):
        (box,) = parse_boxes(text).boxes
        assert box.label == official.search(text).group(2).strip()
        assert box.bins == tuple(float(official.search(text).group(3 + k)) for k in range(7))


@pytest.mark.parametrize("text, reason", [
    ("bbox_0=Bbox(mug (red,1,2,3,500,5,6,7)", "unbalanced parentheses"),
    ("bbox_0=Bbox(mug red),1,2,3,500,5,6,7)", "unbalanced parentheses"),
    ("bbox_0=Bbox(a (b (c (d))),1,2,3,500,5,6,7)", "nests deeper than 2"),
])
def test_unbalanced_or_too_deep_parentheses_skip_the_line_with_a_reason(text, reason):
    out = parse_boxes(text)
    assert out.boxes == [] and out.skipped_lines == 1 and reason in out.problems[0]


def test_a_class_broken_at_an_open_parenthesis_does_not_hide_the_next_box():
    out = parse_boxes("bbox_0=Bbox(bbox_1=Bbox(cup,1,2,3,500,5,6,7)\nbbox_2=Bbox(mug (red),4,5,6,500,7,8,9)")
    assert [(b.id, b.label) for b in out.boxes] == [(1, "cup"), (2, "mug (red)")]


paren_labels = st.builds(lambda a, b, c: f"{a} ({b}){c}", labels, labels, st.sampled_from(["", " x", "(y)"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(paren_labels, bins), min_size=1, max_size=5))
def test_fuzz_balanced_labels_survive(boxes):
    text = "\n".join(f"bbox_{i}=Bbox({label},{','.join(map(str, b))})" for i, (label, b) in enumerate(boxes))
    out = parse_boxes(text)
    assert [(b.label, b.bins) for b in out.boxes] == [(label.strip(), tuple(map(float, b))) for label, b in boxes]
