"""pip-installable pure-Python part of hfl_ros (model, geometry, estimator, training, labeling, CLI).

ROS users build the whole package, messages included, with colcon (see README). This file serves users who
train, evaluate or label bags without a ROS install: `pip install .` then `hfl-ros --help`.
"""

from glob import glob

from setuptools import find_packages, setup

setup(
    name="hfl_ros",
    version="0.1.0",
    description="HFL-Net hand-object pose estimation: model, estimator, training, rosbag labeling",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hfl_ros", "hfl_ros.*"], exclude=["hfl_ros.msg", "hfl_ros.msg.*"]),
    # The .msg definitions go to <prefix>/share/hfl_ros so that the rosbags typestore finds them without ROS.
    data_files=[
        ("share/hfl_ros/msg", glob("msg/*.msg")),
        ("share/hfl_ros/interfaces/vision_msgs/msg", glob("interfaces/vision_msgs/msg/*.msg")),
        ("share/hfl_ros/config", glob("config/*.yaml")),
    ],
    install_requires=[
        "numpy>=1.26",
        "scipy",
        "torch>=2.1",
        "torchvision>=0.16",
        "opencv-python-headless>=4.8",
        "transforms3d",
        "trimesh",
        "rosbags>=0.10",
        "pyyaml",
        "tqdm",
        "pillow",
    ],
    extras_require={
        "render": ["pyrender==0.1.45", "PyOpenGL==3.1.7"],
        "test": ["pytest", "pytest-timeout", "ruff"],
    },
    entry_points={"console_scripts": ["hfl-ros=hfl_ros.cli:entry"]},
)
