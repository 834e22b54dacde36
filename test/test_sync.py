"""StampSynchronizer and CameraInfoJoiner: matching by stamp, ordering, drops and fallbacks."""

from __future__ import annotations

import pytest

from hfl_ros.ros.sync import CameraInfoJoiner, StampSynchronizer, seconds_to_ns

MS = 1_000_000  # ns


def test_exact_sync_matches_equal_stamps_only():
    sync = StampSynchronizer(2)
    assert sync.add(0, 100 * MS, "img100") == []
    assert sync.add(1, 101 * MS, "det101") == []
    assert sync.add(1, 100 * MS, "det100") == [(100 * MS, ("img100", "det100"))]
    assert sync.pending(0) == 0
    assert sync.pending(1) == 1  # det101 still waits for its image


def test_sets_come_out_in_stamp_order_and_older_waiting_messages_are_unmatched():
    sync = StampSynchronizer(2)
    for t in (1, 2, 3):
        sync.add(0, t * MS, f"img{t}")
    assert sync.add(1, 3 * MS, "det3") == [(3 * MS, ("img3", "det3"))]
    assert sync.unmatched_per_input == [2, 0]  # img1, img2 can never match now
    # A detection older than the last emitted set is discarded at once.
    assert sync.add(1, 2 * MS, "det2") == []
    assert sync.unmatched_per_input == [2, 1]
    assert sync.pending(1) == 0


def test_approximate_sync_picks_nearest_within_slop():
    sync = StampSynchronizer(2, slop_s=0.010)
    sync.add(0, 100 * MS, "img100")
    sync.add(0, 133 * MS, "img133")
    # 128 ms is within 10 ms of 133 only.
    assert sync.add(1, 128 * MS, "det128") == [(133 * MS, ("img133", "det128"))]
    assert sync.unmatched_per_input[0] == 1  # img100 was older than the match
    sync.add(0, 166 * MS, "img166")
    assert sync.add(1, 180 * MS, "det180") == []  # 14 ms apart: beyond the slop


def test_three_inputs_need_all():
    sync = StampSynchronizer(3)
    sync.add(0, 5, "a")
    sync.add(2, 5, "c")
    assert sync.add(1, 5, "b") == [(5, ("a", "b", "c"))]


def test_full_queue_evicts_oldest_and_counts_dropped():
    sync = StampSynchronizer(2, queue_size=3)
    for t in range(5):
        sync.add(0, t, f"img{t}")
    assert sync.dropped_per_input == [2, 0]
    assert sync.dropped == 2
    assert sync.add(1, 0, "det0") == []  # img0 was evicted
    assert sync.add(1, 4, "det4") == [(4, ("img4", "det4"))]


def test_max_age_reports_detections_without_image():
    sync = StampSynchronizer(2, max_age_s=1.0)
    sync.add(1, seconds_to_ns(0.0), "det0")
    sync.add(1, seconds_to_ns(0.5), "det05")
    assert sync.unmatched == 0
    sync.add(1, seconds_to_ns(1.2), "det12")  # newest - 1 s = 0.2 s: det0 is too old now
    assert sync.unmatched_per_input == [0, 1]
    assert sync.pending(1) == 2


def test_jump_back_resets_instead_of_discarding():
    sync = StampSynchronizer(2, reset_on_jump_back_s=1.0)
    sync.add(0, seconds_to_ns(10.0), "img10")
    sync.add(1, seconds_to_ns(10.0), "det10")
    sync.add(0, seconds_to_ns(0.0), "img0")  # the bag restarted
    assert sync.resets == 1
    assert sync.add(1, seconds_to_ns(0.0), "det0") == [(0, ("img0", "det0"))]


def test_partners_lagging_behind_a_burst_are_late_not_a_jump_back():
    """A burst of images 10..49 s, then a good frame at 50 s, then their detections: the detections are up to
    40 s older than the newest image, but not older than their own input's newest, so nothing resets and the
    good frame is matched (the burst's first images were evicted by the queue limit)."""
    sync = StampSynchronizer(2, queue_size=30, reset_on_jump_back_s=1.0)
    for sec in range(10, 51):
        assert sync.add(0, seconds_to_ns(sec), f"img{sec}") == []
    matched = [m for sec in range(10, 51) for m in sync.add(1, seconds_to_ns(sec), f"det{sec}")]
    assert sync.resets == 0
    assert matched[-1] == (seconds_to_ns(50), ("img50", "det50"))
    assert [m[0] for m in matched] == [seconds_to_ns(sec) for sec in range(21, 51)]
    assert sync.dropped_per_input == [11, 0]


def test_without_reset_a_jump_back_is_unmatched():
    sync = StampSynchronizer(2)
    sync.add(0, seconds_to_ns(10.0), "img10")
    sync.add(1, seconds_to_ns(10.0), "det10")
    assert sync.add(0, 0, "img0") == []
    assert sync.unmatched_per_input == [1, 0]


def test_finish_counts_leftovers():
    sync = StampSynchronizer(2)
    sync.add(0, 1, "a")
    sync.add(1, 2, "b")
    assert sync.finish() == 2
    assert sync.unmatched == 2


@pytest.mark.parametrize("kwargs", [dict(num_inputs=0), dict(num_inputs=2, slop_s=-1.0),
                                    dict(num_inputs=2, queue_size=0)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        StampSynchronizer(**kwargs)


def test_add_rejects_unknown_input():
    with pytest.raises(IndexError):
        StampSynchronizer(2).add(2, 0, "x")


# ----------------------------------------------------------------------------------------------------------
# CameraInfoJoiner


def test_joiner_ready_at_once_when_info_is_there():
    joiner = CameraInfoJoiner(slop_s=0.0, wait_s=0.1)
    assert joiner.add_info(10, "info10") == []
    (frame,) = joiner.add_frame(10, "frame10", now_ns=0)
    assert (frame.stamp_ns, frame.payload, frame.info, frame.info_exact) == (10, "frame10", "info10", True)


def test_joiner_waits_for_late_info():
    joiner = CameraInfoJoiner(slop_s=0.0, wait_s=0.1)
    assert joiner.add_frame(10, "frame10", now_ns=0) == []
    assert joiner.waiting == 1
    (frame,) = joiner.add_info(10, "info10")
    assert frame.info == "info10" and frame.info_exact
    assert joiner.waiting == 0


def test_joiner_falls_back_to_latest_after_wait():
    joiner = CameraInfoJoiner(slop_s=0.0, wait_s=0.1)
    joiner.add_info(5, "info5")
    assert joiner.add_frame(10, "frame10", now_ns=0) == []
    assert joiner.poll(now_ns=seconds_to_ns(0.05)) == []
    (frame,) = joiner.poll(now_ns=seconds_to_ns(0.1))
    assert frame.info == "info5" and not frame.info_exact


def test_joiner_releases_none_when_no_info_ever_came():
    joiner = CameraInfoJoiner(wait_s=0.1)
    joiner.add_frame(10, "frame10", now_ns=0)
    (frame,) = joiner.poll(now_ns=seconds_to_ns(1.0))
    assert frame.info is None


def test_joiner_newer_frame_releases_older_in_order():
    joiner = CameraInfoJoiner(slop_s=0.0, wait_s=10.0)
    joiner.add_info(20, "info20")
    assert joiner.add_frame(10, "frame10", now_ns=0) == []
    released = joiner.add_frame(20, "frame20", now_ns=1)
    assert [f.payload for f in released] == ["frame10", "frame20"]
    assert [f.info_exact for f in released] == [False, True]
    assert released[0].info == "info20"  # the latest, as fallback


def test_joiner_max_fallback_age():
    joiner = CameraInfoJoiner(wait_s=0.0, max_fallback_age_s=1.0)
    joiner.add_info(0, "info0")
    (near,) = joiner.add_frame(seconds_to_ns(0.5), "near", now_ns=0)
    (far,) = joiner.add_frame(seconds_to_ns(5.0), "far", now_ns=0)
    assert near.info == "info0"
    assert far.info is None


def test_joiner_slop_matches_nearest_info():
    joiner = CameraInfoJoiner(slop_s=0.005, wait_s=0.1)
    joiner.add_info(100 * MS, "info100")
    joiner.add_info(103 * MS, "info103")
    (frame,) = joiner.add_frame(104 * MS, "f", now_ns=0)
    assert frame.info == "info103" and frame.info_exact
