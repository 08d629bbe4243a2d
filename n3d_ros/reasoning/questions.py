"""Natural-language question -> a spatial operation that code answers exactly (or None: ask the model).

The parser is a list of anchored patterns tried in order. A pattern only counts when every object phrase
it captures is a plain noun phrase (no verbs, question words or relation words), so an unusual sentence falls
through to None rather than being forced into the wrong operation. None means "send it to the model's
second turn".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, List, Optional

OPS = ("distance", "distance_surface", "size", "height", "width", "depth", "relation", "extreme", "count",
       "direction", "where")
RELATIONS = ("left", "right", "above", "below", "front", "behind", "larger", "smaller", "taller", "shorter")
EXTREMES = ("nearest", "farthest", "largest", "smallest", "tallest", "shortest", "leftmost", "rightmost",
            "highest", "lowest")


@dataclass
class ParsedQuestion:
    """op: one of OPS. phrases: every object phrase in the question, in order (for grounding).

    relation / viewpoint: for op "relation" ("camera" or "opposite", i.e. seen from the far side).
    form: "yesno" (is A left of B?), "list" (what is left of B?), "which" (which is closer, A or B?) or
    "value" (everything else).
    extreme: for op "extreme"; among: the phrase that restricts the candidates (None: every object);
    reference: measure nearest/farthest from this phrase instead of from the camera.
    For "distance" with one phrase the distance is from the camera.
    For "direction" phrases are [origin, target]: standing at origin, where is target?
    """

    op: str
    phrases: List[str]
    relation: Optional[str] = None
    viewpoint: str = "camera"
    form: str = "value"
    extreme: Optional[str] = None
    among: Optional[str] = None
    reference: Optional[str] = None
    text: str = ""
    extras: dict = field(default_factory=dict)


# Words that never occur inside an object phrase; a capture containing one is a mis-parse.
_NOT_IN_PHRASE = {
    "is", "are", "was", "were", "be", "do", "does", "did", "can", "could", "will", "would", "should", "what",
    "which", "where", "how", "why", "who", "when", "than", "between", "if", "and", "or", "from", "of",
    "relative", "respect", "direction", "distance", "far", "apart", "i", "you", "it", "its", "they", "seen",
    "there", "see", "away", "has", "have", "positioned", "located", "placed", "situated", "color", "colour",
    "made", "inside", "contain", "contains", "empty", "full", "describe", "many", "much",
}
# Words that cannot start an object phrase: a capture starting with one swallowed a preposition.
_NOT_FIRST = {"to", "at", "on", "in", "by", "with", "for", "into", "onto"}
_DETERMINER = re.compile(r"^(?:the|a|an|this|that|these|those|my|your)\s+")
_OPPOSITE = re.compile(
    r",?\s*(?:as |when )?(?:seen|viewed|looked at|observed)?\s*from the (?:other|opposite|far) side"
    r"(?: of the (?:table|scene|room))?(?: (?:opposite|facing) the (?:photographer|camera|viewer))?$"
    r"|,?\s*(?:as |when )?(?:seen|viewed)\s*from the side opposite (?:to )?the (?:photographer|camera|viewer)$"
    r"|,?\s*(?:as |when )?(?:seen|viewed) from behind$"
)
_CAMERA_VIEW = re.compile(r",?\s*(?:as |when )?(?:seen|viewed) from (?:the camera|the photographer|here|my view)$"
                          r"|,?\s*from (?:the camera's|my|your) (?:point of view|perspective|view)$")
_PREFIX = re.compile(r"^(?:(?:please|hey|ok|okay|so|now)\s*,?\s+)*(?:(?:can|could|would) you\s+)?"
                     r"(?:(?:please)\s+)?(?:(?:tell|show) me\s+|estimate\s+|measure\s+|compute\s+|say\s+"
                     r"|i (?:want|need) to know\s+|do you know\s+)?")
_CAMERA_REF = r"(?:the camera|the robot|me|you|us|here|the viewer|the sensor)"
# Places in the view rather than objects ("closer to the front", "nearer to the left edge of the table").
_PLACE_REF = (r"(?:the )?(?:front|back|rear|left|right|top|bottom|middle|centre|center|edge|side)"
              r"(?: (?:edge|side|end|part))?(?: of (?:the )?(?:table|image|picture|photo|scene|view))?")
_VERB = r"(?:positioned |located |placed |situated |sitting |standing |lying |found |kept )?"
_REL_WORDS = {
    "left": r"(?:to the left of|on the left of|left of|on the left side of|to the left side of)",
    "right": r"(?:to the right of|on the right of|right of|on the right side of|to the right side of)",
    "above": r"(?:above|over|on top of|higher than|higher up than)",
    "below": r"(?:below|under|underneath|beneath|lower than)",
    "front": r"(?:in front of|before|closer to (?:the camera|me|you) than|nearer to (?:the camera|me|you) than"
             r"|closer than|nearer than)",
    "behind": r"(?:behind|in back of|farther (?:from (?:the camera|me|you) |away )?than"
              r"|further (?:from (?:the camera|me|you) |away )?than)",
    "larger": r"(?:bigger than|larger than)",
    "smaller": r"(?:smaller than)",
    "taller": r"(?:taller than)",
    "shorter": r"(?:shorter than|lower in height than)",
}
_WHICH_WORDS = {  # "which is X, A or B" -> extreme among the named objects
    "nearest": r"(?:closer|nearer|closest|nearest)(?: to " + _CAMERA_REF + r")?",
    "farthest": r"(?:farther|further|farthest|furthest)(?: (?:away|from " + _CAMERA_REF + r"))?",
    "largest": r"(?:bigger|larger|biggest|largest)", "smallest": r"(?:smaller|smallest)",
    "tallest": r"(?:taller|tallest)", "shortest": r"(?:shorter|shortest)",
    "leftmost": r"(?:more to the left|further (?:to the )?left|farther (?:to the )?left|on the left|leftmost)",
    "rightmost": r"(?:more to the right|further (?:to the )?right|farther (?:to the )?right|on the right"
                 r"|rightmost)",
    "highest": r"(?:higher|highest|higher up)", "lowest": r"(?:lower|lowest|lower down)",
}
_SUPERLATIVE = {
    "nearest": r"(?:closest|nearest)", "farthest": r"(?:farthest|furthest|most distant)",
    "largest": r"(?:largest|biggest)", "smallest": r"(?:smallest|tiniest)", "tallest": r"tallest",
    "shortest": r"shortest", "leftmost": r"(?:leftmost|furthest left|farthest left|left-most)",
    "rightmost": r"(?:rightmost|furthest right|farthest right|right-most)", "highest": r"highest",
    "lowest": r"lowest",
}
_GENERIC = {"object", "objects", "one", "ones", "thing", "things", "item", "items"}


def _alt(table: dict) -> str:
    return "|".join(f"(?P<{key}>{pattern})" for key, pattern in table.items())


def _which_key(match: re.Match, table: dict) -> str:
    return next(key for key in table if match.group(key))


def normalize(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"[?.!\s]+$", "", text)
    text = _PREFIX.sub("", text, count=1)
    text = text.replace("what's", "what is").replace("where's", "where is").replace("how's", "how is")
    return text.strip()


def clean_phrase(text: str) -> Optional[str]:
    """The object phrase without determiners, or None if the capture is not a plain noun phrase."""
    text = text.strip(" ,;:'\"")
    if re.search(r"[,;:]", text):
        return None  # a list or a clause ("to the cup, the mug"): the pattern split the sentence wrongly
    text = _DETERMINER.sub("", text)
    words = re.findall(r"[a-z0-9_#'/-]+", text)
    if not words or len(words) > 6 or any(w in _NOT_IN_PHRASE for w in words) or words[0] in _NOT_FIRST:
        return None
    return " ".join(words)


Handler = Callable[[re.Match], Optional[ParsedQuestion]]
_RULES: List[tuple] = []


def _rule(pattern: str):
    compiled = re.compile("^" + pattern + "$")

    def register(handler: Handler) -> Handler:
        _RULES.append((compiled, handler))
        return handler

    return register


def _phrases(match: re.Match, *names: str) -> Optional[List[str]]:
    cleaned = [clean_phrase(match.group(n)) for n in names]
    return None if any(p is None for p in cleaned) else cleaned


# ----------------------------------------------------------------------------------------------- distances
@_rule(r"(?:what is |how big is )?(?:the )?(?:(?:closest|minimum|minimal|smallest|shortest) )?(?:surface[- ]to[- ]"
       r"surface |edge[- ]to[- ]edge |surface |free |empty )?(?:gap|clearance|space|room) between (?P<a>.+) and "
       r"(?P<b>.+)")
@_rule(r"(?:what is |how big is )?the (?:closest |shortest |minimum )?(?:surface[- ]to[- ]surface|surface|"
       r"edge[- ]to[- ]edge|closest[- ]point|closest[- ]surface) distance (?:between|from) (?P<a>.+) (?:and|to) "
       r"(?P<b>.+)")
@_rule(r"how (?:close|near) (?:do|does|are) (?:the surfaces of |the edges of )?(?P<a>.+?) (?:and|get to|come to) "
       r"(?P<b>.+?)(?: get)?")
@_rule(r"how far apart are the (?:surfaces|edges|closest points) of (?P<a>.+) and (?P<b>.+)")
def _surface(match):
    phrases = _phrases(match, "a", "b")
    return phrases and ParsedQuestion("distance_surface", phrases)


@_rule(r"(?:what is )?(?:the )?(?:straight[- ]line |euclidean |centre[- ]to[- ]centre |center[- ]to[- ]center |"
       r"3d )?distance (?:between|from) (?P<a>.+) (?:and|to) (?P<b>.+?)(?: in (?:meters|metres|m))?")
@_rule(r"how far (?:away )?(?:is|are) (?P<a>.+) from (?P<b>.+)")
@_rule(r"how far apart are (?P<a>.+) and (?P<b>.+)")
@_rule(r"how far is it from (?P<a>.+) to (?P<b>.+)")
@_rule(r"how (?:far|many (?:meters|metres)) (?:is|are) (?P<a>.+) (?:away )?from (?P<b>.+)")
def _distance(match):
    phrases = _phrases(match, "a", "b")
    if phrases and clean_phrase(match.group("b")) and re.fullmatch(_CAMERA_REF, match.group("b").strip()):
        return ParsedQuestion("distance", phrases[:1])
    return phrases and ParsedQuestion("distance", phrases)


@_rule(r"how far (?:away )?(?:is|are) (?P<a>.+?)(?: away)?(?: from " + _CAMERA_REF + r")?")
@_rule(r"(?:what is )?(?:the )?(?:distance|range|depth) (?:to|of) (?P<a>.+?)(?: from " + _CAMERA_REF + r")?")
def _camera_distance(match):
    phrases = _phrases(match, "a")
    return phrases and ParsedQuestion("distance", phrases)


# ----------------------------------------------------------------------------------------------- sizes
_DIMENSION_RULES = (
    ("height", r"how (?:tall|high) is (?P<a>.+)|(?:what is )?the height of (?P<b>.+)|what height is (?P<c>.+)"
               r"|how (?:tall|high) (?P<d>.+) is"),
    ("width", r"how wide is (?P<a>.+)|(?:what is )?the width of (?P<b>.+)|what width is (?P<c>.+)"
              r"|how wide (?P<d>.+) is"),
    ("depth", r"how deep is (?P<a>.+)|(?:what is )?the (?:depth|thickness) of (?P<b>.+)|how thick is (?P<c>.+)"
              r"|how (?:deep|thick) (?P<d>.+) is"),
    ("size", r"how (?:big|large|small) is (?P<a>.+)|(?:what is |what are )?the (?:size|dimensions|volume|"
             r"measurements) of (?P<b>.+)|what size is (?P<c>.+)|how (?:big|large|small) (?P<d>.+) is"),
)


def _dimension_handler(op: str) -> Handler:
    def handler(match):
        name = next(n for n in ("a", "b", "c", "d") if match.group(n) is not None)
        phrases = _phrases(match, name)
        return phrases and ParsedQuestion(op, phrases)

    return handler


for _op, _pattern in _DIMENSION_RULES:
    _rule(r"(?:" + _pattern + r")(?: in (?:meters|metres|m|m\^?3|cubic (?:meters|metres)))?")(_dimension_handler(_op))


# ----------------------------------------------------------------------------------------------- relations
_VIEW_SUFFIX = r"(?P<view>" + _OPPOSITE.pattern.replace("$", "") + r")?"


@_rule(r"(?:is|are) (?P<a>.+?) " + _VERB + r"(?:" + _alt(_REL_WORDS) + r") (?P<b>.+?)" + _VIEW_SUFFIX)
def _relation_yesno(match):
    phrases = _phrases(match, "a", "b")
    if not phrases:
        return None
    return ParsedQuestion("relation", phrases, relation=_which_key(match, _REL_WORDS), form="yesno",
                          viewpoint="opposite" if match.group("view") else "camera")


@_rule(r"(?:what|which (?:objects?|ones?|things?|items?)) (?:is|are) " + _VERB + r"(?:" + _alt(_REL_WORDS)
       + r") (?P<b>.+?)" + _VIEW_SUFFIX)
def _relation_list(match):
    phrases = _phrases(match, "b")
    if not phrases:
        return None
    return ParsedQuestion("relation", phrases, relation=_which_key(match, _REL_WORDS), form="list",
                          reference=phrases[0], viewpoint="opposite" if match.group("view") else "camera")


# ----------------------------------------------------------------------------------------------- extremes
@_rule(r"which (?:one |object |of them |of the two )?is (?:the )?(?P<cmp>closer|nearer|closest|nearest|farther|further"
       r"|farthest|furthest)(?: away)? (?:to|from) (?P<ref>[^,]+), (?P<a>[^,]+?),? or (?P<b>[^,]+)")
def _which_of_two_from_reference(match):
    """"Which is closer to the cup, the mug or the laptop?": nearest/farthest of two from a third object
    (the comma marks where the reference ends; without it the sentence is ambiguous and goes to the model)."""
    extreme = "nearest" if match.group("cmp") in ("closer", "nearer", "closest", "nearest") else "farthest"
    phrases = _phrases(match, "a", "b")
    if not phrases:
        return None
    if re.fullmatch(_CAMERA_REF, match.group("ref").strip()):
        return ParsedQuestion("extreme", phrases, extreme=extreme, form="which")
    if re.fullmatch(_PLACE_REF, match.group("ref").strip()):
        return None  # "closer to the front/left edge" names a place, not an object: the later rules read it
    reference = clean_phrase(match.group("ref"))
    if reference is None:
        return None
    return ParsedQuestion("extreme", phrases + [reference], extreme=extreme, form="which", reference=reference)


@_rule(r"which (?:one |object |of them |of the two )?is (?:the )?(?:" + _alt(_WHICH_WORDS) + r"),? (?P<a>.+?),? or "
       r"(?P<b>.+)")
@_rule(r"(?P<a>.+?) or (?P<b>.+?),? which (?:one )?is (?:the )?(?:" + _alt(_WHICH_WORDS) + r")")
def _which_of_two(match):
    phrases = _phrases(match, "a", "b")
    return phrases and ParsedQuestion("extreme", phrases, extreme=_which_key(match, _WHICH_WORDS), form="which")


_TO_REF = r"(?: (?:to|from) (?P<ref>.+?))?"


@_rule(r"which (?P<among>.+?) is (?:the )?(?:" + _alt(_SUPERLATIVE) + r")" + _TO_REF)
@_rule(r"which is the (?:" + _alt(_SUPERLATIVE) + r") (?P<among>.+?)" + _TO_REF)
@_rule(r"(?:what|which) is (?:the )?(?:" + _alt(_SUPERLATIVE) + r")(?: (?P<among>(?!to |from ).+?))?" + _TO_REF)
@_rule(r"(?:find|show|name|get|identify|point to) the (?:" + _alt(_SUPERLATIVE) + r")(?: (?P<among>(?!to |from ).+?))?"
       + _TO_REF)
def _extreme(match):
    among = match.group("among")
    ref = match.group("ref")
    phrases: List[str] = []
    among_phrase = None
    if among is not None and among.strip() not in _GENERIC:
        among_phrase = clean_phrase(among)
        if among_phrase is None:
            return None
        phrases.append(among_phrase)
    reference = None
    if ref is not None and not re.fullmatch(_CAMERA_REF, ref.strip()):
        reference = clean_phrase(ref)
        if reference is None:
            return None
        phrases.append(reference)
    extreme = _which_key(match, _SUPERLATIVE)
    if reference is not None and extreme not in ("nearest", "farthest"):
        return None
    return ParsedQuestion("extreme", phrases, extreme=extreme, among=among_phrase, reference=reference)


# ----------------------------------------------------------------------------------------------- counting
@_rule(r"how many (?P<a>.+?)(?: (?:are|is) there| do you see| can you see| (?:are|is) (?:visible|present|in view)"
       r"| (?:are|is) (?:there )?(?:on the table|in the scene|in the image|in view|here)| in total| in the scene"
       r"| on the table| in the image| you see| can be seen)?(?: in total)?")
@_rule(r"count (?:all )?(?:of )?(?P<a>.+?)(?: in the scene| on the table| in the image)?")
@_rule(r"(?:what is )?the (?:number|count) of (?P<a>.+?)(?: in the scene| on the table| in the image)?")
def _count(match):
    raw = match.group("a").strip()
    if raw in _GENERIC:
        return ParsedQuestion("count", [], among=None)
    phrases = _phrases(match, "a")
    return phrases and ParsedQuestion("count", phrases, among=phrases[0])


# ----------------------------------------------------------------------------------------------- direction
@_rule(r"if (?:you are|you're|i am|i'm|we are|the robot is|you were|i was|you stand|i stand|standing) "
       r"(?:at|by|next to|beside) (?P<a>.+?),? (?:where|in which direction|in what direction|at what o'clock) "
       r"(?:will|would|can|could|do|should) (?:you|i|we|it) (?:find|see|look for) (?P<b>.+?)"
       r"(?: (?:as|in) (?:a )?clock (?:direction|position))?")
@_rule(r"(?:in )?(?:which|what) (?:clock |o'clock )?direction is (?P<b>.+?) from (?P<a>.+)")
@_rule(r"(?:what is )?the (?:clock |o'clock )?direction (?:of|to) (?P<b>.+?) from (?P<a>.+)")
@_rule(r"(?:what is )?the (?:clock |o'clock )?direction from (?P<a>.+?) to (?P<b>.+)")
@_rule(r"(?:at )?what o'clock is (?P<b>.+?) (?:from|relative to|with respect to) (?P<a>.+)")
@_rule(r"where is (?P<b>.+?) (?:relative to|with respect to|in relation to|as seen from|from) (?P<a>.+)")
def _direction(match):
    phrases = _phrases(match, "a", "b")
    if phrases and re.fullmatch(_CAMERA_REF, match.group("a").strip()):
        return ParsedQuestion("where", phrases[1:])  # "where is X from the camera" is a position question
    return phrases and ParsedQuestion("direction", phrases)


# ----------------------------------------------------------------------------------------------- where
@_rule(r"(?:where (?:is|are)|where can i find|where do i find|where would i find|locate|find|"
       r"(?:what is )?the (?:position|location|coordinates|3d position|3d location) of|"
       r"(?:what is )?the position of|give me the (?:position|location) of) (?P<a>.+?)"
       r"(?: (?:located|positioned|placed|situated))?(?: in (?:3d|the scene|the image|the room))?")
def _where(match):
    phrases = _phrases(match, "a")
    return phrases and ParsedQuestion("where", phrases)


def parse_question(text: str) -> Optional[ParsedQuestion]:
    """The operation the question asks for, or None when code cannot answer it (ask the model)."""
    query = normalize(text)
    viewpoint = "camera"
    if _OPPOSITE.search(query):
        viewpoint = "opposite"
    query = _CAMERA_VIEW.sub("", query)
    for pattern, handler in _RULES:
        match = pattern.match(query)
        if match:
            parsed = handler(match)
            if parsed:
                if parsed.op == "relation":
                    parsed.viewpoint = viewpoint if viewpoint == "opposite" else parsed.viewpoint
                elif viewpoint == "opposite":
                    continue  # "as seen from the other side" only changes relations
                parsed.text = text
                return parsed
    return None


def extract_object_phrases(text: str) -> List[str]:
    """Object phrases a question mentions, for grounding; [] when none can be found.

    Uses the parser when it maps the question; otherwise takes noun phrases after "the"/"a" up to a
    relation or question word, so a free-form question still gets its objects grounded.
    """
    parsed = parse_question(text)
    if parsed is not None:
        return list(parsed.phrases)
    query = normalize(text)
    found: List[str] = []
    for match in re.finditer(r"\b(?:the|a|an)\s+([a-z0-9_#'/ -]+?)(?=\s+(?:" + _PHRASE_END + r")\b|[,?]|$)", query):
        phrase = clean_phrase(match.group(1))
        if phrase and phrase not in found and phrase not in _GENERIC:
            found.append(phrase)
    return found


# Words that end an object phrase in a free-form question: verbs, prepositions, conjunctions.
_PHRASE_END = "|".join([
    "is", "are", "was", "were", "and", "or", "to", "from", "of", "on", "in", "at", "than", "with", "next", "near",
    "behind", "under", "above", "below", "between", "left", "right", "into", "onto", "for", "by", "that", "which",
    "pick", "picks", "put", "place", "move", "grab", "hold", "reach", "fit", "fits", "see", "use", "open", "push",
    "lift", "carry", "touch", "can", "could", "will", "would", "should", "does", "do", "has", "have", "look",
    "looks", "contain", "contains", "made", "belong", "belongs",
])
