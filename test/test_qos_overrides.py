"""The perception node's QoS: its defaults, changed by rclpy's standard ``qos_overrides.<topic>.<entity>.*``
parameters given at start-up, as another node sees them in the ROS graph.

The node is created in this process and its endpoints opened without loading the model (they do not need it).
"""

from __future__ import annotations

import os

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from ros_helpers import module_domain_id  # noqa: E402
from ros_wait import spin_until  # noqa: E402

from hfl_ros.nodes.perception import PerceptionNode  # noqa: E402
from hfl_ros.ros.names import qos_override_parameters  # noqa: E402
from hfl_ros.ros.params import ParameterError  # noqa: E402

pytestmark = pytest.mark.ros

#: A namespace of this process only, so that no other test's node shares these topics.
NAMESPACE = f"/qos_test_{os.getpid()}"
NODE = f"{NAMESPACE}/hfl_perception"
IMAGE, CAMERA_INFO = f"{NAMESPACE}/image", f"{NAMESPACE}/camera_info"
POSES, MARKERS = f"{NODE}/hand_object_poses", f"{NODE}/markers"
TIMEOUT = 30.0


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=module_domain_id(__name__))
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def observer(context):
    node = rclpy.create_node("qos_observer", context=context)
    yield node
    node.destroy_node()


@pytest.fixture
def make_node(context, tmp_path):
    """A perception node in NAMESPACE with these parameter overrides (the checkpoint is never read)."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read: the model is not loaded")
    nodes = []

    def make(**overrides: object) -> PerceptionNode:
        parameters = [Parameter("checkpoint_path", value=str(checkpoint))]
        parameters += [Parameter(name, value=value) for name, value in overrides.items()]
        node = PerceptionNode(context=context, namespace=NAMESPACE, parameter_overrides=parameters)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()
        node.destroy_node()


def _reliability(observer, topic: str, entity: str) -> ReliabilityPolicy:
    """The reliability of the perception node's ``entity`` on ``topic``, once it is in the graph."""
    infos = observer.get_publishers_info_by_topic if entity == "publisher" else \
        observer.get_subscriptions_info_by_topic

    def found():
        return [i for i in infos(topic) if (i.node_namespace, i.node_name) == (NAMESPACE, "hfl_perception")]

    spin_until(observer, found, TIMEOUT, f"the {entity} of {topic} in the graph")
    (info,) = found()
    return info.qos_profile.reliability


def test_defaults_best_effort_inputs_reliable_outputs(make_node, observer):
    node = make_node()
    node.open()
    assert _reliability(observer, IMAGE, "subscription") == ReliabilityPolicy.BEST_EFFORT
    assert _reliability(observer, POSES, "publisher") == ReliabilityPolicy.RELIABLE
    # Every endpoint declares its overridable policies with the defaults as values.
    declared = {name: node.get_parameter(f"qos_overrides.{name}").value for name in (
        f"{IMAGE}.subscription.depth", f"{POSES}.publisher.depth", "/tf.publisher.depth",
        "/tf.publisher.history")}
    assert declared == {f"{IMAGE}.subscription.depth": 5, f"{POSES}.publisher.depth": 10,
                        "/tf.publisher.depth": 100, "/tf.publisher.history": "keep_last"}


def test_overrides_at_start_up_change_the_endpoints(make_node, observer):
    node = make_node(**qos_override_parameters(IMAGE, "subscription", reliability="reliable"),
                     **qos_override_parameters(MARKERS, "publisher", reliability="best_effort", depth=3))
    node.open()
    assert _reliability(observer, IMAGE, "subscription") == ReliabilityPolicy.RELIABLE
    assert _reliability(observer, CAMERA_INFO, "subscription") == ReliabilityPolicy.BEST_EFFORT  # not given
    assert _reliability(observer, MARKERS, "publisher") == ReliabilityPolicy.BEST_EFFORT
    assert _reliability(observer, POSES, "publisher") == ReliabilityPolicy.RELIABLE
    assert node.pub_markers.qos_profile.depth == 3  # DDS discovery does not carry the depth: not in the graph
    # Read-only once the endpoint exists, as rclpy declares them.
    (result,) = node.set_parameters([Parameter(f"qos_overrides.{IMAGE}.subscription.reliability",
                                               value="best_effort")])
    assert not result.successful and "read-only" in result.reason


@pytest.mark.filterwarnings("ignore:A zero depth with KEEP_LAST")
@pytest.mark.parametrize("policy, value, needle", [
    ("reliability", "sometimes", "Unexpected QoS override for policy `reliability`"),
    ("depth", 0, "depth must be >= 1 with history keep_last"),
])
def test_unusable_override_is_a_parameter_error_naming_it(make_node, policy, value, needle):
    name = f"qos_overrides.{IMAGE}.subscription.{policy}"
    node = make_node(**{name: value})
    with pytest.raises(ParameterError, match=needle) as info:
        node.open()
    assert info.value.name == name
    assert not node.is_open and list(node.subscriptions) == []  # what open() had created is gone


def test_an_override_of_no_endpoint_is_reported(make_node, capfd):
    node = make_node(**qos_override_parameters("/elsewhere", "subscription", reliability="reliable"))
    node.open()
    assert node.is_open
    err = capfd.readouterr().err
    assert "ignoring QoS override(s) ['qos_overrides./elsewhere.subscription.reliability']" in err, err
    assert "unknown parameter" not in err, err
