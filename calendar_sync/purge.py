"""Delete many rows without a long lock and with flat memory: keyset batches by primary key.

Each batch reads at most ``batch_size`` primary keys above the last one seen (an index range
scan on the primary key) and deletes exactly those rows in its own short transaction. Nothing
but one batch of integers is ever held in memory, no lock outlives its batch, and rows written
meanwhile (the receivers keep inserting) are never blocked for longer than one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet


@dataclass
class PurgeResult:
    label: str
    deleted: int = 0
    batches: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.deleted / self.seconds if self.seconds > 0 else 0.0


# progress(label, batch number, rows deleted so far, last primary key of the batch)
Progress = Callable[[str, int, int, int], None]


def purge(label: str, queryset: QuerySet, batch_size: int, *, dry_run: bool = False,
          progress: Progress | None = None) -> PurgeResult:
    """Delete every row of ``queryset`` in primary-key batches (count them on a dry run)."""
    result = PurgeResult(label, dry_run=dry_run)
    started = time.perf_counter()
    if dry_run:
        result.deleted = queryset.count()
        result.seconds = time.perf_counter() - started
        return result
    model = queryset.model
    last_pk = None
    while True:
        page = queryset.order_by("pk")
        if last_pk is not None:
            page = page.filter(pk__gt=last_pk)
        pks = list(page.values_list("pk", flat=True)[:batch_size])
        if not pks:
            break
        with transaction.atomic():
            # The condition again: a row that changed since it was read (a failed notification
            # requeued meanwhile) stays. Collector cascades (an incident's deliveries) within
            # the batch.
            _, per_model = queryset.filter(pk__in=pks).delete()
        last_pk = pks[-1]
        result.batches += 1
        result.deleted += per_model.get(model._meta.label, 0)
        if progress:
            progress(label, result.batches, result.deleted, last_pk)
        if len(pks) < batch_size:
            break
    result.seconds = time.perf_counter() - started
    return result
