"""The 21 YCB object classes of DexYCB and HO3D, numbered as DexYCB numbers them (spec §9)."""

from __future__ import annotations

from ..errors import UnknownObjectClassError

#: DexYCB class id -> YCB object name. HO3D uses the same YCB objects and names.
YCB_CLASSES: dict[int, str] = {
    1: "002_master_chef_can",
    2: "003_cracker_box",
    3: "004_sugar_box",
    4: "005_tomato_soup_can",
    5: "006_mustard_bottle",
    6: "007_tuna_fish_can",
    7: "008_pudding_box",
    8: "009_gelatin_box",
    9: "010_potted_meat_can",
    10: "011_banana",
    11: "019_pitcher_base",
    12: "021_bleach_cleanser",
    13: "024_bowl",
    14: "025_mug",
    15: "035_power_drill",
    16: "036_wood_block",
    17: "037_scissors",
    18: "040_large_marker",
    19: "051_large_clamp",
    20: "052_extra_large_clamp",
    21: "061_foam_brick",
}

#: YCB object name -> class id.
YCB_IDS: dict[str, int] = {name: cid for cid, name in YCB_CLASSES.items()}

#: Symmetric objects scored with ADD-S by the official DexYCB evaluation: bowl, wood block, extra-large
#: clamp, foam brick. It leaves out 051_large_clamp (id 19), as symmetric as id 20 (spec §10.8).
OFFICIAL_SYMMETRIC_IDS: tuple[int, ...] = (13, 16, 20, 21)

#: The list with the large clamp added, for users who want the consistent choice.
SYMMETRIC_IDS_WITH_LARGE_CLAMP: tuple[int, ...] = (13, 16, 19, 20, 21)


def class_id_for_name(name: str) -> str:
    """The class id (as a string, e.g. "5") of a YCB object name such as "006_mustard_bottle".

    Names are matched exactly, then by their numeric prefix ("006"), so "006_mustard" also works.
    """
    if name in YCB_IDS:
        return str(YCB_IDS[name])
    prefix = name.split("_", 1)[0]
    for cid, full in YCB_CLASSES.items():
        if full.split("_", 1)[0] == prefix and prefix.isdigit():
            return str(cid)
    raise UnknownObjectClassError(f"unknown YCB object name {name!r}; known: {', '.join(YCB_IDS)}")


def name_for_class_id(class_id: str | int) -> str:
    """The YCB object name of a class id ("5" or 5 -> "006_mustard_bottle")."""
    try:
        return YCB_CLASSES[int(class_id)]
    except (KeyError, ValueError):
        raise UnknownObjectClassError(
            f"unknown YCB class id {class_id!r}; known ids are 1..{len(YCB_CLASSES)}"
        ) from None
