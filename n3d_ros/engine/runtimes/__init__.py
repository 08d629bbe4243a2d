"""Language-model runtimes under the N3D engine.

The N3D-VLM fine-tune changes nothing in the language model (the 3D encoding lives in the vision tower), so
the engine computes image embeddings in torch (``engine.vision.stage``) and hands them, with the M-RoPE
positions, to whichever runtime runs the language model: ``transformers_rt`` (the stock Qwen2.5-VL model)
or ``llamacpp_rt`` (a GGUF export through llama-cpp-python). ``base`` is the interface both implement.
"""

RUNTIMES = ("transformers", "llamacpp")

# Optional packages of the llama.cpp runtime and the GGUF export: how to get each, for the error a robot
# without them gets (they are not in requirements.txt).
OPTIONAL_PACKAGES = {
    "gguf": "pip install gguf",
    "llama_cpp": "pip install llama-cpp-python (Jetson / RTX: CMAKE_ARGS=-DGGML_CUDA=on pip install llama-cpp-python)",
}


def optional_import(module: str, needed_for: str):
    """Import an optional package, or raise InputError saying what needs it and how to install it."""
    import importlib

    from ...core.types import InputError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"{needed_for} needs the Python package {module!r}: {OPTIONAL_PACKAGES[module]}") from exc
