"""N3D-VLM: a Qwen2.5-VL checkpoint whose vision tower adds a 3D position encoding.

The layout follows the data: protocol/ is what the model reads and writes (prompts, tokenizer, box grammar,
box decoding); vision/ turns a frame into image embeddings (the 3D encoding at the merger input); runtimes/
run the language model over those embeddings (transformers, or llama.cpp from a GGUF export). model.py loads
a checkpoint (model.load_engine / model.N3DEngine: the one- and two-turn flows); fast_engine.py and
fast_decode.py add the per-frame image-prefix cache and the constrained, drafted box decoding on any runtime;
tiny.py builds the tiny random checkpoint for tests and offline demos. Nothing heavy is imported here.
"""
