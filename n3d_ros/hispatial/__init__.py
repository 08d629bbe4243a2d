"""HiSpatial-3B (PaliGemma2-3B-448 + a depth encoder over a metric point map) on stock transformers 5.x.

pointmap: RGB-D frame -> 448x448 colour + [4, 448, 448] xyz/mask input. prompts: the model's prompt templates
and safe token ids. answers: numbers, units and 3D AABBs from its text. depth: the point-map encoder and the
fused projector. model: the network and the engine (generate). loading: checkpoints (weights.pt layout).
tokenizer / tiny: the offline test tokenizer and a random-weight checkpoint of the same architecture.
"""
