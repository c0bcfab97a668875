"""The private Optuna things training/optuna_compat.py relies on are still there and still behave as it assumes.

Each failure here means an Optuna upgrade changed one of them: read the module's docstring, then adapt or drop the
workaround (some failures say it is no longer needed).
"""

from __future__ import annotations

import inspect
import warnings

import optuna
import pytest

from hotspot.training import optuna_compat

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")


@pytest.fixture
def storage(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna_compat.ResilientRDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1,
                                                 grace_period=2)


def test_public_api_used_by_tuning_exists():
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    assert {"heartbeat_interval", "grace_period", "heartbeat_stale_trial_callback", "engine_kwargs"} <= set(params)
    assert callable(optuna.storages.fail_stale_trials)
    assert "max_retry" in inspect.signature(optuna.storages.RetryHeartbeatStaleTrialCallback).parameters


def test_record_heartbeat_is_what_the_heartbeat_thread_calls():
    from optuna.storages._heartbeat import HeartbeatThread

    assert list(inspect.signature(optuna.storages.RDBStorage.record_heartbeat).parameters) == ["self", "trial_id"]
    loop = inspect.getsource(HeartbeatThread._record_heartbeat)
    assert "heartbeat.record_heartbeat(trial_id)" in loop
    assert "except" not in loop, "Optuna's heartbeat thread now handles errors: ResilientRDBStorage may be unneeded"
    cached = inspect.getsource(optuna.storages._CachedStorage.record_heartbeat)
    assert "self._backend.record_heartbeat(trial_id)" in cached


def test_study_storage_and_ids_are_where_the_compat_module_reads_them(storage):
    study = optuna.create_study(storage=storage)
    assert study._storage._backend is storage  # the cache wraps our storage
    assert optuna_compat.rdb_storage_of(study) is storage
    assert optuna_compat.study_id(study) == storage.get_study_id_from_name(study.study_name)
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen._trial_id == trial._trial_id == storage.get_trial_id_from_study_id_trial_number(
        optuna_compat.study_id(study), trial.number)
    assert storage.engine is not None and storage.grace_period == 2 and storage.heartbeat_interval == 1
    assert optuna_compat.rdb_storage_of(optuna.create_study()) is None  # in memory: no heartbeats


def test_rdb_models_have_the_columns_queried(storage):
    from optuna.storages._rdb import models

    assert {"trial_id", "heartbeat"} <= set(models.TrialHeartbeatModel.__table__.columns.keys())
    assert {"trial_id", "study_id", "state", "datetime_start"} <= set(models.TrialModel.__table__.columns.keys())
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    assert optuna_compat.trials_with_heartbeat(storage, optuna_compat.study_id(study)) == []
    storage.record_heartbeat(trial._trial_id)
    assert optuna_compat.trials_with_heartbeat(storage, optuna_compat.study_id(study)) == [trial._trial_id]


def test_optuna_still_ignores_trials_without_a_heartbeat(storage):
    """The reason for fail_trials_without_heartbeat: if this fails, Optuna now fails them itself."""
    study = optuna.create_study(storage=storage)
    study.ask()
    import time

    time.sleep(2.5)  # past the grace period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING


def _take_queued_trials(url: str, n: int, queue) -> None:
    """In a process of its own: ask for `n` trials of study 's' (each takes a queued one while any is left)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna_compat.ResilientRDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.load_study(study_name="s", storage=storage)
    queue.put([study.ask()._trial_id for _ in range(n)])


def test_each_queued_trial_is_taken_by_one_process_on_sqlite(tmp_path):
    """Four processes taking 80 queued trials from one SQLite study: every trial taken once. Optuna's own take took
    4 to 10 of 60 twice (module docstring, 3), which made two Dask workers run one trial and fail to tell it."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    for x in range(80):
        study.enqueue_trial({"x": x})
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_take_queued_trials, args=(url, 25, queue)) for _ in range(4)]
    for w in workers:
        w.start()
    taken = [trial_id for _ in workers for trial_id in queue.get(timeout=120)]
    for w in workers:
        w.join(timeout=60)
    assert len(taken) == 100 and len(set(taken)) == 100, f"{len(taken) - len(set(taken))} trials taken twice"
    trials = {t._trial_id: t for t in optuna.load_study(study_name="s", storage=url).trials}
    queued = sorted(trials)[:80]
    assert all(trials[i].state == optuna.trial.TrialState.RUNNING for i in queued)
    assert set(queued) <= set(taken)  # the queue was emptied before new trials were made


def test_taking_a_trial_keeps_optunas_answers(storage):
    """WAITING to RUNNING: True once, then False; a finished trial raises; the start time is now, as Optuna's."""
    import datetime as dt

    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 1.0})
    [waiting] = study.get_trials(deepcopy=False)
    before = dt.datetime.now()
    assert storage.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.RUNNING) is True
    assert storage.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.RUNNING) is False
    started = storage.get_trial(waiting._trial_id).datetime_start
    assert before - dt.timedelta(seconds=1) <= started <= dt.datetime.now() + dt.timedelta(seconds=1)
    assert storage.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.COMPLETE, [0.5]) is True
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.RUNNING)
    with pytest.raises(KeyError):
        storage.set_trial_state_values(10_000, optuna.trial.TrialState.RUNNING)
