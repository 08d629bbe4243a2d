"""The N3D-VLM protocol, independent of how the model runs: byte-exact prompts and their token ids
(prompts, tokenizer), the turn-1 output grammar (box_parser, and box_grammar for constrained decoding), and
box decoding from the model's bins to metric boxes in the optical frame (decoding)."""
