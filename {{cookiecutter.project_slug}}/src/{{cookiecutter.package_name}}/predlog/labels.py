"""The label of a served prediction once users have had their say: the one rule for training.

A prediction's label is the latest feedback on it (matched by request id, else message id),
else the label it was served with. That is how the contract's online metrics count (a
prediction nobody contradicts counts as correct), so a window run trains on the traffic those
metrics describe. Its cost: an error nobody reports is learnt again; ``LabelledWindow`` says
how many labels come from feedback so that a run can be judged by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .store import PredictionLog, utc_naive

FEEDBACK = "feedback"
PREDICTION = "prediction"


@dataclass
class LabelledWindow:
    records: list[dict]  # the raw records, each with the label column set
    sources: list[str]  # per record: FEEDBACK or PREDICTION
    answered: int  # served requests in the window
    without_record: int  # answered requests whose raw record the log does not hold

    @property
    def from_feedback(self) -> int:
        return sum(s == FEEDBACK for s in self.sources)


def labelled_window(
    log: PredictionLog, since: datetime, until: datetime, label_column: str
) -> LabelledWindow:
    """The answered requests of ``[since, until)`` with their raw records and labels; a request
    answered twice (a mesh mirror) counts once, by its first answer."""
    import sqlalchemy as sa

    p, f, r = log.predictions.c, log.feedback.c, log.records.c
    since, until = utc_naive(since), utc_naive(until)
    served = (
        sa.select(p.id, p.request_id, p.message_id, p.label)
        .where(p.served.is_(True), p.created_at >= since, p.created_at < until)
        .order_by(p.id)
    )
    with log.engine.connect() as conn:
        answers: dict[str, tuple[str | None, str]] = {}
        for _, request_id, message_id, label in conn.execute(served):
            answers.setdefault(request_id, (message_id, label))
        raw: dict[str, dict] = {}
        feedback_by_request: dict[str, str] = {}
        feedback_by_message: dict[str, str] = {}
        ids = list(answers)
        messages = [m for m, _ in answers.values() if m is not None]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            query = sa.select(r.request_id, r.record).where(r.request_id.in_(chunk)).order_by(r.id)
            for request_id, record in conn.execute(query):
                raw.setdefault(request_id, record)
            latest = sa.select(f.request_id, f.label).where(f.request_id.in_(chunk))
            for request_id, label in conn.execute(latest.order_by(f.ingested_at, f.id)):
                feedback_by_request[request_id] = label
        for i in range(0, len(messages), 500):
            chunk = messages[i : i + 500]
            latest = sa.select(f.message_id, f.label).where(f.message_id.in_(chunk))
            for message_id, label in conn.execute(latest.order_by(f.ingested_at, f.id)):
                feedback_by_message[message_id] = label
    records, sources = [], []
    for request_id, (message_id, served_label) in answers.items():
        record = raw.get(request_id)
        if record is None:
            continue
        said = feedback_by_request.get(request_id)
        if said is None and message_id is not None:
            said = feedback_by_message.get(message_id)
        records.append({**record, label_column: served_label if said is None else said})
        sources.append(PREDICTION if said is None else FEEDBACK)
    return LabelledWindow(records, sources, len(answers), len(answers) - len(records))
