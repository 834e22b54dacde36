"""hfl_ros: HFL-Net hand-object pose estimation for ROS 2."""

# When the source tree is first on sys.path, it would shadow the built copy of this package that
# holds the generated messages (hfl_ros.msg). Extending __path__ lets hfl_ros.msg resolve from there.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
