"""MANO layer, restricted hand-model loader and the stand-in hand model (which is not MANO)."""

from __future__ import annotations

import pickle
import sys
import types
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from scipy.sparse import csc_matrix
from scipy.spatial.transform import Rotation

from hfl_ros.data.standin_hand import make_standin_hand_model, write_standin_hand_model
from hfl_ros.errors import HandModelError, InputError
from hfl_ros.hand_joints import (
    FINGERTIP_VERTICES,
    JOINT_NAMES,
    MANO_KINTREE_PARENTS,
    MANO_TO_OUTPUT_ORDER,
)
from hfl_ros.model.mano import (
    ManoLayer,
    find_hand_model_file,
    load_hand_model_file,
)

torch.set_num_threads(1)

BUFFER_SHAPES = {
    "th_betas": (1, 10),
    "th_shapedirs": (778, 3, 10),
    "th_posedirs": (778, 3, 135),
    "th_v_template": (1, 778, 3),
    "th_J_regressor": (16, 778),
    "th_weights": (778, 16),
    "th_faces": (1538, 3),
    "th_hands_mean": (1, 45),
    "th_selected_comps": (45, 45),
}
AA_MIRROR = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64).repeat(16)
X_MIRROR = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)


@pytest.fixture(scope="module")
def right() -> dict:
    return make_standin_hand_model("right", seed=0)


@pytest.fixture(scope="module")
def left() -> dict:
    return make_standin_hand_model("left", seed=0)


@pytest.fixture(scope="module")
def right32(right) -> dict:
    """The model as the layer holds it (float32 buffers, like manopth), in float64 for exact comparisons."""
    return {
        k: v.astype(np.float32).astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in right.items()
    }


@pytest.fixture(scope="module")
def layer(right) -> ManoLayer:
    return ManoLayer(arrays=right).double()


def random_pose(batch: int, seed: int, scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 48, generator=g, dtype=torch.float64) * scale
    betas = torch.randn(batch, 10, generator=g, dtype=torch.float64)
    return pose, betas


# ---------------------------------------------------------------------------------------------------------
# Stand-in hand model
# ---------------------------------------------------------------------------------------------------------


def test_standin_counts_layout_and_keys(right):
    assert right["v_template"].shape == (778, 3)
    assert right["f"].shape == (1538, 3) and right["f"].dtype == np.uint32
    assert right["kintree_table"].dtype == np.int64
    assert right["kintree_table"][0, 0] == 4294967295
    assert tuple(right["kintree_table"][0, 1:]) == MANO_KINTREE_PARENTS[1:]
    assert right["bs_style"] == "lbs" and right["bs_type"] == "lrotmin"
    assert right["hands_coeffs"].shape[1] == 45
    components = right["hands_components"]
    np.testing.assert_allclose(components @ components.T, np.eye(45), atol=1e-12)
    np.testing.assert_allclose(right["J"], right["J_regressor"] @ right["v_template"], atol=1e-12)


def test_standin_mesh_is_a_clean_oriented_surface(right):
    v, f = right["v_template"], right["f"].astype(np.int64)
    assert f.min() == 0 and f.max() == 777 and len(np.unique(f)) == 778  # every vertex used
    areas = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert areas.min() > 1e-6  # > 1 mm², no degenerate triangle
    assert len({tuple(sorted(t)) for t in f.tolist()}) == 1538  # no duplicate face
    directed = Counter((a, b) for t in f.tolist() for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(directed.values()) == 1  # consistent winding: each directed edge once
    boundary = [e for e in directed if (e[1], e[0]) not in directed]
    assert len(boundary) == 16  # closed except one opening at the wrist
    following = dict(boundary)
    start, loop = boundary[0][0], [boundary[0][0]]
    while following[loop[-1]] != start:
        loop.append(following[loop[-1]])
    assert len(loop) == 16  # a single loop
    # outward normals: the divergence theorem gives a positive volume (the small opening barely matters)
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert 1e-4 < volume < 1e-3  # 100-1000 cm³


def test_standin_weights_and_regressor_are_convex(right):
    weights, regressor = right["weights"], right["J_regressor"]
    assert weights.min() >= 0 and regressor.min() >= 0
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(regressor.sum(1), 1.0, atol=1e-12)
    # each vertex blends a connected group of tree joints (a joint with its parent, the wrist with knuckles)
    for row in weights:
        used = set(np.flatnonzero(row > 1e-9).tolist())
        internal_edges = sum(MANO_KINTREE_PARENTS[j] in used for j in used)
        assert internal_edges == len(used) - 1, used


def test_standin_geometry_is_a_plausible_hand(right):
    v, joints = right["v_template"], right["J"]
    wrist = joints[0]
    tips = v[list(FINGERTIP_VERTICES)]
    assert np.linalg.norm(wrist) > 0.05  # the wrist is not the origin
    assert 0.17 <= np.linalg.norm(tips[2] - wrist) <= 0.19  # wrist to middle tip
    assert 0.08 <= np.linalg.norm(joints[4] - wrist) <= 0.10  # wrist to middle knuckle
    assert 0.06 <= np.linalg.norm(joints[1] - joints[7]) <= 0.08  # index to little knuckle
    # every tip is the vertex of its finger farthest from that finger's last joint, along the finger
    for tip_vertex, distal_joint in zip(FINGERTIP_VERTICES, (15, 3, 6, 12, 9)):
        on_finger = np.flatnonzero(right["weights"][:, distal_joint] > 0.5)
        assert tip_vertex in on_finger
        bone = v[tip_vertex] - joints[distal_joint]
        assert np.argmax((v[on_finger] - joints[distal_joint]) @ bone) == list(on_finger).index(tip_vertex)
    # regressed joints lie inside the mesh: the nearest vertices surround them (no vertex closer than 4 mm)
    for joint in joints[1:]:
        assert np.linalg.norm(v - joint, axis=1).min() > 0.004


def test_standin_is_deterministic_and_seeded(right):
    again = make_standin_hand_model("right", seed=0)
    other = make_standin_hand_model("right", seed=1)
    for key, value in right.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, again[key])
    assert not np.array_equal(right["hands_components"], other["hands_components"])
    np.testing.assert_array_equal(right["f"], other["f"])


# manopth reads the left middle fingertip at vertex 445, so the left stand-in swaps vertices 444 and 445.
LEFT_PERM = np.arange(778)
LEFT_PERM[[444, 445]] = [445, 444]


def test_standin_left_is_the_mirror_of_right(right, left):
    np.testing.assert_array_equal(left["v_template"], right["v_template"][LEFT_PERM] * [-1, 1, 1])
    np.testing.assert_array_equal(LEFT_PERM[left["f"]], right["f"][:, ::-1])
    np.testing.assert_array_equal(left["weights"], right["weights"][LEFT_PERM])


def test_write_then_load_gives_the_same_model(tmp_path, right):
    path = write_standin_hand_model(tmp_path / "STANDIN_HAND_RIGHT.pkl", "right", seed=0)
    with path.open("rb") as stream:
        assert stream.read(2) == b"\x80\x02"  # protocol 2, like the MANO files
        stream.seek(0)
        raw = pickle.load(stream)
    assert isinstance(raw["J_regressor"], csc_matrix)
    loaded = load_hand_model_file(path)
    assert set(loaded) == set(right)
    for key, value in right.items():
        if isinstance(value, str):
            assert loaded[key] == value
        else:
            np.testing.assert_array_equal(loaded[key], value)


# ---------------------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------------------


def test_buffers_names_order_and_shapes(right):
    for layer in (ManoLayer(), ManoLayer(arrays=right)):
        state = layer.state_dict()
        assert list(state) == list(BUFFER_SHAPES)
        assert {k: tuple(v.shape) for k, v in state.items()} == BUFFER_SHAPES
        assert state["th_faces"].dtype == torch.int64
    empty = ManoLayer()
    assert all(not value.any() for value in empty.state_dict().values())
    assert ManoLayer(arrays=right, use_pca=True, ncomps=12).th_selected_comps.shape == (12, 45)


def test_zero_buffers_filled_from_a_state_dict_match(right):
    source = ManoLayer(arrays=right, center_idx=0)
    target = ManoLayer(center_idx=0)
    target.load_state_dict(source.state_dict(), strict=True)
    pose, betas = random_pose(2, seed=3)
    for a, b in zip(source(pose.float(), betas.float()), target(pose.float(), betas.float())):
        torch.testing.assert_close(a, b)
    np.testing.assert_array_equal(target.faces, right["f"].astype(np.int64))


def test_zero_pose_gives_the_template(layer, right32):
    verts, joints = layer(torch.zeros(2, 48, dtype=torch.float64))
    template = right32["v_template"]
    kinematic = right32["J_regressor"] @ template
    expected = np.concatenate([kinematic, template[list(FINGERTIP_VERTICES)]])[list(MANO_TO_OUTPUT_ORDER)]
    np.testing.assert_allclose(verts[1].numpy(), template, atol=1e-12)
    np.testing.assert_allclose(joints[1].numpy(), expected, atol=1e-12)
    assert joints.shape == (2, len(JOINT_NAMES), 3)


@pytest.mark.parametrize("center_idx", [0, 9])
def test_centring(right, center_idx):
    pose, betas = random_pose(3, seed=1)
    plain = ManoLayer(arrays=right).double()
    centred = ManoLayer(arrays=right, center_idx=center_idx).double()
    verts, joints = plain(pose, betas)
    verts_c, joints_c = centred(pose, betas)
    torch.testing.assert_close(joints_c[:, center_idx], torch.zeros(3, 3, dtype=torch.float64))
    offset = joints[:, center_idx : center_idx + 1]
    torch.testing.assert_close(joints_c, joints - offset)
    torch.testing.assert_close(verts_c, verts - offset)


def test_fingertip_joints_are_the_tip_vertices(layer):
    pose, betas = random_pose(4, seed=2, scale=1.0)
    verts, joints = layer(pose, betas)
    tip_joints = [
        JOINT_NAMES.index(f"{finger}_tip") for finger in ("thumb", "index", "middle", "ring", "little")
    ]
    assert tip_joints == [4, 8, 12, 16, 20]
    torch.testing.assert_close(joints[:, tip_joints], verts[:, list(FINGERTIP_VERTICES)], rtol=0, atol=0)


def test_joint_order_follows_the_kinematic_tree(layer):
    """Posed 21 joints: bone lengths in the tree of JOINT_NAMES do not change with the pose."""
    _, rest = layer(torch.zeros(1, 48, dtype=torch.float64))
    pose, _ = random_pose(2, seed=5, scale=0.8)
    _, posed = layer(pose)
    from hfl_ros.hand_joints import BONES

    for parent, child in BONES:
        if JOINT_NAMES[child].endswith("_tip"):
            continue  # tips are skinned vertices, not rigidly attached
        rest_len = (rest[0, child] - rest[0, parent]).norm()
        torch.testing.assert_close((posed[:, child] - posed[:, parent]).norm(dim=-1), rest_len.expand(2))


def test_left_with_mirrored_pose_is_the_mirror_of_right(right, left):
    right_layer = ManoLayer(arrays=right, flat_hand_mean=False).double()
    left_layer = ManoLayer(arrays=left, side="left", flat_hand_mean=False).double()
    assert left_layer.side == "left"
    pose, betas = random_pose(3, seed=4)
    verts_r, joints_r = right_layer(pose, betas)
    verts_l, joints_l = left_layer(pose * AA_MIRROR, betas)
    torch.testing.assert_close(verts_l[:, LEFT_PERM], verts_r * X_MIRROR)
    torch.testing.assert_close(joints_l[:, 12], verts_l[:, 445])  # manopth's left middle tip
    torch.testing.assert_close(joints_l, joints_r * X_MIRROR)


def test_hand_mean_is_added_unless_flat(right):
    relaxed = ManoLayer(arrays=right, flat_hand_mean=False).double()
    flat = ManoLayer(arrays=right).double()
    mean = torch.as_tensor(right["hands_mean"])
    np.testing.assert_allclose(relaxed.th_hands_mean[0].numpy(), right["hands_mean"], atol=1e-7)
    assert not flat.th_hands_mean.any()
    pose, betas = random_pose(2, seed=12)
    shifted = pose.clone()
    shifted[:, 3:] += relaxed.th_hands_mean
    for a, b in zip(relaxed(pose, betas), flat(shifted, betas)):
        torch.testing.assert_close(a, b)
    assert mean.abs().max() > 0.05  # the stand-in's mean pose is a visible curl


@pytest.mark.parametrize("ncomps", [45, 10])
def test_pca_path_equals_axis_angle_path(right, ncomps):
    pca = ManoLayer(arrays=right, use_pca=True, ncomps=ncomps, flat_hand_mean=False).double()
    axis_angle = ManoLayer(arrays=right, flat_hand_mean=False).double()
    g = torch.Generator().manual_seed(6)
    coeffs = torch.randn(2, 3 + ncomps, generator=g, dtype=torch.float64)
    components = torch.as_tensor(right["hands_components"][:ncomps])
    pose = torch.cat([coeffs[:, :3], coeffs[:, 3:] @ components], 1)
    for a, b in zip(pca(coeffs), axis_angle(pose)):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(axis_angle.th_hands_mean, torch.zeros(1, 45, dtype=torch.float64))


def test_global_rotation_is_rigid_about_the_root(layer, right):
    pose, betas = random_pose(2, seed=7)
    pose[:, :3] = 0
    verts, joints = layer(pose, betas)
    rotvec = np.array([0.3, -1.1, 0.7])
    rotated_pose = pose.clone()
    rotated_pose[:, :3] = torch.as_tensor(rotvec)
    verts_r, joints_r = layer(rotated_pose, betas)
    R = torch.as_tensor(Rotation.from_rotvec(rotvec).as_matrix())
    root = joints[:, :1]  # the wrist does not move under the global rotation
    torch.testing.assert_close(joints_r[:, 0], joints[:, 0])
    torch.testing.assert_close(verts_r, (verts - root) @ R.T + root)
    torch.testing.assert_close(joints_r, (joints - root) @ R.T + root)


def reference_mano(model: dict, pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slow, loop-based MANO for one hand, written independently of the layer (scipy rotations)."""
    parents = model["kintree_table"][0]
    rotations = [Rotation.from_rotvec(pose[3 * j : 3 * j + 3]).as_matrix() for j in range(16)]
    shaped = model["v_template"].copy()
    for k in range(10):
        shaped += betas[k] * model["shapedirs"][:, :, k]
    rest = model["J_regressor"] @ shaped
    posed = shaped.copy()
    for j in range(1, 16):
        for a in range(3):
            for b in range(3):
                posed += (rotations[j][a, b] - (a == b)) * model["posedirs"][:, :, 9 * (j - 1) + 3 * a + b]
    world = []
    for j in range(16):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        local[:3, 3] = rest[j] - (rest[parents[j]] if j else 0)
        world.append(local if j == 0 else world[parents[j]] @ local)
    verts = np.zeros_like(posed)
    for i in range(len(posed)):
        for j in range(16):
            if model["weights"][i, j]:
                moved = world[j][:3, :3] @ (posed[i] - rest[j]) + world[j][:3, 3]
                verts[i] += model["weights"][i, j] * moved
    joints = np.array([w[:3, 3] for w in world])
    return verts, np.concatenate([joints, verts[list(FINGERTIP_VERTICES)]])[list(MANO_TO_OUTPUT_ORDER)]


def test_layer_matches_a_loop_based_reference(layer, right32):
    pose, betas = random_pose(2, seed=8, scale=0.7)
    verts, joints = layer(pose, betas)
    for i in range(2):
        ref_verts, ref_joints = reference_mano(right32, pose[i].numpy(), betas[i].numpy())
        np.testing.assert_allclose(verts[i].numpy(), ref_verts, atol=1e-12)
        np.testing.assert_allclose(joints[i].numpy(), ref_joints, atol=1e-12)


def test_two_joint_chain_by_hand():
    """A bar of vertices skinned to the wrist and to the index knuckle, bent 90° at the knuckle."""
    arrays = make_standin_hand_model("right")
    arrays = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
    arrays["shapedirs"][:] = 0
    arrays["posedirs"][:] = 0
    arrays["J_regressor"][:] = 0
    arrays["J_regressor"][:, 0] = 1.0  # every joint at vertex 0 ...
    arrays["J_regressor"][1] = 0
    arrays["J_regressor"][1, 1] = 1.0  # ... but the index knuckle (joint 1) at vertex 1
    arrays["v_template"][:3] = [[0.0, 0.0, 0.0], [0.125, 0.0, 0.0], [0.25, 0.0, 0.0]]  # exact in float32
    arrays["weights"][:] = 0
    arrays["weights"][:, 0] = 1.0
    arrays["weights"][2] = 0
    arrays["weights"][2, 1] = 1.0  # vertex 2 follows the knuckle
    layer = ManoLayer(arrays=arrays).double()
    pose = torch.zeros(1, 48, dtype=torch.float64)
    pose[0, 3:6] = torch.tensor([0.0, 0.0, np.pi / 2], dtype=torch.float64)  # knuckle: 90° about z
    verts, _ = layer(pose)
    np.testing.assert_allclose(
        verts[0, :3].numpy(), [[0, 0, 0], [0.125, 0, 0], [0.125, 0.125, 0]], atol=1e-12
    )
    pose[0, 0:3] = torch.tensor([0.0, 0.0, np.pi / 2], dtype=torch.float64)  # plus the root: 90° more about z
    verts, _ = layer(pose)
    np.testing.assert_allclose(
        verts[0, :3].numpy(), [[0, 0, 0], [0, 0.125, 0], [-0.125, 0.125, 0]], atol=1e-12
    )


def test_float32_matches_float64_and_gradients_flow(right):
    pose, betas = random_pose(2, seed=9)
    pose[0] = 0  # zero angles must not produce NaN gradients
    layer32 = ManoLayer(arrays=right)
    pose32 = pose.float().requires_grad_(True)
    verts32, joints32 = layer32(pose32, betas.float())
    verts64, joints64 = ManoLayer(arrays=right).double()(pose, betas)
    assert verts32.dtype == torch.float32 and verts64.dtype == torch.float64
    torch.testing.assert_close(joints32.double(), joints64, atol=2e-6, rtol=0)
    (verts32.square().sum() + joints32.sum()).backward()
    assert torch.isfinite(pose32.grad).all() and pose32.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(right):
    pose, betas = random_pose(2, seed=10)
    cpu = ManoLayer(arrays=right, center_idx=0)
    gpu = ManoLayer(arrays=right, center_idx=0).cuda()
    for a, b in zip(cpu(pose.float(), betas.float()), gpu(pose.float().cuda(), betas.float().cuda())):
        torch.testing.assert_close(a, b.cpu(), atol=1e-5, rtol=0)


def test_bad_pose_or_betas_shape_is_refused(layer):
    with pytest.raises(InputError, match=r"\(B, 48\)"):
        layer(torch.zeros(2, 45, dtype=torch.float64))
    with pytest.raises(InputError, match="betas"):
        layer(torch.zeros(2, 48, dtype=torch.float64), torch.zeros(2, 9, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------------
# Restricted loader
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def fake_modules(**modules: dict[str, type]):
    """Register throw-away modules (e.g. chumpy.ch) holding the given classes, removed again afterwards."""
    saved = {name: sys.modules.get(name) for name in modules}
    try:
        for name, classes in modules.items():
            module = types.ModuleType(name)
            for cls_name, cls in classes.items():
                cls.__module__, cls.__qualname__, cls.__name__ = name, cls_name, cls_name
                setattr(module, cls_name, cls)
            sys.modules[name] = module
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def make_node(cls: type, **state) -> object:
    node = cls.__new__(cls)
    node.__dict__.update(state)
    return node


def chumpy_classes() -> dict[str, dict[str, type]]:
    return {
        "chumpy": {},
        "chumpy.ch": {"Ch": type("Ch", (), {})},
        "chumpy.reordering": {name: type(name, (), {}) for name in ("Select", "transpose", "Reshape")},
        "chumpy.ch_ops": {"add": type("add", (), {})},
    }


@pytest.mark.parametrize("protocol", [0, 2])
def test_loads_chumpy_objects_without_chumpy(tmp_path, right, protocol):
    classes = chumpy_classes()
    Ch = classes["chumpy.ch"]["Ch"]
    Select, Transpose, Reshape = (classes["chumpy.reordering"][n] for n in ("Select", "transpose", "Reshape"))
    rng = np.random.default_rng(0)
    flat = right["v_template"].ravel()
    perm = rng.permutation(flat.size)
    scrambled = np.empty_like(flat)
    scrambled[perm] = flat  # so that scrambled[perm] == flat
    content = dict(right)
    content["J_regressor"] = csc_matrix(right["J_regressor"])
    content["v_template"] = make_node(
        Select, a=make_node(Ch, x=scrambled), idxs=perm, preferred_shape=(778, 3)
    )
    content["posedirs"] = make_node(
        Transpose, a=make_node(Ch, x=right["posedirs"].transpose(2, 0, 1)), axes=(1, 2, 0)
    )
    content["shapedirs"] = make_node(
        Reshape, a=make_node(Ch, x=right["shapedirs"].ravel()), newshape=(778, 3, 10)
    )
    content["hands_mean"] = make_node(Select, a=make_node(Ch, x=right["hands_mean"]), idxs=np.arange(45))
    content["weights"] = make_node(Ch, x=right["weights"])
    path = tmp_path / "MANO_RIGHT.pkl"
    with fake_modules(**classes):
        path.write_bytes(pickle.dumps(content, protocol=protocol))
    assert "chumpy.ch" not in sys.modules and "chumpy.reordering" not in sys.modules
    loaded = load_hand_model_file(path)
    for key in ("v_template", "posedirs", "shapedirs", "hands_mean", "weights", "J_regressor"):
        np.testing.assert_array_equal(loaded[key], right[key])


def test_broken_chumpy_state_names_file_and_key(tmp_path, right):
    classes = chumpy_classes()
    Ch, Select = classes["chumpy.ch"]["Ch"], classes["chumpy.reordering"]["Select"]
    content = dict(right, shapedirs=make_node(Select, a=make_node(Ch, x=right["shapedirs"])))  # no idxs
    path = tmp_path / "MANO_RIGHT.pkl"
    with fake_modules(**classes):
        path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(HandModelError, match=r"'shapedirs'.*idxs") as info:
        load_hand_model_file(path)
    assert str(path) in str(info.value)


def test_empty_optional_array_loads(tmp_path, right):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(dict(right, hands_coeffs=np.zeros((0, 45))), protocol=2))
    assert load_hand_model_file(path)["hands_coeffs"].shape == (0, 45)


def test_loads_a_csc_matrix_from_scipys_old_module_path(tmp_path, right):
    OldCsc = type("csc_matrix", (), {})
    sparse = csc_matrix(right["J_regressor"])
    matrix = make_node(
        OldCsc,
        _shape=sparse.shape,
        data=sparse.data,
        indices=sparse.indices,
        indptr=sparse.indptr,
        maxprint=50,
    )
    content = dict(right, J_regressor=matrix)
    path = tmp_path / "old.pkl"
    with fake_modules(**{"scipy.sparse.csc": {"csc_matrix": OldCsc}}):
        path.write_bytes(pickle.dumps(content, protocol=2))
    assert b"scipy.sparse.csc\n" in path.read_bytes()
    np.testing.assert_array_equal(load_hand_model_file(path)["J_regressor"], right["J_regressor"])


def test_refuses_an_unknown_chumpy_class(tmp_path, right):
    classes = chumpy_classes()
    add = classes["chumpy.ch_ops"]["add"]
    Ch = classes["chumpy.ch"]["Ch"]
    content = dict(right, v_template=make_node(add, a=make_node(Ch, x=right["v_template"]), b=1.0))
    path = tmp_path / "MANO_RIGHT.pkl"
    with fake_modules(**classes):
        path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(HandModelError, match=r"chumpy\.ch_ops\.add") as info:
        load_hand_model_file(path)
    assert str(path) in str(info.value)


class _Eval:
    def __reduce__(self):
        return eval, ("print('evaluated')",)


def test_refuses_os_system_and_builtins_eval(tmp_path):
    marker = tmp_path / "pwned"
    os_system = tmp_path / "os_system.pkl"
    os_system.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(HandModelError, match=r"os\.system") as info:
        load_hand_model_file(os_system)
    assert str(os_system) in str(info.value)
    assert not marker.exists()
    # protocol 2 writes Python 2 module names, protocol 4 Python 3 ones
    for protocol, name in ((2, r"__builtin__\.eval"), (4, r"builtins\.eval")):
        builtins_eval = tmp_path / f"eval{protocol}.pkl"
        builtins_eval.write_bytes(pickle.dumps({"v_template": _Eval()}, protocol=protocol))
        with pytest.raises(HandModelError, match=name):
            load_hand_model_file(builtins_eval)


def test_truncated_non_pickle_and_missing_files(tmp_path):
    good = write_standin_hand_model(tmp_path / "good.pkl")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    not_pickle = tmp_path / "notes.pkl"
    not_pickle.write_text("this is a text file, not a hand model\n")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    for path in (truncated, not_pickle, empty):
        with pytest.raises(HandModelError, match="not a readable") as info:
            load_hand_model_file(path)
        assert str(path) in str(info.value)
    missing = tmp_path / "MANO_RIGHT.pkl"
    with pytest.raises(HandModelError, match="does not exist") as info:
        load_hand_model_file(missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("posedirs"), "missing key.*posedirs"),
        (lambda m: m.update(v_template=np.zeros((777, 3))), r"'v_template' has shape \(777, 3\)"),
        (lambda m: m.update(f=m["f"] + 5), "'f' has vertex indices"),
        (lambda m: m.update(kintree_table=np.zeros((2, 16), np.int64)), "kintree_table"),
        (lambda m: m.update(weights=np.full((778, 16), np.nan)), "'weights' contains non-finite"),
    ],
)
def test_wrong_layout_names_file_and_key(tmp_path, right, change, message):
    content = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in right.items()}
    change(content)
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(HandModelError, match=message) as info:
        load_hand_model_file(path)
    assert str(path) in str(info.value)


def test_a_pickled_list_is_not_a_hand_model(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(HandModelError, match="expected a dict"):
        load_hand_model_file(path)


def test_find_hand_model_file(tmp_path):
    with pytest.raises(HandModelError) as info:
        find_hand_model_file(tmp_path, "right")
    for text in (str(tmp_path), "MANO_RIGHT.pkl", "STANDIN_HAND_RIGHT.pkl"):
        assert text in str(info.value)
    with pytest.raises(HandModelError, match="does not exist"):
        find_hand_model_file(tmp_path / "nowhere", "left")
    with pytest.raises(HandModelError, match="side"):
        find_hand_model_file(tmp_path, "middle")
    standin = write_standin_hand_model(tmp_path / "STANDIN_HAND_LEFT.pkl", "left")
    assert find_hand_model_file(tmp_path, "left") == standin
    with pytest.raises(HandModelError, match=r"MANO_RIGHT\.pkl"):
        find_hand_model_file(tmp_path, "right")
    official = tmp_path / "MANO_LEFT.pkl"
    official.write_bytes(standin.read_bytes())
    assert find_hand_model_file(tmp_path, "left") == official  # the real model wins over the stand-in
    layer = ManoLayer(tmp_path, side="left")
    np.testing.assert_array_equal(layer.faces, load_hand_model_file(official)["f"])
