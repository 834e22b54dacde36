"""The 21 hand joints: names, order and skeleton, as HFL-Net (manopth order) outputs them."""

from __future__ import annotations

#: Joint names in the network's output order: the wrist, then thumb, index, middle, ring and little
#: finger, each from the knuckle (mcp) to the tip.
JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_mcp", "thumb_pip", "thumb_dip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)

#: Parent of each joint in JOINT_NAMES order (-1 for the wrist): the bones of the skeleton.
JOINT_PARENTS: tuple[int, ...] = (
    -1,
    0, 1, 2, 3,
    0, 5, 6, 7,
    0, 9, 10, 11,
    0, 13, 14, 15,
    0, 17, 18, 19,
)

#: (parent, child) index pairs, 20 bones.
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(JOINT_PARENTS) if p >= 0)

#: Mesh vertex of each fingertip (thumb, index, middle, ring, little) in the MANO topology.
FINGERTIP_VERTICES: tuple[int, ...] = (745, 317, 444, 556, 673)

#: The same for a left-hand model: manopth samples the left middle fingertip at vertex 445, not 444.
FINGERTIP_VERTICES_LEFT: tuple[int, ...] = (745, 317, 445, 556, 673)

#: Maps [16 MANO kinematic joints, 5 tips] to JOINT_NAMES order (spec §5).
MANO_TO_OUTPUT_ORDER: tuple[int, ...] = (
    0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20,
)

#: Parents of the 16 MANO kinematic joints (root first).
MANO_KINTREE_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

NUM_JOINTS = 21
NUM_VERTICES = 778
NUM_FACES = 1538
