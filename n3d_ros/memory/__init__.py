"""Object memory: id-stable 3D objects in a fixed frame, fused across frames and viewpoints (issue 14).

ObjectMemory.ingest(grounding, frame, pose) folds one frame in; answers.answer_from_memory answers geometry
questions about remembered objects, with their age.
"""

from .config import MemoryConfig
from .memory import MemoryUpdate, ObjectMemory, UnknownObject
from .objects import MemoryObject
from .pose import CameraPose

__all__ = ["CameraPose", "MemoryConfig", "MemoryObject", "MemoryUpdate", "ObjectMemory", "UnknownObject"]
