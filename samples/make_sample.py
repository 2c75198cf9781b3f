"""Rebuild samples/bbb_480x270.mkv from the Big Buck Bunny 720p clip (CC-BY 3.0, Blender Foundation).

Usage: python samples/make_sample.py SRC.mp4 samples/bbb_480x270.mkv
Video: downscaled to 480x270 with swscale (lanczos), libx264 CRF 26 preset slow, yuv420p, tagged BT.709;
audio: the source's AAC packets copied unchanged; the source's timestamps are kept.
"""

import sys

import av

src, dst = sys.argv[1], sys.argv[2]
with av.open(src) as inp, av.open(dst, "w") as out:
    vin = inp.streams.video[0]
    ain = inp.streams.audio[0] if inp.streams.audio else None
    vout = out.add_stream("libx264", rate=vin.average_rate)
    vout.width, vout.height, vout.pix_fmt = 480, 270, "yuv420p"
    vout.time_base = vin.time_base
    vout.codec_context.time_base = vin.time_base
    vout.options = {"crf": "26", "preset": "slow"}
    cc = vout.codec_context
    cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited
    aout = out.add_stream_from_template(ain) if ain is not None else None
    out.metadata["title"] = "Big Buck Bunny (excerpt) - (c) copyright 2008, Blender Foundation, CC-BY 3.0"
    streams = [vin] + ([ain] if ain is not None else [])
    for pkt in inp.demux(*streams):
        if pkt.stream is ain:
            if pkt.dts is None:
                continue
            pkt.stream = aout
            out.mux(pkt)
            continue
        for fr in pkt.decode():
            small = fr.reformat(480, 270, "yuv420p", interpolation="LANCZOS", src_colorspace="ITU709",
                                dst_colorspace="ITU709")
            small.pts, small.time_base = fr.pts, fr.time_base
            small.colorspace, small.color_range = 1, 1
            out.mux(vout.encode(small))
    out.mux(vout.encode(None))
