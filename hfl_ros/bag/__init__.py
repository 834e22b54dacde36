"""Bags without a ROS runtime: read and write rosbag2 (rosbags), label offline, replay into live topics.

- :mod:`.typestore`: rosbags types plus hfl_ros and vision_msgs; :mod:`.reader` / :mod:`.writer`: bag I/O
  (damaged files are read up to the damage by :mod:`.salvage`).
- :mod:`.frames`: the node's sync over a bag; :mod:`.label` (+ :mod:`.label_output`, :mod:`.records`): the
  ``hfl-ros label`` pipeline and its outputs (schema in docs/labels_schema.md).
- :mod:`.player`, :mod:`.play_cli`: replay pacing and options; the rclpy side is
  :mod:`hfl_ros.nodes.bag_player`.
"""
