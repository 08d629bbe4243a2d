"""`n3d ask`: answer a spatial question about an RGB-D frame, as JSON."""

from __future__ import annotations

from .common import add_frame_args, add_pipeline_args, frame_from_args, pipeline_from_args, print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser("ask", help="answer a spatial question, e.g. 'how far is the mug from the laptop?'")
    add_frame_args(parser)
    add_pipeline_args(parser)
    parser.add_argument("question")
    parser.set_defaults(handler=run)


def run(args) -> int:
    frame = frame_from_args(args)
    pipeline = pipeline_from_args(args)
    try:
        answer = pipeline.ask(frame, args.question)
    finally:
        pipeline.close()
    print_json({"question": args.question, "frame_id": frame.frame_id, **answer.to_dict()})
    return 0 if answer.success else 1
