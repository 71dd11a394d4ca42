"""``napari-pvs al ...``: active learning on an annotation project.

``al suggest DIR`` prints the next slices to annotate (the project's current model, or the
shipped default); ``al round DIR`` fine-tunes that model on everything annotated so far
and records the round in the project; ``al history DIR`` lists the rounds. They drive the
same engine generators as the napari widget (:mod:`napari_pvs.engine.active_learning`).
"""

from __future__ import annotations

import math

from ._common import add_json_arg, run_with_progress, write_json

__all__ = ["add_parsers", "STRATEGIES", "SAMPLERS"]

#: the engine's ``active_learning.STRATEGIES`` and ``SAMPLERS`` (a test checks they agree),
#: written here so that ``--help`` imports no torch
STRATEGIES = ("bald", "entropy", "random", "load")
SAMPLERS = ("auto", "mc_dropout", "tta")


def _config(args):
    from ..engine.active_learning import ALConfig, UncertaintyConfig
    from ..engine.errors import PVSInputError

    try:
        return ALConfig(strategy=args.strategy, n_per_round=args.n,
                        uncertainty=UncertaintyConfig(sampler=args.sampler, n_samples=args.samples),
                        finetune_minutes=getattr(args, "max_minutes", 5.0), finetune_steps=getattr(args, "steps", 2000),
                        seed=args.seed, versions=args.versions)
    except ValueError as exc:
        raise PVSInputError(str(exc)) from None


def _fmt(x: float, spec: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def cmd_suggest(args) -> int:
    from ..engine.active_learning import suggest
    from ..engine.project import Project

    cfg = _config(args)
    with Project.open(args.project, readonly=True) as proj:
        choices, scores = run_with_progress(suggest(proj, cfg, checkpoint=args.checkpoint), "scoring slices")
    if args.json:
        write_json({"strategy": cfg.strategy, "checkpoint": str(scores.checkpoint or ""),
                    "slices": [c.as_dict() for c in choices]}, args.json)
        if args.json == "-":
            return 0
    model = scores.checkpoint.name if scores.checkpoint else "no model (random)"
    print(f"next {len(choices)} slices to annotate ({cfg.strategy}, {model}, {scores.seconds:.0f} s):")
    print(f"{'rank':>4}  {'subject':<16} {'slice':>5}  {'score':>9}  {'entropy':>8}  {'BALD':>8}  {'load mm2':>8}")
    for c in choices:
        print(f"{c.rank:>4}  {c.subject:<16} {c.slice:>5}  {_fmt(c.score, '9.5f')}  {_fmt(c.entropy, '8.5f')}  "
              f"{_fmt(c.bald, '8.5f')}  {_fmt(c.load_mm2, '8.1f')}")
    return 0


def cmd_round(args) -> int:
    from ..engine.active_learning import finetune_round
    from ..engine.project import Project

    cfg = _config(args)

    done = []

    def note(ev):
        if ev.kind == "round":
            done.append(ev.message)
            return None
        inner = ev.inner
        return inner.summary() if inner is not None and inner.kind in ("start", "epoch") else None

    with Project.open(args.project, wait_s=args.wait) as proj:
        record = run_with_progress(finetune_round(proj, cfg, checkpoint=args.checkpoint), "fine-tuning", note=note)
    print("\n".join(done))
    print(f"checkpoint: {record['checkpoint']}")
    return 0


def cmd_history(args) -> int:
    from ..engine.project import Project

    with Project.open(args.project, readonly=True) as proj:
        rounds = proj.al_rounds()
    if args.json:
        write_json(rounds, args.json)
        if args.json == "-":
            return 0
    if not rounds:
        print("no active-learning round recorded")
    for r in rounds:
        dsc = "-" if r["val_dsc"] is None else f"{r['val_dsc']:.3f}"
        print(f"round {r['id']} ({r['created']}): {r['n_slices']} labelled slices, validation DSC {dsc}, "
              f"strategy {r['strategy']}, {len(r['suggestions'])} suggested; {r['checkpoint']}")
    return 0


def add_parsers(sub, parent) -> None:
    """Add ``al`` and its verbs."""
    p = sub.add_parser("al", parents=[parent], help="active learning: which slices to annotate next, fine-tuning rounds",
                       description="Active learning on an annotation project: the model ranks the slices "
                                   "not annotated yet; fine-tuning rounds learn from the slices marked done.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help_, description=None):
        v = verbs.add_parser(name, parents=[parent], help=help_, description=description or help_)
        v.add_argument("project", metavar="DIR", help="project folder")
        v.add_argument("--strategy", choices=STRATEGIES, default="bald",
                       help="bald (default: mutual information), entropy, random or load (highest predicted "
                            "PVS load)")
        v.add_argument("-m", "--checkpoint", metavar="CKPT",
                       help="checkpoint (default: the project's newest model, else the shipped one)")
        v.add_argument("--sampler", choices=SAMPLERS, default="auto",
                       help="stochastic predictions: mc_dropout, tta (test-time augmentation) or auto")
        v.add_argument("--samples", type=int, default=4, help="stochastic passes (default 4)")
        v.add_argument("--versions", choices=("latest", "reviewed", "consensus"), default="latest",
                       help="which versions count as annotations")
        v.add_argument("--seed", type=int, default=0)
        v.set_defaults(func=func)
        return v

    v = verb("suggest", cmd_suggest, "print the next slices to annotate",
             "Score the slices not annotated yet and print the next N (ranked, spread over slices and "
             "scans).")
    v.add_argument("-n", type=int, default=10, help="how many slices (default 10)")
    add_json_arg(v, "the proposed slices")

    v = verb("round", cmd_round, "fine-tune on what is annotated and record the round",
             "Fine-tune the current model on every slice marked done or reviewed; the checkpoint goes to "
             "DIR/models/ and the round (slices, validation DSC) into the project.")
    v.set_defaults(n=10)
    v.add_argument("--max-minutes", type=float, default=5.0, help="wall-clock budget (default 5)")
    v.add_argument("--steps", type=int, default=2000, help="most optimisation steps (default 2000)")
    v.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait when another process is writing the project")

    v = verbs.add_parser("history", parents=[parent], help="list the recorded rounds")
    v.add_argument("project", metavar="DIR", help="project folder")
    add_json_arg(v, "the rounds")
    v.set_defaults(func=cmd_history)
