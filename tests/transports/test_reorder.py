"""The reorder buffer for media that may come out of order: pure, on chunk numbers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asr_worker.transports.reorder import ChunkReorder


def test_neighbours_swapped_come_out_in_order() -> None:
    reorder: ChunkReorder[int] = ChunkReorder(depth=3)
    out = [x for chunk in (1, 3, 2, 4, 6, 5) for x in reorder.push(chunk, chunk)]
    assert out == [1, 2, 3, 4, 5, 6] and reorder.waiting == 0


def test_a_lost_chunk_is_given_up_after_depth_more_and_a_late_one_passes_at_once() -> None:
    reorder: ChunkReorder[int] = ChunkReorder(depth=2)
    assert reorder.push(1, 1) == [1]
    assert reorder.push(3, 3) == [] and reorder.push(4, 4) == []
    assert reorder.push(5, 5) == [3, 4, 5]  # 2 never came: skipped
    assert reorder.skipped == 1
    assert reorder.push(2, 2) == [2] and reorder.late == 1  # kept, not dropped
    assert reorder.push(5, 5) == [5] and reorder.late == 2  # after its turn: cannot tell it from a copy


def test_a_duplicate_waiting_chunk_is_dropped_and_flush_empties_in_order() -> None:
    reorder: ChunkReorder[str] = ChunkReorder(depth=5)
    reorder.push(1, "a")
    assert reorder.push(3, "c") == [] and reorder.push(3, "c again") == []
    assert reorder.duplicates == 1
    assert reorder.push(4, "d") == []
    assert reorder.flush() == ["c", "d"] and reorder.push(5, "e") == ["e"]


def test_messages_without_a_chunk_number_pass_straight_through() -> None:
    reorder: ChunkReorder[int] = ChunkReorder()
    assert reorder.push(None, 7) == [7]


@given(st.permutations(list(range(1, 40))), st.integers(1, 6))
def test_it_never_holds_more_than_its_depth_and_loses_nothing(order: list[int], depth: int) -> None:
    reorder: ChunkReorder[int] = ChunkReorder(depth=depth)
    out: list[int] = []
    for chunk in order:
        out += reorder.push(chunk, chunk)
        assert reorder.waiting <= depth
    out += reorder.flush()
    assert sorted(out) == list(range(1, 40))
