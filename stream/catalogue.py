"""The live catalogue: which items a recommendation may show.

A model recommends the items of the catalogue it was trained on (serving.model.artifacts.
trained_catalogue, sent with every Triton answer). When that is the site's own (RECO_CATALOGUE),
its candidates are the site's items. When it is not (a model of another shop, or the demo's
synthetic model behind a DIGINETICA replay), its candidates may not exist here: only items this
worker has counted from an event (stream/popularity.py, where the popular-items fill comes from
too) may then be shown.
"""
from __future__ import annotations

import logging
from typing import Container

from stream import metrics

log = logging.getLogger(__name__)


class LiveCatalogue:
    def __init__(self, site: str, seen: Container[str]):
        self.site = site
        self.seen = seen  # the items events have named (Popularity.counts)
        self.mismatch: str | None = None  # the served model's catalogue while it is not the site's

    def allowed(self, model_catalogue: str) -> Container[str] | None:
        """The items a model trained on ``model_catalogue`` may recommend here: None for all of its
        own (it is the site's catalogue), else the items seen in the stream."""
        mismatch = None if model_catalogue == self.site else model_catalogue
        if mismatch != self.mismatch:
            self.mismatch = mismatch
            metrics.MODEL_CATALOGUE_MISMATCH.set(mismatch is not None)
            if mismatch is not None:
                log.warning("the served model was trained on the %r catalogue, this site's is %r "
                            "(RECO_CATALOGUE): recommending only items seen in the stream", mismatch, self.site)
        return None if mismatch is None else self.seen
