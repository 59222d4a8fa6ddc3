#!/usr/bin/env bash
# Peep vs its peers, side by side in one run, under one private Xvfb at
# 1920x1080 showing the same content (Peep's synthetic scene drawn into a
# window by a separate `peep demo-window` process):
#
#   * Peep:      peep record --source screen (X11 MIT-SHM + yuvutils + OpenH264)
#   * ffmpeg:    x11grab → swscale → libx264 ultrafast/zerolatency
#   * GStreamer: ximagesrc → videoconvert → openh264enc (screen mode)
#
# For each scene it prints achieved fps, CPU of the tool (user+sys), the X
# server's extra CPU while the tool ran (ShmGetImage copies happen there),
# CPU-seconds per frame, and Peep's ratio to each peer. Then glass-to-glass
# latency on the same clock: `peep demo-window` (a separate X client) stamps
# the wall-clock time into each picture it draws; Peep shares the screen to
# an independent viewer (headless Chromium over WebRTC, reading the stamp
# from each presented frame), ffmpeg pipes x11grab -> libx264
# ultrafast/zerolatency -> its H.264 decoder -> a reader of the stamps; the
# two alternate, LAT_ROUNDS (default 2) rounds of SECONDS each. Then
# conversion alone: Peep's converter against libyuv and swscale.
#
# Usage: bench/compare.sh [SECONDS] [SCENES...]     (default: 10 static typing moving)
# Needs Debian: xvfb ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-{base,good,bad}
#               gcc pkg-config libyuv-dev libswscale-dev libavutil-dev chromium
set -euo pipefail

secs=${1:-10}
shift || true
scenes=("${@:-static typing moving}")
read -r -a scenes <<<"${scenes[*]}"
fps=30
bitrate=2500000
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d /tmp/peep-compare.XXXXXX)
hz=$(getconf CLK_TCK)

need() { command -v "$1" >/dev/null || { echo "compare.sh: needs $1 (apt-get install $2)" >&2; exit 1; }; }
need Xvfb xvfb
need ffmpeg ffmpeg
need gst-launch-1.0 "gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"

need chromium chromium

echo "== building (release) =="
target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release -q -p peep && cargo build --release -q -p peep-encode --example convert_timing &&
    cargo build --release -q -p peep-capture --example mark_latency)
share_bench=$(cd "$root" && cargo bench -p peep --bench share --no-run 2>&1 |
    sed -n 's/.*Executable benches\/share\.rs (\(.*\))/\1/p')
[[ -x $share_bench ]] || { echo "compare.sh: could not build the share benchmark" >&2; exit 1; }
"$here/build_baselines.sh" "$work/bin" >/dev/null 2>&1 || "$here/build_baselines.sh" "$work/bin"
peep=$target/release/peep

cleanup() {
    [[ -n ${gen:-} ]] && kill "$gen" 2>/dev/null || true
    [[ -n ${xpid:-} ]] && kill "$xpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A private X server; -displayfd picks a free display number.
mkfifo "$work/displayfd"
Xvfb -displayfd 3 -screen 0 1920x1080x24 -nolisten tcp -noreset 3>"$work/displayfd" >/dev/null 2>&1 &
xpid=$!
read -r -t 10 num <"$work/displayfd"
export DISPLAY=":$num"

calc() { awk "BEGIN { print $* }"; }

# CPU ticks (user+sys) of a pid.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME CMD...: runs CMD for about $secs, prints "cpu_s xcpu_s" into $work/NAME.cpu
run() {
    local name=$1
    shift
    local x0 t0 t1 x1
    x0=$(ticks "$xpid")
    TIMEFORMAT='%3U %3S'
    { time "$@" >"$work/$name.out" 2>"$work/$name.err"; } 2>"$work/$name.time" || true
    x1=$(ticks "$xpid")
    read -r t0 t1 <"$work/$name.time"
    echo "$(calc "$t0 + $t1") $(calc "($x1 - $x0) / $hz")" >"$work/$name.cpu"
}

printf '\n== capture + encode, 1920x1080 @ %s fps, %s s per run, %s bps target ==\n' "$fps" "$secs" "$bitrate"
printf '%-9s %-10s %7s %9s %9s %12s %12s\n' scene tool fps cpu_%core x_%core cpu_ms/frame "peep/tool"
for scene in "${scenes[@]}"; do
    "$peep" demo-window --scene "$scene" --fps "$fps" >/dev/null 2>&1 &
    gen=$!
    sleep 1
    # Idle X server cost with only the generator running, subtracted below.
    x0=$(ticks "$xpid"); sleep 2; x1=$(ticks "$xpid")
    xidle=$(calc "($x1 - $x0) / $hz / 2")

    run peep "$peep" record --source screen --no-cursor --seconds "$secs" --fps "$fps" --bitrate "$bitrate" --out /dev/null
    peep_frames=$(grep -o 'encoded [0-9]*' "$work/peep.err" | awk '{print $2}')

    run ffmpeg ffmpeg -hide_banner -nostdin -nostats -progress pipe:1 -f x11grab -framerate "$fps" \
        -video_size 1920x1080 -draw_mouse 0 -i "$DISPLAY" -t "$secs" -fps_mode cfr \
        -vf 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p' -c:v libx264 -preset ultrafast \
        -tune zerolatency -profile:v baseline -b:v 2500k -maxrate 2500k -bufsize 1250k -f null -
    ffmpeg_frames=$(grep '^frame=' "$work/ffmpeg.out" | tail -1 | cut -d= -f2)

    run gst timeout -s INT "$secs" gst-launch-1.0 -e ximagesrc display-name="$DISPLAY" use-damage=false \
        show-pointer=false ! "video/x-raw,framerate=$fps/1" ! videoconvert ! video/x-raw,format=I420 \
        ! openh264enc usage-type=screen rate-control=bitrate bitrate=$bitrate gop-size=300 multi-thread=1 \
        ! identity silent=false ! fakesink sync=false -v
    gst_frames=$(cat "$work/gst.out" "$work/gst.err" | grep -c 'chain.*(identity0:sink)' || true)

    kill "$gen" 2>/dev/null || true
    wait "$gen" 2>/dev/null || true
    gen=

    declare -A cpu fr
    for tool in peep ffmpeg gst; do
        read -r c x <"$work/$tool.cpu"
        x=$(calc "$x - $xidle * $secs")
        cpu[$tool]=$(calc "$c + ($x > 0) * $x")
        f=$(eval echo "\${${tool}_frames:-0}")
        fr[$tool]=$f
        printf '%-9s %-10s %7.1f %9.1f %9.1f %12.2f' "$scene" "$tool" "$(calc "$f / $secs")" \
            "$(calc "$c * 100 / $secs")" "$(calc "($x > 0) * $x * 100 / $secs")" \
            "$(calc "${cpu[$tool]} * 1000 / ($f + ($f == 0))")"
        if [[ $tool == peep ]]; then
            printf '%12s\n' "-"
        else
            # Ratio of CPU per second (static screens make per-frame meaningless).
            printf '%11.2fx\n' "$(calc "${cpu[peep]} / (${cpu[$tool]} + (${cpu[$tool]} == 0) * 0.001)")"
        fi
    done
done
cat <<'EOF'
  cpu_%core: the tool's own user+sys CPU; x_%core: extra X server CPU while it ran
  (above the generator's idle load); cpu_ms/frame and peep/tool use their sum.
  peep/tool < 1 means Peep used less CPU per second of capture. ffmpeg's x264 uses
  sliced threads; Peep and openh264enc encode on one thread. On a static screen Peep
  encodes only 1 keep-alive frame per second, so its fps there is ~1 by design.
EOF

printf '\n== glass-to-glass latency, 1920x1080 @ %s fps, typing drawn at 24 fps by a separate X client, %s s per run ==\n' \
    "$fps" "$secs"
printf '%-6s %-8s %8s %8s %6s\n' round tool p50_ms p95_ms n
"$peep" demo-window --scene typing --fps 24 >/dev/null 2>&1 &
gen=$!
sleep 1
peep_p50=()
ffmpeg_p50=()
for round in $(seq 1 "${LAT_ROUNDS:-2}"); do
    # Peep: capture on change -> encode -> WebRTC -> Chromium (an independent viewer).
    (cd "$root/app" && "$share_bench" "$secs" "display=$DISPLAY" "$fps") >"$work/peep-lat.out" 2>&1 || true
    pline=$(grep '^latency tool=peep' "$work/peep-lat.out" || echo "latency p50_ms=nan p95_ms=nan n=0")
    # ffmpeg: x11grab (fixed 1/fps grid) -> x264 -> decoder, no network at all.
    # Without -flush_packets the encoder's pipe holds small P-frames until
    # 32 KB pile up; without the probe limits the decoder buffers ~5 s first.
    ffmpeg -hide_banner -nostdin -loglevel error -f x11grab -framerate "$fps" -video_size 1920x1080 -draw_mouse 0 \
        -i "$DISPLAY" -t "$secs" -vf 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p' -c:v libx264 \
        -preset ultrafast -tune zerolatency -profile:v baseline -b:v 2500k -maxrate 2500k -bufsize 1250k \
        -flush_packets 1 -f h264 - |
        ffmpeg -hide_banner -nostdin -loglevel error -probesize 32 -analyzeduration 0 -flags low_delay -threads 1 \
            -f h264 -i - \
            -f rawvideo -pix_fmt gray - | "$target/release/examples/mark_latency" 1920 1080 >"$work/ffmpeg-lat.out" || true
    fline=$(cat "$work/ffmpeg-lat.out")
    for tool in peep ffmpeg; do
        if [[ $tool == peep ]]; then l=$pline; else l=$fline; fi
        p50=$(sed -n 's/.*p50_ms=\([^ ]*\).*/\1/p' <<<"$l")
        p95=$(sed -n 's/.*p95_ms=\([^ ]*\).*/\1/p' <<<"$l")
        n=$(sed -n 's/.* n=\([^ ]*\).*/\1/p' <<<"$l")
        printf '%-6s %-8s %8s %8s %6s\n' "$round" "$tool" "$p50" "$p95" "$n"
        if [[ $tool == peep ]]; then peep_p50+=("$p50"); else ffmpeg_p50+=("$p50"); fi
    done
done
kill "$gen" 2>/dev/null || true
wait "$gen" 2>/dev/null || true
gen=
mean() { printf '%s\n' "$@" | awk '$1 != "nan" && $1 != "" { s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "nan" }'; }
pm=$(mean "${peep_p50[@]}")
fm=$(mean "${ffmpeg_p50[@]}")
printf 'mean p50: peep %s ms, ffmpeg %s ms, peep/ffmpeg %s\n' "$pm" "$fm" "$(awk -v p="$pm" -v f="$fm" 'BEGIN { if (f > 0) printf "%.2f", p / f; else print "nan" }')"
cat <<'NOTE'
  Peep's figure is glass-to-glass into a browser over WebRTC (capture, encode,
  packetise, the viewer's jitter buffer, decode, presentation time); ffmpeg's
  ends when its decoder hands the frame over, with no network or jitter buffer.
NOTE

printf '\n== conversion alone, BGRA → I420 (one thread) ==\n'
"$target/release/examples/convert_timing"
"$work/bin/convert_baselines" | grep '^convert'
echo "  libyuv here is BT.601 (Debian's libyuv has no BT.709 path); Peep and swscale are BT.709 limited."
