"""Freed C memory goes back to the system, so a service's resident size follows what it holds."""

from services.runtime.heap import return_freed_heap


def _anonymous_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon")) / 1024


async def test_freed_heap_pages_go_back_to_the_system():
    # Objects over 512 bytes come from glibc's heap; one allocated after them keeps free() from shrinking its top.
    blocks = [n.to_bytes(8, "little") * 512 for n in range(25_000)]  # 4 kB each, written
    kept = (25_000).to_bytes(8, "little") * 512
    del blocks
    freed_but_resident = _anonymous_mb()
    await return_freed_heap()
    assert freed_but_resident - _anonymous_mb() > 50, "about 100 MB was freed"
    assert len(kept) == 4096
