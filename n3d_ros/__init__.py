"""n3d_ros: N3D-VLM 3D grounding and spatial reasoning for ROS 2 RGB-D cameras.

Layout (data flows one way: frame -> point map -> model -> boxes -> reasoning -> messages):
  n3d_ros.core       camera geometry, image decoding, N3D point map, boxes, synthetic scenes (no ROS)
  n3d_ros.engine     the N3D-VLM engine: 3D encoding, prompts, output grammar, decoding, generation
  n3d_ros.reasoning  explicit 3D spatial reasoning over boxes and a question parser
  n3d_ros.backends   grounding backends (N3D-VLM, model-free tabletop) and depth refinement
  n3d_ros.pipeline   one pipeline for the CLI, the ROS node and the benchmarks
  n3d_ros.ros        the thin ROS 2 layer (conversions, node, synthetic camera, client)
"""

__version__ = "0.1.0"
