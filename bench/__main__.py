"""``python -m bench`` (or ``docqa-bench``): evaluations against a running docqa service.

    python -m bench squad2 [--split dev|test] [--n N] [--baseline] [--json F]
    python -m bench business [--split dev|dev2|test|all|train|dev3] [--baseline] [--json F]
    python -m bench business-corpus [--train | --dev3] DIR
    python -m bench scifact [--split train|test] [--json F]
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import click

from bench import business as bench_business
from bench import scifact as bench_scifact
from bench import squad2 as bench_squad2
from service.cli.common import address, key_opt, url_opt


@click.group()
def main() -> None:
    """Evaluate answer and retrieval quality against a running service."""


@main.command()
@click.option("--split", type=click.Choice(["dev", "test", "all"]), default="test",
              show_default=True, help="dev = even articles (tune), test = odd articles (report)")
@click.option("--n", "n", type=int, default=200, show_default=True,
              help="answerable and unanswerable questions each")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="write the metrics of both systems as JSON here")
@click.option("--details", "details_out", type=click.Path(path_type=Path), default=None,
              help="write every question's answer and citations as JSON here")
@click.option("--baseline", is_flag=True, help="also run plain llama-index RAG in this process")
@click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="SQuAD 2.0 JSON (default ../shared/eval/squad2/dev-v2.0.json)")
@click.option("--chroma-url", default=None,
              help="Chroma server for the baseline (default from settings: DOCQA_CHROMA__*)")
@url_opt
@key_opt
def squad2(split: str, n: int, seed: int, json_out: Path | None, details_out: Path | None,
           baseline: bool, data_path: Path | None, chroma_url: str | None, url: str | None,
           api_key: str | None) -> None:
    """Grounded answers and abstention on SQuAD 2.0, through the service's own API."""
    _use_chroma(chroma_url)
    base, key = address(url, api_key)
    bench_squad2.run(base, key, split=split, n=n, seed=seed, baseline=baseline,
                     path=data_path or bench_squad2.DEFAULT_PATH, json_out=json_out,
                     details_out=details_out)


def _use_chroma(chroma_url: str | None) -> None:
    """Point the baseline at this Chroma server (it reads the settings from the environment)."""
    if chroma_url:
        parts = urlsplit(chroma_url)
        os.environ["DOCQA_CHROMA__HOST"] = parts.hostname or "127.0.0.1"
        os.environ["DOCQA_CHROMA__PORT"] = str(parts.port or 8000)


@main.command()
@click.option("--split", type=click.Choice(bench_business.SPLITS), default="test",
              show_default=True,
              help="each question's fixed split: dev or dev2 (tune) or test (report); train "
                   "is another company's corpus, to train on, and dev3 a third one's, never "
                   "tuned on (ask each in a tenant of its own)")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="write the metrics of both systems as JSON here")
@click.option("--details", "details_out", type=click.Path(path_type=Path), default=None,
              help="write every question's answer and citations as JSON here")
@click.option("--baseline", is_flag=True, help="also run plain llama-index RAG in this process")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None,
              help="corpus directory (default bench/business: corpus/, sources/, questions.json)")
@click.option("--chroma-url", default=None,
              help="Chroma server for the baseline (default from settings: DOCQA_CHROMA__*)")
@url_opt
@key_opt
def business(split: str, json_out: Path | None, details_out: Path | None, baseline: bool,
             data_dir: Path | None, chroma_url: str | None, url: str | None,
             api_key: str | None) -> None:
    """Answers and abstention on one fictional company's documents in all six formats."""
    _use_chroma(chroma_url)
    base, key = address(url, api_key)
    bench_business.run(base, key, split=split, baseline=baseline,
                       root=data_dir or bench_business.root_of(split), json_out=json_out,
                       details_out=details_out)


@main.command("business-corpus")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--train", is_flag=True, help="the training company's corpus instead")
@click.option("--dev3", is_flag=True, help="the third company's corpus (split dev3) instead")
def business_corpus(out_dir: Path, train: bool, dev3: bool) -> None:
    """Write the business corpus (DOCX and PDF built) into OUT_DIR, to read or upload."""
    root = bench_business.TRAIN_ROOT if train else \
        bench_business.DEV3_ROOT if dev3 else bench_business.ROOT
    for path in bench_business.write_corpus(out_dir, root):
        click.echo(path)


@main.command()
@click.option("--split", type=click.Choice(["train", "test"]), default="test",
              show_default=True, help="train qrels (tune) or test qrels (report)")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="write {hybrid, dense, keyword, config} as JSON here")
@click.option("--top-k", type=int, default=200, show_default=True,
              help="chunks asked per search (documents are ranked by their best chunk)")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None,
              help="BEIR SciFact directory (default ../shared/eval/scifact)")
@url_opt
@key_opt
def scifact(split: str, json_out: Path | None, top_k: int, data_dir: Path | None,
            url: str | None, api_key: str | None) -> None:
    """Retrieval quality on BEIR SciFact: dense, keyword and hybrid search in one run."""
    base, key = address(url, api_key)
    bench_scifact.run(base, key, split=split, root=data_dir or bench_scifact.DEFAULT_DIR,
                      json_out=json_out, top_k=top_k)


if __name__ == "__main__":
    main()
