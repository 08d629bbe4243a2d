"""GGUF export and the checks at configure: wrong architecture, vocabulary or hidden size; missing file."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from n3d_ros.cli import main as cli_main
from n3d_ros.core.types import InputError
from n3d_ros.engine.runtimes.gguf_export import export_gguf, gguf_name
from n3d_ros.engine.runtimes.llamacpp_rt import check_gguf, read_gguf_info
from n3d_ros.engine.runtimes.select import make_runtime, resolve_gguf
from n3d_ros.engine.tiny import cached_tiny_checkpoint


def header_only_gguf(path, arch="qwen2vl", vocab=152064, hidden=64):
    """A GGUF with the metadata the configure check reads and no tensors."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_embedding_length(hidden)
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory):
    return export_gguf(cached_tiny_checkpoint(), tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf", "f16")


def test_export_writes_only_the_language_model(tiny_f16):
    import gguf

    reader = gguf.GGUFReader(str(tiny_f16))
    names = {t.name for t in reader.tensors}
    assert "token_embd.weight" in names and "blk.1.attn_q.bias" in names and "output_norm.weight" in names
    assert not any("visual" in n or "merger" in n for n in names)
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32  # 1-D tensors stay f32
    info = read_gguf_info(tiny_f16)
    assert (info.architecture, info.vocab_size, info.hidden_size, info.file_type) == ("qwen2vl", 152064, 64, 1)
    sections = reader.fields["qwen2vl.rope.dimension_sections"].contents()
    assert list(sections) == [2, 3, 3, 0]


def test_tensor_names_cover_both_checkpoint_layouts():
    assert gguf_name("model.language_model.layers.3.mlp.down_proj.weight") == "blk.3.ffn_down.weight"
    assert gguf_name("model.layers.3.mlp.down_proj.weight") == "blk.3.ffn_down.weight"  # 4.x layout (N3D-VLM)
    assert gguf_name("visual.blocks.0.attn.qkv.weight") is None
    assert gguf_name("model.visual.merger.mlp.0.weight") is None
    with pytest.raises(InputError, match="not part of a Qwen2.5-VL language model"):
        gguf_name("model.layers.0.self_attn.rotary.inv_freq")


@pytest.mark.parametrize("kwargs,words", [
    ({"arch": "llama"}, ["architecture 'llama' (GGUF)", "'qwen2vl' (Qwen2.5-VL checkpoint)"]),
    ({"vocab": 1000}, ["vocabulary size 1000 (GGUF)", "152064 (checkpoint)"]),
    ({"hidden": 896}, ["hidden size 896 (GGUF)", "64 (checkpoint vision output)"]),
])
def test_mismatched_gguf_is_refused_naming_both(tmp_path, kwargs, words):
    path = header_only_gguf(tmp_path / "other.gguf", **kwargs)
    with pytest.raises(InputError) as err:
        check_gguf(path, vocab_size=152064, hidden_size=64, source="/models/tiny")
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "n3d export-gguf --model /models/tiny" in message


def test_missing_gguf_says_how_to_export(tmp_path):
    with pytest.raises(InputError) as err:
        check_gguf(tmp_path / "none.gguf", 152064, 64, "/models/N3D-VLM")
    assert "not found" in str(err.value)
    assert "n3d export-gguf --model /models/N3D-VLM --out" in str(err.value)


def test_configure_refuses_a_gguf_of_another_model(tmp_path):
    """Through the backend's runtime selection, before llama.cpp loads anything."""
    engine = SimpleNamespace(source=str(cached_tiny_checkpoint()), image_token_id=151655, context_length=8192,
                             config=SimpleNamespace(get_text_config=lambda: SimpleNamespace(vocab_size=152064),
                                                    vision_config=SimpleNamespace(out_hidden_size=64)),
                             generation_config=SimpleNamespace(max_new_tokens=64))
    wrong = header_only_gguf(tmp_path / "qwen2.5-0.5b.gguf", hidden=896)
    with pytest.raises(InputError, match="hidden size 896"):
        make_runtime(engine, "llamacpp", str(wrong))
    right_shape = header_only_gguf(tmp_path / "f32-but-says.gguf")
    with pytest.raises(InputError, match="gguf_quant"):
        make_runtime(engine, "llamacpp", str(right_shape), "q8_0")
    with pytest.raises(InputError, match="runtime must be one of"):
        make_runtime(engine, "vllm")


def test_default_gguf_path_sits_next_to_the_checkpoint(tmp_path):
    assert resolve_gguf(str(tmp_path), "", "q8_0") == tmp_path / "n3d-lm-q8_0.gguf"
    assert resolve_gguf(str(tmp_path), "", "") == tmp_path / "n3d-lm-q4_k_m.gguf"
    with pytest.raises(InputError, match="needs the gguf setting"):
        resolve_gguf("yuxinhk/N3D-VLM", "", "")
    with pytest.raises(InputError, match="gguf_quant must be one of"):
        resolve_gguf(str(tmp_path), "", "q2_k")


def test_cli_export_and_its_errors(tmp_path, capsys):
    out = tmp_path / "lm.gguf"
    assert cli_main(["export-gguf", "--model", str(cached_tiny_checkpoint()), "--out", str(out), "--quant", "f32"]) == 0
    assert read_gguf_info(out).file_type == 0 and "wrote" in capsys.readouterr().err
    assert cli_main(["export-gguf", "--model", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["export-gguf", "--model", ".", "--out", str(out), "--quant", "q2_k"])


def test_a_robot_without_the_optional_packages_is_told_how_to_install_them(monkeypatch, tmp_path):
    from n3d_ros.engine.runtimes.llamacpp_rt import read_gguf_info

    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed: import raises ImportError
    with pytest.raises(InputError, match=r"needs the Python package 'gguf': pip install gguf"):
        read_gguf_info(tmp_path / "any.gguf")
