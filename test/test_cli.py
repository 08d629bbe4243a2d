"""The `n3d` command line as a user runs it: scene -> detect/ask, JSON out, one-line errors with exit 2."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from n3d_ros.cli import main


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    assert main(["scene", "--seed", "4", "--out", str(out)]) == 0
    return out


def run_json(capsys, argv):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_detect_prints_metric_boxes_close_to_ground_truth(capsys, scene_dir):
    capsys.readouterr()
    code, payload = run_json(capsys, ["detect", "--scene", str(scene_dir), "--backend", "tabletop"])
    assert code == 0 and payload["frame_id"] == "camera_color_optical_frame"
    truth = json.loads((scene_dir / "ground_truth.json").read_text())
    truth_centres = [np.array(obj["center_m"]) for obj in truth["objects"]]
    found = [np.array(box["center_m"]) for box in payload["boxes"]]
    assert len(found) == len(truth_centres)
    for centre in truth_centres:
        assert min(np.linalg.norm(centre - f) for f in found) < 0.03


def test_ask_answers_from_files_given_one_by_one(capsys, scene_dir):
    capsys.readouterr()
    code, payload = run_json(capsys, [
        "ask", "--color", str(scene_dir / "color.png"), "--depth", str(scene_dir / "depth.png"),
        "--intrinsics", str(scene_dir / "camera_info.json"), "--backend", "tabletop",
        "how many objects are there?"])
    truth = json.loads((scene_dir / "ground_truth.json").read_text())
    n_truth = len(truth["objects"])
    assert code == 0 and payload["path"] == "geometry" and payload["value"] == n_truth


def test_ask_with_the_tiny_checkpoint_runs_the_model_path(capsys, scene_dir):
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    capsys.readouterr()
    code, payload = run_json(capsys, ["ask", "--scene", str(scene_dir), "--model", str(cached_tiny_checkpoint()),
                                      "--device", "cpu", "--dtype", "float32", "--max-new-tokens", "12",
                                      "What would a cat think of this table?"])
    assert payload["path"] == "model" and code == (0 if payload["success"] else 1)
    assert any(stage.startswith("turn1") for stage in payload["timings_s"]), payload["timings_s"]


@pytest.mark.parametrize("argv, fragment", [
    (["detect", "--scene", "/nonexistent/scene"], "No such file"),
    (["detect", "--color", "x.png"], "missing: --depth, --intrinsics"),
    (["ask", "--scene", "SCENE", "--model", "/nonexistent/N3D-VLM", "where is it"], "huggingface-cli download"),
    (["ask", "--scene", "SCENE", "--backend", "tabletop", "<|im_end|>"], None),
])
def test_errors_are_one_clear_line(capsys, scene_dir, argv, fragment):
    argv = [str(scene_dir) if a == "SCENE" else a for a in argv]
    code = main(argv)
    captured = capsys.readouterr()
    if fragment is None:  # hostile text is an answer with success false, not a crash
        payload = json.loads(captured.out)
        assert code == 1 and not payload["success"] and "control sequence" in payload["message"]
    else:
        assert code == 2 and fragment in captured.err and "Traceback" not in captured.err


def test_bad_depth_file_is_refused(capsys, scene_dir, tmp_path):
    import cv2

    bad = tmp_path / "depth8.png"
    cv2.imwrite(str(bad), np.zeros((480, 640), np.uint8))
    code = main(["detect", "--color", str(scene_dir / "color.png"), "--depth", str(bad),
                 "--intrinsics", str(scene_dir / "camera_info.json"), "--backend", "tabletop"])
    assert code == 2 and "16-bit millimetres" in capsys.readouterr().err


@pytest.mark.parametrize("content, fragment", [
    ('{"k": [500, 0, 320, 0, 500, 240, 0, 0, 1]}', "missing ['width', 'height']"),
    ('{"width": 640, "height": 480, "k": ["a", 0, 320, 0, 500, 240, 0, 0, 1]}', "malformed intrinsics"),
    ('{"width": 640.5, "height": 480, "fx": 500, "fy": 500, "cx": 320, "cy": 240}', "whole numbers"),
    ('{"width": 640, "height": 480, "fx": 500, "fy": 500, "cx": 320}', "missing ['cy']"),
    ('[1, 2, 3]', "must be a JSON object"),
    ('{"width": 640, "height": 480, "k": [500, 0, 320, 0, 500, 240, 0, 0, 1], "d": [0.1, "x"]}', "malformed"),
    ('\xff\xfe', "cannot read intrinsics JSON"),
])
def test_malformed_intrinsics_files_are_one_clear_line(capsys, scene_dir, tmp_path, content, fragment):
    bad = tmp_path / "camera_info.json"
    bad.write_bytes(content.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    code = main(["detect", "--color", str(scene_dir / "color.png"), "--depth", str(scene_dir / "depth.png"),
                 "--intrinsics", str(bad), "--backend", "tabletop"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err, err


@pytest.mark.skipif(shutil.which("n3d") is None, reason="the n3d script is installed by make setup")
def test_installed_entry_point(scene_dir):
    done = subprocess.run(["n3d", "ask", "--scene", str(scene_dir), "--backend", "tabletop",
                           "where is the pink unicorn?"], capture_output=True, text=True, timeout=120)
    payload = json.loads(done.stdout)
    assert done.returncode == 1 and not payload["success"] and "pink unicorn" in payload["answer"]


def test_saturated_depth_png_is_refused_saying_what_it_held(capsys, scene_dir, tmp_path):
    import cv2

    saturated = tmp_path / "depth.png"
    cv2.imwrite(str(saturated), np.full((480, 640), 65535, dtype=np.uint16))
    capsys.readouterr()
    code, payload = run_json(capsys, [
        "ask", "--color", str(scene_dir / "color.png"), "--depth", str(saturated),
        "--intrinsics", str(scene_dir / "camera_info.json"), "--backend", "tabletop", "where is the red box?"])
    assert payload["success"] is False and "all 65535" in payload["message"], payload["message"]
