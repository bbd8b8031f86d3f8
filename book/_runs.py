"""The chapters' one rule for showing committed runs: group them by (model, settings) and keep
a group's current seeds (made by the spikelib installed now) if it has any, else its older
ones — old and new seeds are never pooled. Chapters import it after the launch cell, which
leaves them in this folder."""
from spikelib.results import code_status, settings


def older(runs: list[dict]) -> bool:
    """Were these runs (one group) made by other sources than those installed now?"""
    return code_status(runs[0])["status"] != "current"


def current_or_older(runs) -> dict[tuple[str, str], list[dict]]:
    """Loaded results -> {(model, settings): current seeds if any, else the older ones}."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        by.setdefault((r["model"], settings(r)), []).append(r)
    return {k: [r for r in v if not older([r])] or v for k, v in by.items()}
