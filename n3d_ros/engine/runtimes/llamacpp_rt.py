"""The llama.cpp runtime: the language model from a GGUF export, run through llama-cpp-python's C API.

Image embeddings go into the batch as embeddings (``llama_batch.embd``) with their M-RoPE positions
section-major (``pos[j * n + i]``: temporal, height, width, 0), which is how llama.cpp's qwen2vl
architecture takes them; text goes as token ids with one position each (llama.cpp repeats it on every
section). llama.cpp keeps the image causal among equal temporal positions by comparing (height, width), the
raster order the image tokens come in, so attention sees what the stock model sees.

One context, one working sequence (id 0). The prefix snapshot is llama.cpp's own sequence state
(``llama_state_seq_get_data``): restoring the prefix that is already resident only removes what a question
appended; another frame's prefix is loaded back from its snapshot.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Optional, Sequence

import numpy as np
import torch

from ...core.types import InputError
from . import optional_import
from .base import DecodeStats, ImagePrefix, LanguageRuntime, image_token_span

ARCH = "qwen2vl"
_N_POS = 4  # llama.cpp's M-RoPE positions per embedding
_GGML_TYPE_F32, _GGML_TYPE_F16 = 0, 1
_LOG_WARN = 3
_backend_lock = threading.Lock()
_backend_ready = False
_log_callback = None  # kept referenced: llama.cpp calls it for the life of the process


def missing_gguf_message(path, source: str) -> str:
    return (f"GGUF file {path} not found. Export the language model once with "
            f"`n3d export-gguf --model {source or 'DIR'} --out {path} --quant q4_k_m` "
            "(f32/f16/q8_0/q4_k_m) and point the `gguf` setting at it.")


@dataclass
class GGUFInfo:
    architecture: str
    vocab_size: int
    hidden_size: int
    file_type: int


def read_gguf_info(path) -> GGUFInfo:
    """Architecture, vocabulary size and hidden size from the GGUF header (memory-mapped, no weights read)."""
    gguf = optional_import("gguf", "runtime 'llamacpp' (reading the GGUF header)")

    reader = gguf.GGUFReader(str(path))

    def value(key, default=None):
        field = reader.fields.get(key)
        return default if field is None else field.contents()

    arch = str(value("general.architecture", ""))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else -1
    return GGUFInfo(arch, int(vocab), int(value(f"{arch}.embedding_length", -1)), int(value("general.file_type", -1)))


def check_gguf(path, vocab_size: int, hidden_size: int, source: str) -> GGUFInfo:
    """Refuse a GGUF that is not this checkpoint's language model, naming both sides."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(missing_gguf_message(path, source))
    info = read_gguf_info(path)
    problems = []
    if info.architecture != ARCH:
        problems.append(f"architecture {info.architecture!r} (GGUF) vs {ARCH!r} (Qwen2.5-VL checkpoint)")
    if info.vocab_size != vocab_size:
        problems.append(f"vocabulary size {info.vocab_size} (GGUF) vs {vocab_size} (checkpoint)")
    if info.hidden_size != hidden_size:
        problems.append(f"hidden size {info.hidden_size} (GGUF) vs {hidden_size} (checkpoint vision output)")
    if problems:
        raise InputError(f"GGUF {path} does not match the checkpoint {source or '(loaded model)'}: "
                         + "; ".join(problems) + f". Re-export it: n3d export-gguf --model {source or 'DIR'} --out {path}")
    return info


def _init_backend() -> None:
    """Once per process: llama.cpp's backends, with its log limited to warnings and errors."""
    global _backend_ready, _log_callback
    llama_cpp = optional_import("llama_cpp", "runtime 'llamacpp'")

    with _backend_lock:
        if _backend_ready:
            return

        @llama_cpp.llama_log_callback
        def _log(level, text, user_data):
            if level >= _LOG_WARN and level <= _LOG_WARN + 1:
                sys.stderr.write(text.decode("utf-8", "replace"))

        _log_callback = _log
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


@dataclass
class _Snapshot:
    """llama.cpp's saved state of sequence 0 right after the prefix."""

    state: object  # ctypes byte buffer
    size: int


class _Batch:
    """A llama_batch over numpy arrays this object owns (llama_batch_init sizes pos for one stream only)."""

    def __init__(self, n: int, tokens: Optional[np.ndarray] = None, embeds: Optional[np.ndarray] = None,
                 positions: Optional[np.ndarray] = None, outputs: Optional[np.ndarray] = None):
        import llama_cpp

        self.tokens = None if tokens is None else np.ascontiguousarray(tokens, dtype=np.int32)
        self.embeds = None if embeds is None else np.ascontiguousarray(embeds, dtype=np.float32)
        self.pos = np.ascontiguousarray(positions, dtype=np.int32).reshape(-1)
        self.n_seq = np.ones(n, dtype=np.int32)
        self.seq0 = (llama_cpp.llama_seq_id * 1)(0)
        self.seq_ptrs = (ctypes.POINTER(llama_cpp.llama_seq_id) * n)(*([ctypes.cast(self.seq0, ctypes.POINTER(llama_cpp.llama_seq_id))] * n))
        self.outputs = np.ascontiguousarray(outputs, dtype=np.int8)
        batch = llama_cpp.llama_batch()
        batch.n_tokens = n
        batch.token = self.tokens.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)) if self.tokens is not None else None
        batch.embd = self.embeds.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if self.embeds is not None else None
        batch.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        batch.n_seq_id = self.n_seq.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(self.seq_ptrs, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id)))
        batch.logits = self.outputs.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.batch = batch


class LlamaCppRuntime(LanguageRuntime):
    """gguf: path of an ``n3d export-gguf`` file. n_ctx: KV cells (prompt + generated tokens of one turn).

    kv_type "f32" keeps the KV cache in float32 (for f32 exports: exactness against transformers), "f16" is
    llama.cpp's default and what quantised exports use. n_gpu_layers: layers offloaded where llama.cpp was
    built with CUDA (ignored on a CPU build).
    """

    name = "llamacpp"

    def __init__(self, gguf, image_token_id: int, n_ctx: int = 4096, kv_type: Optional[str] = None,
                 n_threads: Optional[int] = None, n_gpu_layers: int = 999):
        try:
            import llama_cpp
        except ImportError as exc:
            raise InputError("runtime 'llamacpp' needs llama-cpp-python: pip install llama-cpp-python "
                             "(CMAKE_ARGS=-DGGML_CUDA=on on Jetson/RTX)") from exc
        self._ll = llama_cpp
        self.path = Path(gguf).expanduser()
        if not self.path.is_file():
            raise InputError(missing_gguf_message(self.path, ""))
        self.info = read_gguf_info(self.path)
        if kv_type is None:
            kv_type = "f32" if self.info.file_type == 0 else "f16"
        if kv_type not in ("f32", "f16"):
            raise InputError(f"kv_type must be 'f32' or 'f16', got {kv_type!r}")
        self.image_token_id = int(image_token_id)
        _init_backend()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = int(n_gpu_layers)
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not self._model:
            raise InputError(f"llama.cpp could not load {self.path} (see its log above); re-export it with n3d export-gguf")
        threads = int(n_threads or os.cpu_count() or 1)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = int(n_ctx)
        params.n_batch = int(n_ctx)  # one llama_decode call takes a whole prompt segment (the image: ~400)
        params.n_ubatch = min(int(n_ctx), 512)
        params.n_seq_max = 1
        params.n_threads = threads
        params.n_threads_batch = threads
        params.type_k = params.type_v = _GGML_TYPE_F32 if kv_type == "f32" else _GGML_TYPE_F16
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise InputError(f"llama.cpp could not create a context of {n_ctx} tokens for {self.path}")
        self.n_ctx = int(n_ctx)
        self.kv_type = kv_type
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model)))
        self._hidden = int(llama_cpp.llama_model_n_embd_inp(self._model))
        self._resident: Optional[ImagePrefix] = None
        self._length = 0
        self._delta = 0

    # ------------------------------------------------------------ facts
    @property
    def vocab_size(self) -> int:
        return self._vocab

    @property
    def hidden_size(self) -> int:
        return self._hidden

    # ------------------------------------------------------------ llama.cpp calls
    def _decode(self, batch: _Batch) -> None:
        rc = self._ll.llama_decode(self._ctx, batch.batch)
        if rc != 0:
            hint = " (the KV cache is full: raise n_ctx)" if rc == 1 else ""
            raise RuntimeError(f"llama_decode failed with code {rc} for {batch.batch.n_tokens} tokens{hint}")

    def _logits(self, rows: int) -> torch.Tensor:
        base = self._ll.llama_get_logits(self._ctx)
        array = np.ctypeslib.as_array(base, shape=(rows, self._vocab))
        return torch.from_numpy(array.copy())

    def _remove_from(self, position: int) -> None:
        if not self._ll.llama_memory_seq_rm(self._mem, 0, int(position), -1):
            raise RuntimeError(f"llama.cpp could not drop positions >= {position} from the working sequence")

    # ------------------------------------------------------------ interface
    def prefill(self, key: Hashable, ids: torch.Tensor, image_embeds: Optional[torch.Tensor],
                positions: np.ndarray, stats: DecodeStats) -> ImagePrefix:
        flat = [int(i) for i in ids.reshape(-1).tolist()]
        n = len(flat)
        if n + 1 > self.n_ctx:
            raise InputError(f"prompt prefix of {n} tokens does not fit the llama.cpp context of {self.n_ctx}")
        start, end = image_token_span(flat, self.image_token_id)
        if image_embeds is not None:
            if image_embeds.shape != (end - start, self._hidden):
                raise ValueError(f"image embeddings {tuple(image_embeds.shape)} do not fit {end - start} image-pad "
                                 f"ids x hidden {self._hidden}")
        elif end > start:
            raise ValueError("prompt has image-pad ids but no image embeddings were given")
        self._ll.llama_memory_clear(self._mem, True)
        self._resident = None
        positions = np.asarray(positions, dtype=np.int64)
        segments = [(0, start, None), (start, end, image_embeds), (end, n, None)]
        segments = [s for s in segments if s[1] > s[0]]
        for index, (a, b, embeds) in enumerate(segments):
            outputs = np.zeros(b - a, dtype=np.int8)
            if index == len(segments) - 1:
                outputs[-1] = 1
            if embeds is None:
                batch = _Batch(b - a, tokens=np.asarray(flat[a:b]), positions=positions[0, a:b], outputs=outputs)
            else:
                streams = np.zeros((_N_POS, b - a), dtype=np.int64)
                streams[:3] = positions[:, a:b]
                batch = _Batch(b - a, embeds=embeds.detach().to("cpu", torch.float32).numpy(),
                               positions=streams, outputs=outputs)
            self._decode(batch)
        first_logits = self._logits(1)[0]
        stats.forward_passes += 1
        stats.forward_tokens += n
        stats.prefill_tokens += n
        size = int(self._ll.llama_state_seq_get_size(self._ctx, 0))
        state = (ctypes.c_uint8 * size)()
        written = int(self._ll.llama_state_seq_get_data(self._ctx, state, size, 0))
        if written != size:
            raise RuntimeError(f"llama.cpp saved {written} of {size} bytes of the prefix state")
        delta = int(positions.max()) + 1 - n
        prefix = ImagePrefix(key=key, ids=ids.clone(), cache=_Snapshot(state, size),
                             rope_deltas=torch.tensor([[delta]], dtype=torch.long), first_logits=first_logits)
        self._resident, self._length, self._delta = prefix, n, delta
        return prefix

    def restore(self, prefix: ImagePrefix) -> None:
        if self._resident is prefix:
            self._remove_from(prefix.length + prefix.rope_delta)
        else:
            snapshot: _Snapshot = prefix.cache
            self._ll.llama_memory_clear(self._mem, True)
            read = int(self._ll.llama_state_seq_set_data(self._ctx, snapshot.state, snapshot.size, 0))
            if read != snapshot.size:
                raise RuntimeError(f"llama.cpp restored {read} of {snapshot.size} bytes of a prefix state")
            self._resident = prefix
        self._length, self._delta = prefix.length, prefix.rope_delta

    def forward(self, ids: Sequence[int], last_only: bool = False) -> torch.Tensor:
        k = len(ids)
        if self._length + k > self.n_ctx:
            raise RuntimeError(f"{self._length + k} tokens exceed the llama.cpp context of {self.n_ctx}: raise n_ctx")
        positions = self._length + self._delta + np.arange(k)  # text after the image: index + rope delta
        outputs = np.ones(k, dtype=np.int8)
        if last_only:
            outputs[:-1] = 0
        self._decode(_Batch(k, tokens=np.asarray(ids), positions=positions, outputs=outputs))
        self._length += k
        return self._logits(1 if last_only else k)

    def truncate(self, length: int) -> None:
        if self._resident is None or length < self._resident.length:
            raise ValueError(f"truncate({length}) would cut into the prefix; restore() it instead")
        if length < self._length:
            self._remove_from(length + self._delta)
            self._length = length

    def length(self) -> int:
        return self._length

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._ll.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            self._ll.llama_model_free(self._model)
            self._model = None
        self._resident = None
