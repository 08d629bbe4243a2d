"""The vision stage: frame -> image embeddings. encoding: N3D's 3D position encoding from the point map and
its hook at the merger input; stage: vision tower + 3D encoding + merger as a function, and the M-RoPE
positions any language-model runtime needs with those embeddings."""
