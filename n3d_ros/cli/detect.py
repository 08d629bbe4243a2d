"""`n3d detect`: 3D boxes of everything (or of one phrase) in an RGB-D frame, as JSON."""

from __future__ import annotations

from .common import add_frame_args, add_pipeline_args, frame_from_args, pipeline_from_args, print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="3D boxes (metres, optical frame) for a frame read from files")
    add_frame_args(parser)
    add_pipeline_args(parser)
    parser.add_argument("--prompt", default=None, help="a phrase to ground, e.g. 'red mug'; default: everything")
    parser.set_defaults(handler=run)


def run(args) -> int:
    frame = frame_from_args(args)
    pipeline = pipeline_from_args(args)
    try:
        result = pipeline.detect(frame, args.prompt)
    finally:
        pipeline.close()
    print_json({"frame": "optical (x right, y down, z forward), metres", "frame_id": frame.frame_id,
                **result.to_dict()})
    return 0
