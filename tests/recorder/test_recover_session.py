"""``demofab recover SESSION`` on an episode that was cut short (a full disk) and then
damaged as well: with no summary to go by, the damaged chunk is passed over by scanning
for the next valid one, and every complete chunk after it is kept."""

from __future__ import annotations

import io
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk

pytestmark = pytest.mark.slow


def demofab(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "demofab.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]


def complete_chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, end, messages) of each complete chunk of a cut file, read by the mcap
    library until it reaches the cut."""
    f = io.BytesIO(data)
    out = []
    start = 8
    try:
        for record in StreamReader(f, emit_chunks=True, validate_crcs=True).records:
            if isinstance(record, Chunk):
                n = sum(isinstance(r, Message) for r in breakup_chunk(record, validate_crc=True))
                out.append((start, f.tell(), n))
            start = f.tell()
    except Exception:  # noqa: BLE001, S110 - the cut end of the file
        pass
    return out


def test_recover_passes_over_a_damaged_chunk_of_a_cut_episode(tmp_path: Path) -> None:
    out = tmp_path / "s"

    def limit() -> None:  # every file may grow to 6 MB only: the episode is cut there
        resource.setrlimit(resource.RLIMIT_FSIZE, (6_000_000, 6_000_000))

    r = demofab("record", "--source", "synthetic", "--out", str(out), "--task", "t",
                "--episodes", "1", "--episode-seconds", "30", preexec_fn=limit)
    assert r.returncode == 2 and "disk full" in r.stderr
    (part,) = out.glob("*.mcap.part")
    data = bytearray(part.read_bytes())
    chunks = complete_chunks(bytes(data))
    assert len(chunks) >= 4
    start, end, hit = chunks[2]
    data[start + 1000:start + 3000] = bytes(2000)  # the third chunk's records zeroed
    part.write_bytes(data)

    r = demofab("recover", str(out))

    assert r.returncode == 0, r.stderr
    kept = sum(n for _, _, n in chunks) - hit
    assert f"episode_0000.mcap: {kept} messages" in r.stdout
    lost = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("lost")]
    assert lost[0].startswith(f"lost bytes {start}..")
    assert "bounds from the intact chunks around them" in lost[0]
    with open(out / "episode_0000.mcap", "rb") as f:
        reader = make_reader(f, validate_crcs=True)
        assert sum(1 for _ in reader.iter_messages()) == kept
