"""A tiny checkpoint taught the box grammar, so decoding speed is measured on output shaped like the model's.

The random tiny checkpoint writes garbage, so "passes per box line" measured on it says little about the
real model. This starts from that checkpoint and fine-tunes only its language model (the vision tower and
the 3D encoding run frozen, as in every forward) with teacher forcing on synthetic turn-1 answers
(hidden 64, or 256 for bench_runtimes' quantised-box measurement):
2-5 lines `bbox_N=Bbox(<colour> <shape>,U,V,Z,500,SX,SY,SZ)` with random bins. About a minute on this
CPU; cached next to the tiny checkpoint. Used by bench_speed.py only.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SHAPES = ("box", "cylinder", "sphere", "mug", "bottle")


def synthetic_answer(rng: random.Random) -> str:
    lines = []
    for n in range(rng.randint(2, 5)):
        bins = [rng.randint(0, 999) for _ in range(7)]
        bins[3] = 500  # yaw bin of every released output
        lines.append(f"bbox_{n}=Bbox({rng.choice(COLOURS)} {rng.choice(SHAPES)},{','.join(map(str, bins))})")
    return "\n".join(lines)


def answer_loss(engine, turn, target, full_logits: bool = False):
    """Mean next-token cross-entropy of the answer ids ``target`` after the turn's prompt (teacher forcing).

    By default logits are computed only where a target token is predicted (the last prompt position onwards):
    the prompt's ~400 rows x 152064 classes would be most of a step and carry no loss. full_logits=True is
    transformers' own labels loss over every position (what the test compares against)."""
    import torch
    import torch.nn.functional as F

    prompt = turn.model_kwargs["input_ids"]
    ids = torch.cat([prompt, torch.tensor([target])], dim=1)
    engine.hook.arm(turn.points, turn.map_hw, turn.grid_hw)
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                  mm_token_type_ids=(ids == engine.image_token_id).to(torch.int32),
                  pixel_values=turn.model_kwargs["pixel_values"], image_grid_thw=turn.model_kwargs["image_grid_thw"])
    if full_logits:
        labels = ids.clone()
        labels[:, :prompt.shape[1]] = -100
        return engine.model(**kwargs, labels=labels).loss
    out = engine.model(**kwargs, logits_to_keep=len(target) + 1)
    return F.cross_entropy(out.logits[0, :-1].float(), torch.tensor(target))


def train_box_speaker(out_dir: Path, steps: int = 300, seed: int = 0, hidden: int = 64) -> Path:
    import torch

    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.protocol.prompts import detection_text
    from n3d_ros.engine.tiny import cached_tiny_checkpoint
    from test_engine_speed import tiny_inputs

    source = cached_tiny_checkpoint(hidden=hidden)
    engine = load_engine(str(source), device="cpu", dtype="float32")
    model, tokenizer = engine.model, engine.tokenizer
    inputs = tiny_inputs(seed=seed)
    turn = engine.build_inputs(inputs, detection_text())
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.model.visual.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=3e-3)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    for step in range(steps):
        target = tokenizer.encode(synthetic_answer(rng), add_special_tokens=False) + [im_end]
        loss = answer_loss(engine, turn, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"   training the tiny box speaker (hidden {hidden}): step {step:4d} loss {loss.item():.3f}", flush=True)
    model.eval()
    engine.hook.disarm()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                 "merges.txt", "preprocessor_config.json", "generation_config.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy(source / name, out_dir / name)
    return out_dir


def cached_box_speaker(steps: int = 300, hidden: int = 64) -> Path:
    from n3d_ros.engine.protocol.tokenizer import cached_directory

    name = f"tiny_box_speaker_{steps}" if hidden == 64 else f"tiny_box_speaker_h{hidden}_{steps}"
    return cached_directory(name, "generation_config.json", lambda tmp: train_box_speaker(tmp, steps, hidden=hidden))
