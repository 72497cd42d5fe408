"""Animations written a frame at a time: GIF, WebP and MP4, whole or absent (gan/files.py).

Pillow's own animated writers hold every frame until the file is assembled (its GIF writer
compares each frame with the last ones, libwebp's muxer keeps them all), so a walk of a thousand
frames would sit in memory. Here each frame is encoded as it comes and appended to the file:
- GIF: the header and loop block, then each frame's graphic control block, local colour table and
  LZW data (Pillow's `getheader` / `getdata`, the legacy API for exactly this); a grey frame is
  stored with grey levels, so it reads back exactly; a colour frame gets its own 256-colour palette.
- WebP: the RIFF container written by hand (VP8X, ANIM, one ANMF chunk per frame holding the
  frame Pillow encoded alone, lossless by default), its size patched in at the end.
- MP4: raw frames piped to ffmpeg (H.264, yuv420p): imageio-ffmpeg's binary when that package is
  installed, else `ffmpeg` on the PATH.
Frame times are spread so the whole lasts frames/fps: a GIF's delays are in hundredths of a
second, so at 30 fps they run 3, 3, 4, ... rather than all 3.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import GifImagePlugin, Image

from gan.errors import UserError
from gan.files import write_atomically, write_through

FORMATS = (".gif", ".webp", ".mp4")
GIF_MAX_FPS = 50  # GIF delays are hundredths of a second, and browsers show a delay under 2 as 10


def encoder() -> str | None:
    """The ffmpeg that MP4s are written with: imageio-ffmpeg's binary, else one on the PATH (None: neither)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def check(out: Path, fps: int, key: str = "out") -> None:
    """Refuse, before anything is generated, a format this module does not write, an fps it cannot
    keep, or an MP4 with no encoder installed."""
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"{key}={out}: an animation is written as .gif, .webp or .mp4 (got {out.suffix or 'no suffix'}).")
    if fps < 1:
        raise UserError(f"fps={fps}: frames per second must be 1 or more.")
    if out.suffix.lower() == ".gif" and fps > GIF_MAX_FPS:
        raise UserError(f"fps={fps}: a GIF keeps at most {GIF_MAX_FPS} frames per second (its delays are hundredths of "
                        f"a second, and browsers slow shorter ones down); use .webp or .mp4, or fps<={GIF_MAX_FPS}.")
    if out.suffix.lower() == ".mp4" and encoder() is None:
        raise UserError(f"{key}={out}: an MP4 needs ffmpeg, and none is installed: pip install imageio-ffmpeg (it ships "
                        f"one), or install ffmpeg; .gif and .webp need nothing more.")


def delays(count: int, fps: int, unit_ms: int) -> Iterator[int]:
    """Each frame's time in `unit_ms` units, rounded so that the first k frames last k/fps seconds
    as nearly as the unit allows (the total is exact to one unit)."""
    per_unit = 1000 / (fps * unit_ms)
    for i in range(count):
        yield round((i + 1) * per_unit) - round(i * per_unit)


def write_animation(out: Path, frames: Iterable[np.ndarray], count: int, fps: int, lossless: bool = True) -> str:
    """Write `count` frames (H x W x 3 uint8, all one size) as `out`, whose suffix picks the format,
    one frame at a time; what wrote it, for the console."""
    suffix = out.suffix.lower()
    if suffix == ".mp4":
        ffmpeg = encoder()
        write_through(out, lambda tmp: write_mp4(tmp, frames, fps, ffmpeg))
        return f"MP4 (H.264) by {ffmpeg}"
    writer: Callable[[IO[bytes]], None] = (lambda f: write_gif(f, frames, count, fps)) if suffix == ".gif" else \
        (lambda f: write_webp(f, frames, count, fps, lossless))
    write_atomically(out, writer)
    return "GIF (Pillow's encoder, a frame at a time)" if suffix == ".gif" else \
        f"WebP ({'lossless' if lossless else 'lossy'}, Pillow's encoder, a frame at a time)"


def picture(frame: np.ndarray) -> Image.Image:
    """A frame as Pillow takes it: grey (mode L) when its three channels agree, so grey images stay exact."""
    if frame.ndim == 3 and frame.shape[2] == 3 and (frame[..., :1] == frame).all():
        return Image.fromarray(np.ascontiguousarray(frame[..., 0]), "L")
    return Image.fromarray(frame)


def gif_frame(frame: np.ndarray) -> Image.Image:
    image = picture(frame)
    return image if image.mode == "L" else image.quantize(256)


def write_gif(f: IO[bytes], frames: Iterable[np.ndarray], count: int, fps: int) -> None:
    times = delays(count, fps, 10)
    for i, frame in enumerate(frames):
        image = gif_frame(frame)
        if i == 0:
            header, _ = GifImagePlugin.getheader(image.copy(), None, {"loop": 0, "duration": 100})
            f.writelines(header)
        # Pillow divides the duration by 10 into hundredths: give it milliseconds that are exact
        f.writelines(GifImagePlugin.getdata(image, duration=10 * next(times), include_color_table=True))
    f.write(b";")


def chunk(tag: bytes, payload: bytes) -> bytes:
    """A RIFF chunk: tag, little-endian size, payload, a pad byte to an even length."""
    return tag + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


def webp_bitstream(image: Image.Image, lossless: bool) -> bytes:
    """The image chunks (VP8L, or VP8 with its ALPH) of one frame encoded alone by Pillow."""
    encoded = io.BytesIO()
    image.save(encoded, "WEBP", lossless=lossless, quality=100 if lossless else 90, exact=True)
    data, pos, kept = encoded.getvalue(), 12, []
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag in (b"ALPH", b"VP8 ", b"VP8L"):
            kept.append(data[pos:pos + 8 + size + size % 2])
        pos += 8 + size + size % 2
    return b"".join(kept)


def write_webp(f: IO[bytes], frames: Iterable[np.ndarray], count: int, fps: int, lossless: bool) -> None:
    times = delays(count, fps, 1)
    f.write(b"RIFF\0\0\0\0WEBP")
    for i, frame in enumerate(frames):
        height, width = frame.shape[:2]
        if i == 0:
            f.write(chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + u24(width - 1) + u24(height - 1)))  # animated
            f.write(chunk(b"ANIM", bytes(4) + struct.pack("<H", 0)))  # background, loop for ever
        placement = u24(0) + u24(0) + u24(width - 1) + u24(height - 1) + u24(next(times)) + bytes([0b10])  # no blending
        f.write(chunk(b"ANMF", placement + webp_bitstream(picture(frame).convert("RGB"), lossless)))
    size = f.tell() - 8
    f.seek(4)
    f.write(struct.pack("<I", size))
    f.seek(0, io.SEEK_END)


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: int, ffmpeg: str) -> None:
    process = None
    try:
        for frame in frames:
            if process is None:
                height, width = frame.shape[:2]
                process = subprocess.Popen(
                    [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                     "-r", str(fps), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264",
                     "-pix_fmt", "yuv420p", "-crf", "18", "-movflags", "+faststart", "-f", "mp4", str(path)],
                    stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            process.stdin.write(np.ascontiguousarray(frame).tobytes())
        if process is None:
            raise UserError("an animation needs at least one frame.")
        process.stdin.close()
        error = process.stderr.read().decode(errors="replace")
        if process.wait() != 0:
            raise UserError(f"ffmpeg ({ffmpeg}) could not write {path.name}: {' '.join(error.split())[:300]}")
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
