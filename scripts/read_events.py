#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own reader and
prints a JSON summary (used by the tests to check our event writer):

    {"scalars": {tag: [[step, value], ...]},
     "histograms": {tag: number of histogram events},
     "images": {tag: [[width, height], ...]},
     "text": {tag: [markdown, ...]},
     "hparams": {name: value}}

Image sizes come from the Summary.Image fields; the script fails if they
disagree with the PNG header. Needs `pip install tensorboard`.

Usage: python3 scripts/read_events.py LOGDIR
"""

import json
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def png_size(data):
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a png image")
    return struct.unpack(">II", data[16:24])


def hparam_value(value):
    kind = value.WhichOneof("kind")
    if kind in ("number_value", "string_value", "bool_value"):
        return getattr(value, kind)
    return None


def plugin_tags(acc, plugin_name):
    """{tag: plugin content} for a plugin's tags; empty if it has none."""
    try:
        return acc.PluginTagToContent(plugin_name)
    except KeyError:
        return {}


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    keep_all = {
        event_accumulator.SCALARS: 0,
        event_accumulator.HISTOGRAMS: 0,
        event_accumulator.COMPRESSED_HISTOGRAMS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.AUDIO: 0,
        event_accumulator.TENSORS: 0,
    }
    acc = EventAccumulator(argv[1], size_guidance=keep_all)
    acc.Reload()
    tags = acc.Tags()

    out = {"scalars": {}, "histograms": {}, "images": {}, "text": {}, "hparams": {}}
    for tag in tags["scalars"]:
        out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags["histograms"]:
        out["histograms"][tag] = len(acc.Histograms(tag))
    for tag in tags["images"]:
        sizes = []
        for e in acc.Images(tag):
            if png_size(e.encoded_image_string) != (e.width, e.height):
                raise SystemExit(
                    "image %r at step %d: summary says %dx%d (width x height), png says %dx%d"
                    % ((tag, e.step, e.width, e.height) + png_size(e.encoded_image_string))
                )
            sizes.append([e.width, e.height])
        out["images"][tag] = sizes
    for tag in plugin_tags(acc, "text"):
        out["text"][tag] = [
            s.decode("utf-8") for e in acc.Tensors(tag) for s in e.tensor_proto.string_val
        ]
    for content in plugin_tags(acc, "hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") == "session_start_info":
            for name, value in data.session_start_info.hparams.items():
                out["hparams"][name] = hparam_value(value)

    json.dump(out, sys.stdout, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
