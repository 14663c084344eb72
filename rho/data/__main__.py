"""Command line: ``python -m rho.data {build,build-hub,tokenize,stats}``.

python -m rho.data build --world mini --out data/mini --seed 0
python -m rho.data build-hub --out data/paper [--source owm=PATH ...] [--limit owm=N ...]
python -m rho.data tokenize --source owm --tokenizer TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T --out data/paper/shards/owm
python -m rho.data tokenize --mix slimpajama:6,starcoderdata:3,owm:1 --total-tokens 1e9 --tokenizer ... --out ...
python -m rho.data stats data/mini
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _parse_mix(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, w = part.partition(":")
        if not name or not w:
            raise SystemExit(
                f"bad --mix entry {part!r}; write name:weight,name:weight (e.g. slimpajama:6,owm:1)"
            )
        out[name] = float(w)
    return out


def _override(text: str) -> tuple[str, Any]:
    key, _, val = text.partition("=")
    try:
        return key, json.loads(val)
    except json.JSONDecodeError:
        return key, val


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rho.data``."""
    ap = argparse.ArgumentParser(
        prog="python -m rho.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the miniature world")
    b.add_argument(
        "--world", "--profile", dest="world", default="mini", help="world name (--profile: old name)"
    )
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--overwrite", action="store_true", help="replace a world built with other settings")
    b.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a world field")
    h = sub.add_parser("build-hub", help="tokenize the paper's hub corpora into a world (rho.data.paper)")
    h.add_argument("--out", required=True)
    h.add_argument(
        "--world", "--profile", dest="world", default="paper", help="hub world (--profile: old name)"
    )
    h.add_argument("--seed", type=int, default=0)
    h.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="CORPUS=SRC",
        help="override a source (owm, ppile, ref, slimpajama, starcoderdata): hub name, hf:<name> or path",
    )
    h.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="CORPUS=N",
        help="cap a corpus (owm, ppile, ref, general): N documents, tokens:M, docs:N,tokens:M, or none",
    )
    h.add_argument(
        "--eval-file",
        action="append",
        default=[],
        metavar="TASK=PATH",
        help="read a benchmark from a local file in its release format (tabmwp=problems_test1k.json)",
    )
    h.add_argument("--val-docs", type=int, default=None, help="held-out owm documents (owm_val)")
    h.add_argument("--tokenizer", default=None, help="tokenizer hub name or folder (default: the profile's)")
    h.add_argument("--num-proc", type=int, default=None)
    h.add_argument("--overwrite", action="store_true", help="replace data made with another tokenizer")
    h.add_argument("--no-progress", action="store_true")
    t = sub.add_parser(
        "tokenize", help="tokenize a source (hub dataset, local files, miniature corpus) into a shard"
    )
    t.add_argument("--source", help="paper corpus name, hf:<name>, or a local path")
    t.add_argument(
        "--mix", help="name:weight,... of sources mixed by tokens (paper: slimpajama:6,starcoderdata:3,owm:1)"
    )
    t.add_argument("--total-tokens", type=float, default=None, help="token budget of --mix")
    t.add_argument("--text-column", default=None)
    t.add_argument("--limit", type=int, default=None, help="at most this many documents per source")
    t.add_argument("--tokenizer", required=True, help="hub name or folder of a Hugging Face tokenizer")
    t.add_argument("--out", required=True)
    t.add_argument("--num-proc", type=int, default=1)
    t.add_argument("--overwrite", action="store_true", help="replace a shard made with another tokenizer")
    s = sub.add_parser("stats", help="print the corpus table of a built world")
    s.add_argument("world")
    f = sub.add_parser(
        "freeze-general",
        help="re-freeze the general-text pool from the running Python and packages (maintainers only)",
    )
    f.add_argument("--out", default=None, help="default: the pool inside the package")
    args = ap.parse_args(argv)

    if args.cmd == "freeze-general":
        from rho.data.miniature.general import GENERAL_SOURCE, freeze_general_source

        print(json.dumps(freeze_general_source(Path(args.out) if args.out else GENERAL_SOURCE), indent=2))
        return 0

    if args.cmd == "build":
        from rho.data.miniature.world import build_world

        manifest = build_world(
            args.out,
            args.world,
            args.seed,
            overwrite=args.overwrite,
            **dict(_override(x) for x in args.set),
        )
        print(
            json.dumps(
                {k: {"docs": v["n_docs"], "tokens": v["n_tokens"]} for k, v in manifest["corpora"].items()},
                indent=2,
            )
        )
        return 0
    if args.cmd == "build-hub":
        return _build_hub(args)
    if args.cmd == "stats":
        from rho.data.stats import corpus_table
        from rho.report.markdown import to_markdown

        print(to_markdown(corpus_table(args.world).reset_index(), floatfmt=".3f"), end="")
        return 0
    from dataclasses import replace

    from rho.data.sources import iter_documents, mix_by_tokens, resolve_source
    from rho.data.tokenize import tokenize_documents
    from rho.data.tokenizer import load_tokenizer

    if bool(args.source) == bool(args.mix):
        raise SystemExit("give exactly one of --source and --mix")

    def spec(name: str):
        sp = resolve_source(name)
        changes = {
            k: v for k, v in (("text_column", args.text_column), ("limit", args.limit)) if v is not None
        }
        return replace(sp, **changes) if changes else sp

    tok = load_tokenizer(args.tokenizer)
    backend = tok.backend_tokenizer

    def count(text: str) -> int:  # tokens: also how a source mixes its folders (Proof-Pile-2)
        return len(backend.encode(text, add_special_tokens=False).ids)

    if args.source:
        docs = iter_documents(spec(args.source), count)
        described = {"source": args.source}
    else:
        weights = _parse_mix(args.mix)
        if args.total_tokens is None:
            raise SystemExit("--mix needs --total-tokens")
        docs = mix_by_tokens(
            {n: iter_documents(spec(n), count) for n in weights},
            weights,
            count,
            int(args.total_tokens),
        )
        described = {"mix": weights, "total_tokens": int(args.total_tokens)}
    shard = tokenize_documents(
        docs, tok, args.out, num_proc=args.num_proc, overwrite=args.overwrite, source=described
    )
    print(json.dumps({"path": str(shard.path), "n_docs": shard.meta["n_docs"], "n_tokens": shard.n_tokens}))
    return 0


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key or not val:
            raise SystemExit(f"bad {flag} {item!r}; write CORPUS=VALUE (e.g. {flag} owm=...)")
        out[key] = val
    return out


def _parse_limit(text: str) -> int | dict[str, int] | None:
    """``N`` (documents), ``tokens:M``, ``docs:N,tokens:M`` (numbers may be written 1e6), or ``none``."""
    if text.lower() == "none":
        return None
    try:
        if ":" not in text:
            return int(float(text))
        out = {}
        for part in text.split(","):
            k, _, v = part.partition(":")
            out[k.strip()] = int(float(v))
        return out
    except ValueError:
        raise SystemExit(f"bad --limit value {text!r}; write N, tokens:M, docs:N,tokens:M or none") from None


def _build_hub(args: argparse.Namespace) -> int:
    from rho.data.paper import DEFAULT_VAL_DOCS, build_hub_data

    manifest = build_hub_data(
        args.out,
        args.world,
        args.seed,
        sources=_pairs(args.source, "--source"),
        limits={k: _parse_limit(v) for k, v in _pairs(args.limit, "--limit").items()},
        val_docs=args.val_docs if args.val_docs is not None else DEFAULT_VAL_DOCS,
        tokenizer=args.tokenizer,
        num_proc=args.num_proc,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        eval_files=_pairs(args.eval_file, "--eval-file"),
    )
    print(
        json.dumps(
            {k: {"docs": v["n_docs"], "tokens": v["n_tokens"]} for k, v in manifest["corpora"].items()},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
