"""Which topics of a bag are the labeler's inputs: given ones checked, the others by default or detected."""

from __future__ import annotations

from collections.abc import Sequence

from ..ros.names import DEFAULT_DETECTIONS_TOPIC, DEFAULT_IMAGE_TOPIC
from .errors import MissingTopicError
from .frames import CAMERA_INFO_TYPE, DETECTIONS_TYPE, IMAGE_TYPES, InputTopics
from .reader import TopicInfo


def _pick_topic(topics: dict[str, TopicInfo], requested: str | None, default: str | None,
                types: Sequence[str], what: str, flag: str) -> str:
    type_list = " or ".join(types)
    candidates = [name for name, info in topics.items() if info.msgtype in types]
    if requested:
        info = topics.get(requested)
        if info is None:
            hint = f"; {what} topics in the bag: {', '.join(candidates)}" if candidates else ""
            raise MissingTopicError(f"{what} topic {requested} is not in the bag{hint}")
        if info.msgtype not in types:
            raise MissingTopicError(f"{what} topic {requested} has type {info.msgtype}, expected {type_list}")
        chosen = requested
    elif default in topics and topics[default].msgtype in types:
        chosen = default
    elif len(candidates) == 1:
        chosen = candidates[0]
    elif not candidates:
        raise MissingTopicError(f"the bag has no {what} topic (no {type_list} messages); "
                                f"topics: {', '.join(topics) or 'none'}")
    else:
        raise MissingTopicError(f"the bag has several {what} topics ({', '.join(candidates)}); "
                                f"choose one with {flag}")
    if topics[chosen].count == 0:
        raise MissingTopicError(f"{what} topic {chosen} has no messages")
    return chosen


def camera_info_sibling(image_topic: str) -> str:
    """image_transport convention: /ns/image_raw[/compressed] -> /ns/camera_info."""
    parts = image_topic.rstrip("/").split("/")
    if parts[-1] in ("compressed", "compressedDepth", "theora"):
        parts = parts[:-1]
    return "/".join([*parts[:-1], "camera_info"])


def resolve_topics(topics: dict[str, TopicInfo], image: str | None = None, camera_info: str | None = None,
                   detections: str | None = None) -> InputTopics:
    """The input topics: given ones must exist with the right type; others default or are auto-detected."""
    image_topic = _pick_topic(topics, image, DEFAULT_IMAGE_TOPIC, IMAGE_TYPES, "image", "--image-topic")
    info_topic = _pick_topic(topics, camera_info, camera_info_sibling(image_topic), (CAMERA_INFO_TYPE,),
                             "camera_info", "--camera-info-topic")
    detections_topic = _pick_topic(topics, detections, DEFAULT_DETECTIONS_TOPIC, (DETECTIONS_TYPE,),
                                   "detections", "--detections-topic")
    return InputTopics(image_topic, topics[image_topic].msgtype, info_topic, detections_topic)
