#!/usr/bin/env python3
"""Generate the demo site's media: twelve pictures and a 20-second video.

The demo site (demo-site/) needs several megabytes of real media so that Whis
has something worth sharing between visitors: 12 JPEGs of 1600x1066 (~9 MB in
all) in img/ and a 20 s WebM (VP8 + Opus, ~5 MB) in media/. Rather than ship
photos or footage with someone else's licence, everything is synthesised by
ffmpeg's built-in lavfi sources (Mandelbrot fractals, cellular automata, sine
patterns, a sine-tone beep), so the files are made in this repository and are
under its MIT licence.

The output is deterministic: no random seeds left free, no wall-clock timing in
the encoders (VP8 uses the "good" deadline, one thread), and no metadata that
varies (bitexact flags, metadata stripped). Running it twice gives the same
bytes; with ffmpeg 5.1 (Debian 12) the pictures are byte-identical to the
committed ones.

Usage:
    python3 tools/make-demo-media.py [--out DIR] [--only images|video]

Needs ffmpeg on PATH (Debian/Ubuntu: apt-get install -y ffmpeg).
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "demo-site"
W, H = 1600, 1066

# Flags that keep ffmpeg's output free of version strings, random UIDs and
# copied metadata, so that two runs write the same bytes.
BITEXACT = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]

# (file name, title, lavfi source), each rendered as one frame at full size.
# aurora: Mandelbrot views at different places and zooms.
# dunes: one-dimensional cellular automata (rules 110 and 30) unrolled down
#        the picture, softened by a blur (grey: geq on a gray frame keeps only
#        the luma expression).
# waves: interfering sine patterns with a little fixed-seed noise.
IMAGES = [
    ("aurora-01.jpg", "Seahorse valley", f"mandelbrot=size={W}x{H}:start_x=-0.743643887037151:start_y=0.13182590420533:start_scale=0.02:end_scale=0.02:outer=normalized_iteration_count:inner=mincol"),
    ("aurora-02.jpg", "Elephant valley", f"mandelbrot=size={W}x{H}:start_x=0.2821:start_y=0.01:start_scale=0.04:end_scale=0.04:outer=normalized_iteration_count:inner=period"),
    ("aurora-03.jpg", "The whole set", f"mandelbrot=size={W}x{H}:start_x=-0.6:start_y=0:start_scale=3:end_scale=3:outer=normalized_iteration_count:inner=convergence"),
    ("aurora-04.jpg", "Spiral arm", f"mandelbrot=size={W}x{H}:start_x=-0.7453:start_y=0.1127:start_scale=0.0065:end_scale=0.0065:outer=normalized_iteration_count"),
    ("aurora-05.jpg", "Antenna", f"mandelbrot=size={W}x{H}:start_x=-1.7497:start_y=0:start_scale=0.03:end_scale=0.03:outer=normalized_iteration_count:inner=mincol"),
    ("aurora-06.jpg", "Mini brot", f"mandelbrot=size={W}x{H}:start_x=-0.1592:start_y=-1.0317:start_scale=0.025:end_scale=0.025:outer=normalized_iteration_count:inner=period"),
    ("aurora-07.jpg", "Triple spiral", f"mandelbrot=size={W}x{H}:start_x=-0.088:start_y=0.654:start_scale=0.02:end_scale=0.02:outer=normalized_iteration_count"),
    ("aurora-08.jpg", "Scepter", f"mandelbrot=size={W}x{H}:start_x=-1.36:start_y=0.0075:start_scale=0.06:end_scale=0.06:outer=normalized_iteration_count:inner=convergence"),
    ("dunes-01.jpg", "Dunes", f"cellauto=size={W}x{H}:rule=110:seed=7:random_fill_ratio=0.5,format=gray,geq=lum='lum(X,Y)':cb='128+60*sin(X/90)':cr='128+60*cos(Y/70)',boxblur=2"),
    ("dunes-02.jpg", "Rule 30", f"cellauto=size={W}x{H}:rule=30:seed=11,format=gray,geq=lum='lum(X,Y)':cb='128+70*cos(X/120)':cr='128-50*sin(Y/60)',boxblur=1"),
    ("waves-01.jpg", "Interference", f"color=size={W}x{H}:color=black,geq=r='128+127*sin(hypot(X-500,Y-400)/9)':g='128+127*sin(hypot(X-1100,Y-600)/11)':b='128+127*sin((X+Y)/23)',noise=alls=12:allf=t:all_seed=3"),
    ("waves-02.jpg", "Moire", f"color=size={W}x{H}:color=black,geq=r='128+127*sin(X*Y/9000)':g='128+127*cos(hypot(X-800,Y-533)/7)':b='128+127*sin(X/31)*cos(Y/27)',noise=alls=10:allf=t:all_seed=5"),
]
JPEG_QUALITY = "2"  # -q:v, 2 = best practical; gives ~250 KB .. ~1.7 MB per picture

# 20 s, 1280x720 at 30 fps: a zoom into the Mandelbrot set, with a beeping
# 330 Hz tone. A keyframe every 2 s so that seeking lands quickly.
VIDEO = "clip.webm"
VIDEO_SECONDS = "20"
VIDEO_SRC = "mandelbrot=size=1280x720:rate=30:start_scale=3:end_scale=0.0005:end_pts=600"
AUDIO_SRC = "sine=frequency=330:beep_factor=2:sample_rate=48000"
VIDEO_BITRATE = "1300k"  # the detailed end of the zoom overshoots it: ~5 MB in all
AUDIO_BITRATE = "64k"


def fail(message):
    print(f"make-demo-media: {message}", file=sys.stderr)
    sys.exit(1)


def ffmpeg(ffmpeg_bin, args):
    cmd = [ffmpeg_bin, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        fail(f"cannot run {ffmpeg_bin}: {e}")
    if result.returncode != 0:
        fail(f"ffmpeg failed (exit {result.returncode}):\n  {' '.join(cmd)}\n{result.stderr.strip()}")


def write(ffmpeg_bin, out_dir, rel, args):
    """Run ffmpeg into a temporary name beside the target, then rename it into place."""
    target = out_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
    try:
        ffmpeg(ffmpeg_bin, [*args, str(tmp)])
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"{rel}: {target.stat().st_size} bytes", flush=True)


def make_images(ffmpeg_bin, out_dir):
    for name, _title, src in IMAGES:
        write(ffmpeg_bin, out_dir, pathlib.PurePath("img", name), [
            "-f", "lavfi", "-i", src,
            "-frames:v", "1", "-c:v", "mjpeg", "-q:v", JPEG_QUALITY,
            "-bitexact", *BITEXACT,
        ])


def make_video(ffmpeg_bin, out_dir):
    write(ffmpeg_bin, out_dir, pathlib.PurePath("media", VIDEO), [
        "-f", "lavfi", "-i", VIDEO_SRC,
        "-f", "lavfi", "-i", AUDIO_SRC,
        "-t", VIDEO_SECONDS,
        # "good" deadline at a fixed speed and one thread: libvpx's realtime
        # mode picks its speed from wall-clock timing, which is not repeatable.
        # Constant bitrate, so the file size is predictable.
        "-c:v", "libvpx", "-b:v", VIDEO_BITRATE, "-minrate", VIDEO_BITRATE,
        "-maxrate", VIDEO_BITRATE, "-g", "60",
        "-deadline", "good", "-cpu-used", "4", "-threads", "1",
        "-c:a", "libopus", "-b:a", AUDIO_BITRATE,
        "-bitexact", *BITEXACT, "-flags:a", "+bitexact",
        "-f", "webm",
    ])


def main():
    parser = argparse.ArgumentParser(description="Generate the Whis demo site's pictures and video with ffmpeg.")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                        help=f"site folder to write img/ and media/ into (default: {DEFAULT_OUT})")
    parser.add_argument("--only", choices=["images", "video"], help="make only the pictures or only the video")
    args = parser.parse_args()

    ffmpeg_bin = shutil.which("ffmpeg")
    if ffmpeg_bin is None:
        fail("ffmpeg not found on PATH; install it with apt-get install -y ffmpeg")

    out_dir = args.out.resolve()
    if args.only in (None, "images"):
        make_images(ffmpeg_bin, out_dir)
    if args.only in (None, "video"):
        make_video(ffmpeg_bin, out_dir)


if __name__ == "__main__":
    main()
