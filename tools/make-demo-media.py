#!/usr/bin/env python3
"""Generate the demo site's media: procedural images and a short video.

Everything is synthesised by ffmpeg's built-in sources (fractals, gradients,
cellular automata), so the files are licence-clean and the same on every run.
Usage: python3 tools/make-demo-media.py   (needs ffmpeg on PATH)
"""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent / "demo-site"
W, H = 1600, 1066

# (file name, title, lavfi source). Mandelbrot views at different places and
# zooms; each is one frame rendered at full size.
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


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def main():
    (ROOT / "img").mkdir(parents=True, exist_ok=True)
    (ROOT / "media").mkdir(parents=True, exist_ok=True)
    for name, _title, src in IMAGES:
        out = ROOT / "img" / name
        ffmpeg("-f", "lavfi", "-i", src, "-frames:v", "1", "-q:v", "2", "-bitexact", str(out))
        print(f"{out.relative_to(ROOT.parent)}: {out.stat().st_size} bytes")
    clip = ROOT / "media" / "clip.webm"
    # 20 s, 720p VP8 + Opus, a keyframe every 2 s so seeking lands quickly.
    ffmpeg(
        "-f", "lavfi", "-i", "mandelbrot=size=1280x720:rate=30:start_scale=3:end_scale=0.0005:end_pts=600",
        "-f", "lavfi", "-i", "sine=frequency=330:beep_factor=2:sample_rate=48000",
        "-t", "20", "-c:v", "libvpx", "-b:v", "900k", "-g", "60", "-deadline", "realtime", "-cpu-used", "8",
        "-c:a", "libopus", "-b:a", "64k", "-bitexact", str(clip),
    )
    print(f"{clip.relative_to(ROOT.parent)}: {clip.stat().st_size} bytes")


if __name__ == "__main__":
    main()
