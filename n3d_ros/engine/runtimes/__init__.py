"""Language-model runtimes under the N3D engine.

The N3D-VLM fine-tune changes nothing in the language model (the 3D encoding lives in the vision tower), so
the engine computes image embeddings in torch (``engine.vision.stage``) and hands them, with the M-RoPE
positions, to whichever runtime runs the language model: ``transformers_rt`` (the stock Qwen2.5-VL model)
or ``llamacpp_rt`` (a GGUF export through llama-cpp-python). ``base`` is the interface both implement.
"""

RUNTIMES = ("transformers", "llamacpp")
