"""N3D-VLM on stock transformers 5.x (Qwen2.5-VL + a 3D position-encoding hook).

model.load_engine / model.N3DEngine: loading and the one- and two-turn flows. encoding: the 3D encoding and
its merger hook. prompts: byte-exact prompt texts and token ids. box_parser / decoding: turn-1 output to
metric boxes in the optical frame. tokenizer: an offline Qwen tokenizer. tiny: a tiny random checkpoint for
tests and offline demos. Nothing heavy is imported here.
"""
