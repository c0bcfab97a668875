"""The three things tuning needs from Optuna that its public API does not offer, kept here and nowhere else.

Everything else uses the public API: `optuna.storages.RDBStorage(heartbeat_interval=..., grace_period=...,
heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(...))` and `optuna.storages.fail_stale_trials`.

1. A heartbeat that survives a busy SQLite database (`ResilientRDBStorage`). Optuna records heartbeats from a
   background thread (`optuna.storages._heartbeat.HeartbeatThread`), and an exception there ends the thread for good:
   the trial then has no heartbeat, is never found stale, and stays RUNNING forever if its process is killed. On
   SQLite that exception is common: the heartbeat's read-then-write transaction collides with the main thread's
   writes and SQLite answers "database is locked" at once (it does not wait when two readers both try to write, so
   the connection's busy timeout does not help). So a beat that fails is retried with back-off, and a beat that
   still fails is skipped; the next one tries again. This overrides the public `RDBStorage.record_heartbeat`, but
   relies on the private thread calling it through Optuna's storage cache.
2. Trials killed before their first heartbeat (`fail_trials_without_heartbeat`). Optuna's `fail_stale_trials` only
   looks at trials whose heartbeat stopped; a process killed between starting a trial and its first beat leaves a
   trial with no heartbeat row at all, which Optuna never calls stale. Finding those needs Optuna's RDB tables
   (`optuna.storages._rdb.models`) and the study's storage and id (`Study._storage`, `Study._study_id`).
3. One worker per queued trial on SQLite (`ResilientRDBStorage.set_trial_state_values`). A study starts queued
   (WAITING) trials; each worker takes one by setting it RUNNING, and Optuna relies on `SELECT ... FOR UPDATE` for
   that to be taken once. SQLite has no row locks and pysqlite reads outside a transaction, so two workers both read
   WAITING, both set RUNNING, both run the trial, and the second to finish fails with "Cannot tell a COMPLETE
   trial" (measured: 4 processes taking 60 queued trials took 4 to 10 of them twice). The take is one conditional
   `UPDATE ... WHERE state = 'WAITING'` instead, atomic on every database; it writes Optuna's `trials` table
   (`optuna.storages._rdb.models.TrialModel`) directly.

tests/training/test_optuna_compat.py fails loudly when Optuna changes any of these private things (the version is
pinned in constraints.txt).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import warnings

import optuna

log = logging.getLogger("hotspot.tuning")

HEARTBEAT_ATTEMPTS = 8


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """An RDBStorage whose heartbeat is retried with back-off on a storage error instead of ending the thread, and
    whose queued trials are taken by one worker each (module docstring, 3)."""

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        """Optuna's, except that taking a queued trial (WAITING to RUNNING) is one conditional update: True for the
        one caller that took it, False for every other; a finished trial raises `UpdateFinishedTrialError`."""
        if state != optuna.trial.TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        import sqlalchemy
        from optuna.storages._rdb import models

        table = models.TrialModel.__table__
        started = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # Optuna keeps naive UTC in the table
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    sqlalchemy.update(table)
                    .where(table.c.trial_id == trial_id, table.c.state == optuna.trial.TrialState.WAITING)
                    .values(state=optuna.trial.TrialState.RUNNING, datetime_start=started)).rowcount
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise optuna.exceptions.StorageInternalError(f"taking trial {trial_id}: {exc}") from exc
        if taken == 1:
            return True
        self.check_trial_is_updatable(trial_id, self.get_trial(trial_id).state)  # raises when it is finished
        return False

    def record_heartbeat(self, trial_id: int) -> None:
        """Record the trial's heartbeat; on a storage error retry, and after the last attempt skip this beat."""
        error: Exception | None = None
        for attempt in range(HEARTBEAT_ATTEMPTS):
            try:
                return super().record_heartbeat(trial_id)
            except optuna.exceptions.StorageInternalError as exc:
                error = exc
                time.sleep(min(0.05 * 2**attempt, 2.0))
        log.warning("heartbeat of trial %s skipped: %s", trial_id, getattr(error, "__cause__", None) or error)


def rdb_storage_of(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The RDBStorage behind a study (Optuna wraps it in a cache), or None for other storages."""
    storage = getattr(study._storage, "_backend", study._storage)
    return storage if isinstance(storage, optuna.storages.RDBStorage) else None


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage."""
    return study._study_id


def trials_with_heartbeat(storage, study_id: int) -> list[int]:
    """Ids of the study's trials that have recorded at least one heartbeat."""
    import sqlalchemy.orm
    from optuna.storages._rdb import models

    storage = getattr(storage, "_backend", storage)
    with sqlalchemy.orm.Session(storage.engine) as session:
        rows = (session.query(models.TrialHeartbeatModel.trial_id)
                .join(models.TrialModel, models.TrialModel.trial_id == models.TrialHeartbeatModel.trial_id)
                .filter(models.TrialModel.study_id == study_id).all())
    return [r[0] for r in rows]


def fail_trials_without_heartbeat(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials that never recorded a heartbeat and are older than the grace period plus a minute (a
    live trial has beaten long before that), run the storage's stale-trial callback on them; return their ids."""
    rdb = rdb_storage_of(study)
    if rdb is None or rdb.heartbeat_interval is None:
        return []
    grace = rdb.grace_period or 2 * rdb.heartbeat_interval
    try:
        beating = set(trials_with_heartbeat(rdb, study_id(study)))
    except (ImportError, AttributeError) as exc:  # an Optuna past the pin; tests/training/test_optuna_compat.py says
        log.warning("trials killed before their first heartbeat are not looked for: %s", exc)
        return []
    cutoff = dt.datetime.now() - dt.timedelta(seconds=grace + 60)
    storage = study._storage  # the cached storage the study reads through, so its view stays current
    orphans = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
               if t._trial_id not in beating and t.datetime_start is not None and t.datetime_start < cutoff]
    failed = []
    for trial in orphans:
        try:
            if storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL):
                failed.append(trial._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first
    callback = rdb.get_heartbeat_stale_trial_callback()
    if callback is not None:
        with warnings.catch_warnings():  # the retry callback is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for trial_id in failed:
                callback(study, storage.get_trial(trial_id))
    return failed
