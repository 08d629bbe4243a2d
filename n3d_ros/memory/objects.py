"""One remembered object and how observations fuse into it.

Fusion: every centre and size axis is a scalar Kalman filter with a constant-position model. Between
observations its variance grows by process_sigma^2 * dt; an observation with variance r (MemoryConfig's range
law) updates it with gain k = P / (P + r), so after n consistent observations P is about r / n. Yaw is fused the
same way, modulo a quarter turn (a rectangle turned by 90 deg is the same rectangle with its sides swapped).
An observation more than reset_innovation_sigmas from the estimate on some axis restarts the estimate (the
object was moved), keeping its id.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..core.types import Box3D
from .config import MemoryConfig
from .upright import HALF_PI, UprightBox

# Box3D.attributes key: the memory id a box of an answer is tracked under (the frame's own boxes after ingest,
# and remembered boxes); replies carry it as memory_ids.
MEMORY_ID = "memory_id"


def confidence_of(log_odds: float) -> float:
    return float(1.0 / (1.0 + np.exp(-log_odds)))


@dataclass
class Observation:
    """One detection moved into the memory frame, with its per-axis variances."""

    box: Box3D               # as the backend gave it (optical frame)
    upright: UprightBox      # in the memory frame
    center_var: np.ndarray
    size_var: np.ndarray
    yaw_var: float
    stamp_ns: int
    phrases: tuple = ()
    partial: bool = False    # cut by the image border (MemoryConfig.edge_margin_px)


def observation_variances(range_m: float, config: MemoryConfig):
    sigma_c = config.center_sigma_m + config.center_sigma_per_m * range_m + config.center_sigma_per_m2 * range_m ** 2
    sigma_s = config.size_sigma_m + config.size_sigma_per_m * range_m + config.size_sigma_per_m2 * range_m ** 2
    return np.full(3, sigma_c ** 2), np.full(3, sigma_s ** 2), config.yaw_sigma_rad ** 2


@dataclass
class MemoryObject:
    id: int
    center: np.ndarray
    center_var: np.ndarray
    size: np.ndarray
    size_var: np.ndarray
    yaw: float
    yaw_var: float
    first_seen_ns: int
    last_seen_ns: int
    log_odds: float
    observations: int = 1
    misses: int = 0                      # consecutive frames in view, not occluded, not detected
    resets: int = 0                      # times the estimate restarted because the object had moved
    labels: Counter = field(default_factory=Counter)
    phrases: set = field(default_factory=set)
    colors: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    category_known: bool = True

    @classmethod
    def start(cls, object_id: int, obs: Observation, config: MemoryConfig) -> "MemoryObject":
        obj = cls(id=object_id, center=obs.upright.center.copy(), center_var=obs.center_var.copy(),
                  size=obs.upright.size.copy(), size_var=obs.size_var.copy(), yaw=obs.upright.yaw,
                  yaw_var=obs.yaw_var, first_seen_ns=obs.stamp_ns, last_seen_ns=obs.stamp_ns,
                  log_odds=config.initial_log_odds)
        obj._remember_words(obs)
        return obj

    # ------------------------------------------------------------------------------------------ state
    @property
    def confidence(self) -> float:
        return confidence_of(self.log_odds)

    @property
    def label(self) -> str:
        return self.labels.most_common(1)[0][0] if self.labels else "object"

    @property
    def color(self) -> Optional[str]:
        return self.colors.most_common(1)[0][0] if self.colors else None

    @property
    def shape(self) -> Optional[str]:
        return self.shapes.most_common(1)[0][0] if self.shapes else None

    @property
    def center_sigma(self) -> np.ndarray:
        return np.sqrt(self.center_var)

    @property
    def upright(self) -> UprightBox:
        return UprightBox(self.center.copy(), self.size.copy(), self.yaw)

    def age_s(self, now_ns: int) -> float:
        return max(0.0, (int(now_ns) - self.last_seen_ns) * 1e-9)

    def copy(self) -> "MemoryObject":
        return copy.deepcopy(self)

    def attributes(self) -> dict:
        """Box attributes for matching a phrase against this object (reasoning.matching)."""
        attributes = {"category_known": self.category_known}
        if self.color:
            attributes["color"] = self.color
        if self.shape:
            attributes["shape"] = self.shape
        return attributes

    def to_dict(self, now_ns: Optional[int] = None) -> dict:
        out = {"id": self.id, "label": self.label, "labels": dict(self.labels), "phrases": sorted(self.phrases),
               "center_m": [round(float(v), 4) for v in self.center],
               "center_sigma_m": [round(float(v), 4) for v in self.center_sigma],
               "size_m": [round(float(v), 4) for v in self.size], "yaw_rad": round(float(self.yaw), 4),
               "first_seen_ns": self.first_seen_ns, "last_seen_ns": self.last_seen_ns,
               "observations": self.observations, "confidence": round(self.confidence, 4)}
        if now_ns is not None:
            out["age_s"] = round(self.age_s(now_ns), 3)
        return out

    # ------------------------------------------------------------------------------------------ updates
    def _remember_words(self, obs: Observation) -> None:
        box = obs.box
        if box.label:
            self.labels[box.label] += 1
        self.phrases.update(obs.phrases)
        if box.attributes.get("color"):
            self.colors[str(box.attributes["color"])] += 1
        if box.attributes.get("shape"):
            self.shapes[str(box.attributes["shape"])] += 1
        if not box.attributes.get("category_known", True):
            self.category_known = False

    def fuse(self, obs: Observation, config: MemoryConfig) -> bool:
        """Fold one associated observation in; True when it restarted the estimate (the object moved)."""
        dt_s = max(0.0, (obs.stamp_ns - self.last_seen_ns) * 1e-9)
        growth = config.process_sigma_m_per_sqrt_s ** 2 * dt_s
        self.center_var = self.center_var + growth
        self.size_var = self.size_var + growth
        measured = obs.upright
        # bring the observation to the quarter turn nearest the estimate (swapping its sides if odd)
        turns = int(np.round((measured.yaw - self.yaw) / HALF_PI))
        obs_yaw, obs_size = measured.yaw - turns * HALF_PI, measured.size.copy()
        if turns % 2:
            obs_size[[0, 1]] = obs_size[[1, 0]]
        innovation = np.abs(measured.center - self.center) / np.sqrt(self.center_var + obs.center_var)
        moved = bool(np.any(innovation > config.reset_innovation_sigmas))
        if moved:
            self.center, self.center_var = measured.center.copy(), obs.center_var.copy()
            self.size, self.size_var = obs_size, obs.size_var.copy()
            self.yaw, self.yaw_var = obs_yaw, obs.yaw_var
            self.resets += 1
        else:
            self.center, self.center_var = _kalman(self.center, self.center_var, measured.center, obs.center_var)
            self.size, self.size_var = _kalman(self.size, self.size_var, obs_size, obs.size_var)
            gain = self.yaw_var / (self.yaw_var + obs.yaw_var)
            self.yaw, self.yaw_var = float(self.yaw + gain * (obs_yaw - self.yaw)), float((1 - gain) * self.yaw_var)
        turns = int(np.floor((self.yaw + np.pi / 4) / HALF_PI))  # keep yaw in [-pi/4, pi/4) (UprightBox)
        if turns:
            if turns % 2:
                self.size[[0, 1]], self.size_var[[0, 1]] = self.size[[1, 0]], self.size_var[[1, 0]]
            self.yaw -= turns * HALF_PI
        self.last_seen_ns = max(self.last_seen_ns, obs.stamp_ns)
        self.observations += 1
        self.misses = 0
        self.log_odds = min(config.max_log_odds, self.log_odds + config.hit_log_odds)
        self._remember_words(obs)
        return moved

    def miss(self, config: MemoryConfig) -> None:
        """In view, not occluded, not detected."""
        self.misses += 1
        self.log_odds -= config.miss_log_odds


def _kalman(x: np.ndarray, p: np.ndarray, z: np.ndarray, r: np.ndarray):
    gain = p / (p + r)
    return x + gain * (z - x), (1.0 - gain) * p
