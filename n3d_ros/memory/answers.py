"""Questions answered from memory: when the objects a question names are not in the current frame but are
remembered, the same explicit 3D reasoning (reasoning.spatial) runs on the remembered boxes, seen from the
camera's current pose, and the answer says which objects came from memory and how old they are:
"From memory: the red object (id 7) was last seen 14 s ago. The red object (id 7) is 0.42 m ...".

A question names a memory id with "memory object 7" / "memory id 7" (plain "object 7" is a backend id in the
current frame first, then a memory id). ask_with_memory wraps Pipeline.ask: the query's grounding feeds the
memory, and a geometry question the frame cannot answer is answered from memory when it can be.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Optional

from ..core.types import Answer, GroundingResult, InputError, RGBDFrame
from ..pipeline import validate_query
from ..reasoning.matching import describe_box
from ..reasoning.questions import extract_object_phrases, parse_question
from ..reasoning.spatial import answer_question, m
from .memory import MemoryUpdate, ObjectMemory
from .objects import MEMORY_ID
from .pose import CameraPose
from .upright import optical_box

MEMORY_REFERENCE = re.compile(r"\b(?:memory|remembered)\s+(?:object|id)\s*#?\s*(\d+)\b", re.IGNORECASE)
CURRENT_TOLERANCE_S = 0.1  # an object seen this recently counts as in the current frame (no age given)


def format_age(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def names_memory_id(question: str) -> bool:
    """True when the question addresses a memory id explicitly ("memory object 7")."""
    return bool(MEMORY_REFERENCE.search(question))


def _fail(text: str) -> Answer:
    return Answer(success=False, text="", path="none", message=text)


def answer_from_memory(memory: ObjectMemory, question: str, now_ns: int,
                       camera_pose: Optional[CameraPose] = None,
                       current_tolerance_s: float = CURRENT_TOLERANCE_S) -> Answer:
    """Answer a geometry question from the remembered objects, relative to ``camera_pose`` (default: the pose
    of the last frame the memory ingested). Never raises for a bad question or pose: success False says why.
    Every box in the answer carries attributes["memory"] = {id, age_s, observations, confidence,
    center_memory_m, frame_id} and attributes["from_memory"] (True when not seen within current_tolerance_s)."""
    try:
        query = MEMORY_REFERENCE.sub(lambda match: f"object {match.group(1)}", validate_query(question))
    except InputError as exc:
        return _fail(str(exc))
    parsed = parse_question(query)
    if parsed is None:
        return _fail("from memory I answer geometry questions only (distance, size, position, direction, "
                     "counts); point the camera at the objects for other questions")
    pose = camera_pose if camera_pose is not None else memory.last_pose
    if pose is None:
        return _fail("the memory has no camera pose yet: it has not ingested a frame")
    if pose.frame_id != memory.frame_id:
        return _fail(f"camera pose is in '{pose.frame_id}' but the memory is kept in '{memory.frame_id}'")
    confirm = memory.config.confirm_observations
    objects = [o for o in memory.objects(include_tentative=True)
               if o.observations >= confirm or o.age_s(now_ns) <= current_tolerance_s]
    boxes = []
    for obj in objects:
        age = obj.age_s(now_ns)
        info = {"id": obj.id, "age_s": round(age, 3), "observations": obj.observations,
                "confidence": round(obj.confidence, 4), "center_memory_m": [round(float(v), 4) for v in obj.center],
                "frame_id": memory.frame_id}
        boxes.append(optical_box(obj.upright, pose, memory.basis, label=obj.label, id=obj.id,
                                 score=obj.confidence, attributes={**obj.attributes(), "memory": info, MEMORY_ID: obj.id,
                                                                   "from_memory": age > current_tolerance_s}))
    answer = answer_question(parsed, boxes, up=pose.rotation.T @ memory.basis.up)
    remembered = [b for b in answer.objects if b.attributes.get("from_memory")]
    lines = [f"memory: {len(boxes)} object(s) in '{memory.frame_id}', seen from the camera pose at "
             f"{pose.stamp_ns} ns"]
    for box in answer.objects:
        info = box.attributes["memory"]
        lines.append(f"{describe_box(box)}: last seen {info['age_s']:.3f} s ago, {info['observations']} "
                     f"observations, confidence {info['confidence']:.2f}, centre {info['center_memory_m']} m in "
                     f"{memory.frame_id}")
    answer.reasoning = "\n".join(lines + ([answer.reasoning] if answer.reasoning else []))
    if not answer.success:
        if answer.text.startswith("I see no "):  # reasoning.spatial's not-found sentence, about the view
            answer.text = "I remember no " + answer.text[len("I see no "):]
        answer.message = f"{answer.text} (searched {len(boxes)} remembered objects)"
        return answer
    if remembered:
        ages = "; ".join(f"{describe_box(b)} was last seen {format_age(b.attributes['memory']['age_s'])} ago"
                         for b in remembered)
        text = f"From memory: {ages}. {answer.text}"
        if parsed.op == "where":
            text += " " + " ".join(
                f"In {memory.frame_id} it is at ({', '.join(m(v) for v in b.attributes['memory']['center_memory_m'])})"
                f" m." for b in remembered)
        answer.text = text
        ids = ", ".join(str(b.id) for b in remembered)
        answer.message = " ".join(p for p in (f"answered from memory (objects {ids})", answer.message) if p)
    return answer


def with_memory_ids(objects, grounding: GroundingResult, update: MemoryUpdate) -> list:
    """The answer's objects, those the ingest fused or created carrying attributes[MEMORY_ID]. Copies: the
    grounding's boxes may be cached with the frame and must not keep a tag from an earlier question."""
    by_box = {id(box): update.matched[index] for index, box in enumerate(grounding.boxes) if index in update.matched}
    tagged = []
    for box in objects:
        if id(box) in by_box:
            box = replace(box, attributes={**box.attributes, MEMORY_ID: by_box[id(box)]})
        tagged.append(box)
    return tagged


def ask_with_memory(pipeline, memory: ObjectMemory, frame: RGBDFrame, question: str, pose: CameraPose,
                    now_ns: Optional[int] = None, cancel=None,
                    on_grounded: Optional[Callable[[GroundingResult], None]] = None) -> Answer:
    """Pipeline.ask with the memory: the query's grounding is ingested (negative evidence only for the objects
    its phrases describe: a query grounds a subset), and when the frame cannot answer a geometry question the
    memory answers it if it can. A question naming a memory id goes to the memory directly. A pose the memory
    refuses does not lose the answer: the message says the memory was not updated. on_grounded and cancel are
    passed on to Pipeline.ask."""
    now_ns = frame.stamp_ns if now_ns is None else int(now_ns)
    if names_memory_id(question):
        return answer_from_memory(memory, question, now_ns, pose)
    grounded = []

    def keep(grounding: GroundingResult) -> None:
        grounded.append(grounding)
        if on_grounded is not None:
            on_grounded(grounding)

    answer = pipeline.ask(frame, question, on_grounded=keep, cancel=cancel)
    if grounded:
        try:
            update = memory.ingest(grounded[0], frame, pose, scope=extract_object_phrases(question))
        except InputError as exc:
            answer.message = " ".join(p for p in (answer.message, f"memory not updated: {exc}") if p)
            return answer
        answer.objects = with_memory_ids(answer.objects, grounded[0], update)
    withdrawn = cancel is not None and cancel.is_set()
    if answer.success or withdrawn or parse_question(question) is None:
        return answer
    remembered = answer_from_memory(memory, question, now_ns, pose)
    return remembered if remembered.success else answer
