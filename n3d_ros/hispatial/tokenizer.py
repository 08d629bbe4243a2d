"""A small SentencePiece tokenizer with PaliGemma's special tokens and prompt layout, for tests offline.

The real Gemma tokenizer (256 000 pieces) ships with the checkpoint and is not available offline here. For the
tiny checkpoint we train a SentencePiece BPE model on a few hundred spatial questions and answers, with the
Gemma settings that matter for prompt layout: byte fallback, digits split one by one, no dummy prefix, no
whitespace normalisation (so "\n" survives as its own piece, as Gemma's id 108). Ids 0-3 are <pad>, <eos>,
<bos>, <unk> as in Gemma; the 1024 <locNNNN>, 128 <segNNN> and <image> follow the text pieces in the same
order as PaliGemma's vocabulary. The result is a stock transformers ``GemmaTokenizer`` (BPE with byte
fallback, like Gemma's tokenizer.json), built from the SentencePiece pieces without protobuf.
"""

from __future__ import annotations

import io
import itertools
from typing import List

LOC_TOKENS = [f"<loc{i:04d}>" for i in range(1024)]
SEG_TOKENS = [f"<seg{i:03d}>" for i in range(128)]
IMAGE_TOKEN = "<image>"
SPECIAL_HEAD = ("<pad>", "<eos>", "<bos>", "<unk>")  # Gemma ids 0, 1, 2, 3

_OBJECTS = ("red mug", "laptop", "chair", "table", "woman", "man", "door", "faucet", "book", "bottle", "cup",
            "plant", "sofa", "lamp", "box", "bowl", "keyboard", "monitor", "bag", "car")
_TEMPLATES = (
    "How far is the {a} from the camera?", "What is the distance between the {a} and the {b}?",
    "How tall would you say the {a} appears to be?", "How far does the {b} stretch from side to side?",
    "detect the aabb of the {a}", "Which object is closer to the camera, the {a} or the {b}?",
    "Is there any {a} to the left of the {b}? Answer with Yes or No.", "How many {a} are there?",
    "From the {a}'s perspective, is the {b} located left or right of the {a}?\n(A) right\n(B). left",
    "We estimate the height of the {a} to be 0.{n} meters.", "The {a} is {n}.{n}m away.",
    "-{n}.57m -1.{n}m 13.22m -2.06m 0.22m 1{n}.55m", "what is the xyz of the pixel in", "Yes", "No.",
)


def _corpus() -> List[str]:
    lines = []
    for (a, b), n in zip(itertools.permutations(_OBJECTS, 2), itertools.cycle(range(10, 99, 7))):
        lines.extend(t.format(a=a, b=b, n=n) for t in _TEMPLATES)
    return lines


def train_sentencepiece(vocab_size: int = 640) -> bytes:
    """The serialized SentencePiece BPE model (deterministic for a given vocab_size)."""
    try:
        import sentencepiece as spm
    except ImportError as exc:
        raise RuntimeError("the test tokenizer needs the PyPI package sentencepiece (pip install sentencepiece)") from exc
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=["\n"], byte_fallback=True,
        split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, character_coverage=1.0,
        num_threads=1, minloglevel=2, split_by_whitespace=True,
    )
    return model.getvalue()


def gemma_tokenizer_from_sentencepiece(model_proto: bytes):
    """A GemmaTokenizer over the SentencePiece pieces, plus the PaliGemma location/segmentation/image tokens."""
    import sentencepiece as spm
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if tuple(pieces[:4]) != SPECIAL_HEAD:
        raise RuntimeError(f"SentencePiece model must start with {SPECIAL_HEAD}, got {pieces[:4]}")
    vocab = {piece: index for index, piece in enumerate(pieces)}
    # BPE merges in score order, as transformers converts Gemma's own SentencePiece model
    scores = {piece: sp.get_score(i) for i, piece in enumerate(pieces)}
    merges = generate_merges(vocab, scores)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, mask_token=None, add_bos_token=False,
                               add_eos_token=False)
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in LOC_TOKENS + SEG_TOKENS])
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(IMAGE_TOKEN, normalized=False,
                                                                           special=True)]})
    return tokenizer


def build_test_tokenizer(vocab_size: int = 640):
    return gemma_tokenizer_from_sentencepiece(train_sentencepiece(vocab_size))
