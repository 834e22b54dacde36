"""The counters of one labeling run, saved as summary.json and printed at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class LabelSummary:
    """Counters of one labeling run (saved as summary.json)."""

    bag: str = ""
    out: str = ""
    topics: dict[str, str] = field(default_factory=dict)
    images: int = 0
    synced_frames: int = 0
    labeled_frames: int = 0
    resumed_frames: int = 0
    estimated_frames: int = 0
    estimator_calls: int = 0
    pairs: int = 0
    pairs_ok: int = 0
    pair_failures: dict[str, int] = field(default_factory=dict)
    frame_failures: dict[str, int] = field(default_factory=dict)
    frames_without_detections: int = 0
    frames_without_hands: int = 0
    frames_without_camera_info: int = 0
    images_out_of_order: int = 0
    unmatched_detections: int = 0
    dropped_previous_records: int = 0
    total_labeled_frames: int = 0
    elapsed_s: float = 0.0
    fps: float = 0.0
    error: str | None = None
    error_reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def text(self) -> str:
        by_reason = sorted({**self.frame_failures, **self.pair_failures}.items())
        failures = ", ".join(f"{k}: {v}" for k, v in by_reason)
        lines = [
            f"frames: {self.images} images, {self.synced_frames} synced, {self.labeled_frames} labeled now"
            + (f", {self.resumed_frames} already labeled (resume)" if self.resumed_frames else ""),
            f"pairs: {self.pairs} ({self.pairs_ok} ok)",
            f"failures by reason: {failures or 'none'}",
            f"frames without detections: {self.frames_without_detections}, without hands: "
            f"{self.frames_without_hands}, without camera_info: {self.frames_without_camera_info}",
            f"speed: {self.fps:.2f} frames/s ({self.elapsed_s:.1f} s)",
        ]
        if self.images_out_of_order:
            lines.append(f"images skipped for out-of-order stamps: {self.images_out_of_order}")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)
