"""Pick and build the language-model runtime from the n3d backend's settings (runtime, gguf, gguf_quant)."""

from __future__ import annotations

from pathlib import Path

from ...core.types import InputError
from . import RUNTIMES
from .gguf_export import QUANTS as GGUF_QUANTS

# general.file_type of a GGUF (llama_ftype) for each export quantisation
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}
DEFAULT_QUANT = "q4_k_m"
PROMPT_BUDGET = 2048  # KV cells for the prompt of a turn (turn 2 with many boxes is the longest, ~1000)


def default_gguf_path(model_dir, quant: str) -> Path:
    """Where ``n3d export-gguf`` is told to write in the README, next to the checkpoint."""
    return Path(model_dir).expanduser() / f"n3d-lm-{quant}.gguf"


def resolve_gguf(source: str, gguf: str, gguf_quant: str) -> Path:
    if gguf_quant and gguf_quant not in GGUF_QUANTS:
        raise InputError(f"gguf_quant must be one of {list(GGUF_QUANTS)}, got {gguf_quant!r}")
    if gguf:
        return Path(gguf).expanduser()
    if not Path(source).expanduser().is_dir():
        raise InputError(f"runtime 'llamacpp' needs the gguf setting (a file from n3d export-gguf): model {source!r} "
                         "is not a local directory to look next to")
    return default_gguf_path(source, gguf_quant or DEFAULT_QUANT)


def make_runtime(engine, name: str, gguf: str = "", gguf_quant: str = "", n_ctx: int = 0, n_threads: int = 0):
    """The runtime for a loaded N3DEngine; llamacpp checks the GGUF against the checkpoint before loading it.

    n_threads: llama.cpp CPU threads (0: all cores, right for a robot that runs the model on its own).
    """
    if name not in RUNTIMES:
        raise InputError(f"runtime must be one of {list(RUNTIMES)}, got {name!r}")
    if name == "transformers":
        from .transformers_rt import TransformersRuntime

        return TransformersRuntime(engine.model)
    from .llamacpp_rt import LlamaCppRuntime, check_gguf

    text = engine.config.get_text_config()
    path = resolve_gguf(engine.source, gguf, gguf_quant)
    info = check_gguf(path, int(text.vocab_size), int(engine.config.vision_config.out_hidden_size), engine.source)
    if gguf_quant and info.file_type != FILE_TYPES[gguf_quant]:
        names = {v: k for k, v in FILE_TYPES.items()}
        raise InputError(f"GGUF {path} is {names.get(info.file_type, f'file type {info.file_type}')} but gguf_quant "
                         f"is {gguf_quant!r}: export with --quant {gguf_quant} or set gguf_quant to match")
    n_ctx = n_ctx or min(engine.context_length, PROMPT_BUDGET + engine.generation_config.max_new_tokens)
    return LlamaCppRuntime(path, image_token_id=engine.image_token_id, n_ctx=n_ctx, n_threads=n_threads or None)


def load_fast_engine(config, runtime: str = "transformers", gguf: str = "", gguf_quant: str = ""):
    """The engine a PipelineConfig asks for (what pipeline.build_backend builds for backend n3d)."""
    from ..model import load_engine

    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if runtime != "transformers" and config.quantization:
        raise InputError(f"quantization={config.quantization!r} is for the transformers runtime; with runtime "
                         f"{runtime!r} the GGUF export carries the quantisation (gguf_quant)")
    # another runtime runs the language model: only the vision tower is loaded into torch
    engine = load_engine(config.model, device=config.device, dtype=config.dtype,
                         quantization=config.quantization or None, sampling=config.sampling,
                         max_new_tokens=config.max_new_tokens, local_files_only=not config.allow_download,
                         language_model=runtime == "transformers")
    lm_runtime = None
    if runtime != "transformers":
        try:
            lm_runtime = make_runtime(engine, runtime, gguf, gguf_quant)
        except BaseException:
            engine.close()
            raise
    elif not (config.prefix_cache or config.constrained_decoding):
        return engine  # the plain generate() path
    from ..fast_engine import FastN3DEngine

    return FastN3DEngine.from_engine(
        engine, sampling=config.sampling, prefix_cache_size=1, constrain_boxes=config.constrained_decoding,
        draft=config.constrained_decoding, single_object_stop=config.single_object_stop,
        use_prefix_cache=config.prefix_cache, runtime=lm_runtime)
