"""The engine switch (features/engine.py, issue 18): `--engine local|dask` and `--scheduler`, and LightGBM trained
with `lightgbm.dask` on a LocalCluster of two worker processes, equivalent to the local engine's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hotspot.features.config import load_config
from hotspot.features.engine import chosen, engine
from hotspot.features.errors import HotspotError
from tests.conftest import SAMPLE_CONFIG, run_cli


def test_flags_win_over_the_config_and_an_address_means_dask():
    cfg = load_config(SAMPLE_CONFIG)
    assert chosen(cfg) == ("local", None)
    assert chosen(cfg, scheduler="tcp://10.0.0.5:8786") == ("dask", "tcp://10.0.0.5:8786")
    assert chosen(cfg, "dask") == ("dask", None)  # no address: a LocalCluster
    configured = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"kind": "dask",
                                                                                 "scheduler": "tcp://h:1"})})
    assert chosen(configured) == ("dask", "tcp://h:1")
    assert chosen(configured, "local") == ("local", None)  # the flag wins
    with pytest.raises(HotspotError, match="--engine: expected one of"):
        chosen(cfg, "spark")
    with pytest.raises(HotspotError, match="--scheduler goes with --engine dask"):
        chosen(cfg, "local", "tcp://h:1")


def test_the_local_engine_never_imports_dask():
    code = ("import sys; from hotspot.features.config import load_config; from hotspot.features.engine import engine;"
            f"cfg = load_config({str(SAMPLE_CONFIG)!r})\n"
            "with engine(cfg) as client: assert client is None\n"
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules, 'dask imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_an_unreachable_scheduler_is_a_clear_error():
    cfg = load_config(SAMPLE_CONFIG)
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"connect_timeout_s": 2})})
    with pytest.raises(HotspotError, match=r"--scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler"):
        with engine(cfg, scheduler="tcp://127.0.0.1:9"):
            pass


@pytest.mark.slow
def test_a_backtest_on_dask_runs_its_refit_blocks_as_tasks_with_the_local_result(tmp_path):
    """`backtest --engine dask` (a LocalCluster of 2 worker processes, started by the command): every (model, refit
    block) is a task fitting its own copy, so the forecasts are the local engine's, value for value."""
    runs = {}
    for kind in ("local", "dask"):
        out = tmp_path / kind
        done = run_cli("backtest", "-c", str(SAMPLE_CONFIG), "-m", "lightgbm,ewm_hl26", "--weeks", "8",
                       "--refit-every", "4", "--out", str(out), "--engine", kind, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        if kind == "dask":
            assert "engine: dask, started a LocalCluster of 2 worker processes" in done.stdout
        runs[kind] = (json.loads((out / "metrics.json").read_text()), pd.read_parquet(out / "predictions.parquet"))
    pd.testing.assert_frame_equal(runs["dask"][1], runs["local"][1])
    assert runs["dask"][0]["models"]["lightgbm"]["weekly"] == runs["local"][0]["models"]["lightgbm"]["weekly"]


@pytest.mark.slow
def test_lightgbm_trained_with_its_dask_estimator_forecasts_what_the_local_fit_does(sample_prepared):
    """One LightGBM fit on the Dask engine (as `train` makes it) is `lightgbm.dask`'s data-parallel training on the
    2 workers: over the sample's last 12 weeks, each fitted on the weeks before it, mean PAI@1% within 1% of the
    local fits' and the top 1% of cells overlapping by at least 90% (each worker bins the features from its own
    rows, so a few fits differ by a cell; most are identical)."""
    from hotspot.training.backtest import lightgbm_from_config
    from hotspot.training.evaluation.metrics import week_metrics

    cfg, _, panel = sample_prepared
    weeks = range(panel.n_periods - 12, panel.n_periods)

    def forecasts() -> list[np.ndarray]:
        return [lightgbm_from_config(cfg).fit(panel.until(t)).predict(panel.until(t)) for t in weeks]

    local = forecasts()
    with engine(cfg, "dask", say=lambda _: None):
        spread = forecasts()
    pai = {k: float(np.nanmean([week_metrics(r, panel.target[t], [0.01])["pai@1%"] for t, r in zip(weeks, runs)]))
           for k, runs in (("local", local), ("dask", spread))}
    assert abs(pai["dask"] - pai["local"]) <= 0.01 * pai["local"], pai
    k = max(1, round(0.01 * panel.grid.n_cells))
    shared = sum(len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) for a, b in zip(local, spread))
    assert shared >= 0.9 * k * len(local), (shared, k * len(local))
    assert max(abs(b.sum() / a.sum() - 1) for a, b in zip(local, spread)) < 0.03  # the same expected totals


def planted_sample(folder, fmt: str) -> tuple:
    """The sample with problems planted across parts (a duplicate of an early row near the end, an empty timestamp,
    bad and zero coordinates, a date in the future), as Parquet in row groups of 7,000 rows or as CSV, and a copy of
    the sample's config reading it in parts of 10,000 rows."""
    from hotspot.features.config import load_config as load

    rows = pd.read_parquet(SAMPLE_CONFIG.parent.parent / "data" / "toronto_sample" / "incidents.parquet")
    extra = rows.iloc[[5, 6, 7, 8, 9]].copy()
    extra.loc[extra.index[1], "datetime_local"] = pd.NaT
    extra.loc[extra.index[2], ["Lat", "Long"]] = [np.nan, -79.4]
    extra.loc[extra.index[3], ["Lat", "Long"]] = [0.0, 0.0]
    extra.loc[extra.index[4], "datetime_local"] = pd.Timestamp("2031-01-01")
    planted = pd.concat([rows, extra], ignore_index=True)  # extra's first row repeats row 5: a duplicate
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"incidents.{fmt}"
    if fmt == "parquet":
        planted.to_parquet(data, row_group_size=7_000, index=False)
    else:
        planted.to_csv(data, index=False)
    text = SAMPLE_CONFIG.read_text().replace('path = "../data/toronto_sample/incidents.parquet"',
                                             f'path = "{data}"')
    text = text.replace("[backtest]", "[engine]\npartition_rows = 10000\n\n[backtest]", 1)
    config = folder / "area.toml"
    config.write_text(text)
    return load(config), len(planted)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_validation_by_parts_on_dask_gives_the_local_counts_and_quarantine(tmp_path, fmt):
    from hotspot.features.ingest import validate

    cfg, n = planted_sample(tmp_path / fmt, fmt)
    local = validate(cfg)
    with engine(cfg, "dask", say=lambda _: None) as client:
        assert client is not None and len(client.scheduler_info()["workers"]) == 2
        spread = validate(cfg)
    assert local.n_read == spread.n_read == n
    counts = local.reason_counts()
    assert {"duplicate", "missing_timestamp", "zero_coordinates", "future_date"} <= set(counts), counts
    assert spread.reason_counts() == counts
    pd.testing.assert_frame_equal(spread.accepted, local.accepted)
    pd.testing.assert_frame_equal(spread.quarantine.reset_index(drop=True), local.quarantine.reset_index(drop=True))
    assert spread.fingerprint == local.fingerprint and spread.grid.n_cells == local.grid.n_cells


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_running_scheduler_by_its_address(tmp_path):
    """docs/scale-out.md's cluster by hand: `dask scheduler`, `dask worker`, then `--scheduler ADDRESS`."""
    import time
    from pathlib import Path

    dask_cli = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)
        procs.append(subprocess.Popen([dask_cli, "worker", address, "--nworkers", "1", "--nthreads", "2",
                                       "--memory-limit", "6GB"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=tmp_path))
        cfg, n = planted_sample(tmp_path / "area", "parquet")
        local = run_cli("validate", "-c", str(cfg.source_path), "--out", str(tmp_path / "local"), cwd=tmp_path)
        assert local.returncode == 0, local.stderr
        from distributed import Client

        with Client(address, timeout="30s") as client:  # the worker has registered with the scheduler
            client.wait_for_workers(1, timeout=60)
        done = run_cli("validate", "-c", str(cfg.source_path), "--scheduler", address, "--out",
                       str(tmp_path / "dask"), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"engine: dask, scheduler {address} (1 workers)" in done.stdout
        counts = [json.loads((tmp_path / k / "validation.json").read_text()) for k in ("local", "dask")]
        assert counts[0]["read"] == counts[1]["read"] == n
        assert counts[0]["by_reason"] == counts[1]["by_reason"] and counts[0]["accepted"] == counts[1]["accepted"]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_the_panel_built_by_tiles_on_dask_is_the_local_panel(sample_prepared):
    """Tiles of 12 x 12 cells (several dozen on the sample) with their halo give every feature of every cell and
    period bit for bit."""
    from hotspot.features.panel import build_panel
    from hotspot.features.tiles import halo_cells, tiles

    cfg, result, local = sample_prepared
    small = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"tile_cells": 12})})
    with engine(small, "dask", say=lambda _: None):
        tiled = build_panel(small, result.accepted, result.grid)
    assert tiled.feature_names == local.feature_names
    assert tiled.feature_families == local.feature_families and tiled.min_history == local.min_history
    assert tiled.skipped_families == local.skipped_families
    assert np.array_equal(tiled.X, local.X, equal_nan=True)
    assert np.array_equal(tiled.target, local.target) and np.array_equal(tiled.counts, local.counts)
    # the test means something: many tiles, and a halo as wide as the widest kernel of the config
    from hotspot.features.registry import BuildContext

    ctx = BuildContext(cfg=small, grid=result.grid, period_starts=local.period_starts, groups=local.groups,
                       counts=local.counts, target=local.target, incidents=result.accepted)
    assert len(tiles(ctx, 12)) >= 6 and halo_cells(ctx) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_tuning_on_two_workers_shares_one_study_and_runs_the_trials_asked(tmp_path, store):
    """Optuna trials as tasks on a LocalCluster of 2 workers, one study in the storage (PostgreSQL as on a cluster;
    a SQLite file on one machine): exactly the trials asked for, run by both workers, no parameters twice."""
    import optuna

    from hotspot.training.tuning import study_name, tune
    from tests.serving.conftest import POSTGRES_URL, _postgres_database, skip_or_fail
    from tests.training.test_tuning import panel_of, tuned_config

    if store == "postgresql":
        if not POSTGRES_URL:
            skip_or_fail("no PostgreSQL server (set HOTSPOT_TEST_POSTGRES_URL; .ci/run starts one)")
        url, drop = _postgres_database(POSTGRES_URL)
    else:
        url, drop = f"sqlite:///{tmp_path / 'optuna.db'}", lambda: None
    try:
        path = tuned_config(tmp_path / "area")
        path.write_text(path.read_text().replace(f'storage = "sqlite:///{tmp_path / "area" / "optuna.db"}"',
                                                 f'storage = "{url}"'))
        cfg, panel = panel_of(path)
        assert cfg.tune.storage == url
        with engine(cfg, "dask", say=lambda _: None):
            result = tune(cfg, panel, n_trials=6)
        study = optuna.load_study(study_name=study_name(cfg), storage=url)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert result.trials_run == 6 and len(finished) == 6, [t.state for t in study.trials]
        assert len({t.user_attrs["worker"] for t in finished}) == 2
        proposed = [json.dumps(t.params, sort_keys=True) for t in finished if t.params]
        assert len(set(proposed)) == len(proposed)
        assert result.best_spec == study.best_trial.user_attrs["spec"]
    finally:
        drop()


@pytest.mark.slow
def test_tune_on_two_workers_logs_each_trial_from_its_worker_to_one_tracking_server(tmp_path):
    """`hotspot tune --engine dask` against an MLflow tracking server (PostgreSQL backend, started here on loopback)
    and one PostgreSQL study: each worker logs its own trials to the server, nested under the command's `tune` run;
    every trial is logged once; no SQLite file is written for tracking."""
    import socket
    import time as clock

    import mlflow
    import optuna

    from hotspot.features.config import load_config
    from hotspot.training.tuning import study_name
    from tests.serving.conftest import POSTGRES_URL, _postgres_database, skip_or_fail
    from tests.training.test_tuning import tuned_config

    if not POSTGRES_URL:
        skip_or_fail("no PostgreSQL server (set HOTSPOT_TEST_POSTGRES_URL; .ci/run starts one)")
    tracking_db, drop_tracking = _postgres_database(POSTGRES_URL)
    study_db, drop_study = _postgres_database(POSTGRES_URL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", tracking_db,
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), cwd=tmp_path)
    uri, before = f"http://127.0.0.1:{port}", mlflow.get_tracking_uri()
    try:
        deadline = clock.monotonic() + 120
        while clock.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                clock.sleep(0.5)
        path = tuned_config(tmp_path / "area")
        path.write_text(path.read_text().replace(f'storage = "sqlite:///{tmp_path / "area" / "optuna.db"}"',
                                                 f'storage = "{study_db}"'))
        work = tmp_path / "work"
        work.mkdir()
        proc = run_cli("tune", "-c", str(path), "--trials", "4", "--engine", "dask",
                       env={"MLFLOW_TRACKING_URI": uri}, cwd=work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        cfg = load_config(path)
        study = optuna.load_study(study_name=study_name(cfg), storage=study_db)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert len(finished) == 4
        mlflow.set_tracking_uri(uri)
        (tune_run,) = mlflow.search_runs(experiment_names=[cfg.area.name], filter_string="tags.step = 'tune'",
                                         output_format="list")
        trials = mlflow.search_runs(experiment_names=[cfg.area.name], filter_string="tags.step = 'tune_trial'",
                                    output_format="list")
        # one run per trial, each logged by the worker that ran it (its run id kept on the trial), under the tune run
        assert sorted(int(r.data.params["trial"]) for r in trials) == sorted(t.number for t in finished)
        assert {r.info.run_id for r in trials} == {t.user_attrs["mlflow_run_id"] for t in finished}
        assert {r.data.tags["worker"] for r in trials} == {t.user_attrs["worker"] for t in finished}
        assert len({r.data.tags["worker"] for r in trials}) == 2
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {tune_run.info.run_id}
        assert all(r.data.metrics for r in trials)
        assert not list(work.glob("*.db"))  # nothing tracked in a SQLite file
    finally:
        mlflow.set_tracking_uri(before)
        server.terminate()
        server.wait(timeout=30)
        drop_study()
        drop_tracking()


def _kill_a_worker_running(client, task: str, after_s: float = 0.0, within_s: float = 120.0) -> list[str]:
    """Start a thread that SIGKILLs the worker process running a task whose key contains `task`, `after_s` seconds
    after it first sees one (the LocalCluster's nanny restarts it). Returns the list it appends the worker to."""
    import os
    import signal
    import threading
    import time as clock

    killed: list[str] = []

    def kill() -> None:
        deadline = clock.monotonic() + within_s
        while clock.monotonic() < deadline and not killed:
            busy = [a for a, keys in client.processing().items() if any(task in str(k) for k in keys)]
            if busy:
                clock.sleep(after_s)
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(busy[0])
            clock.sleep(0.02)

    threading.Thread(target=kill, daemon=True).start()
    return killed


@pytest.mark.slow
def test_a_worker_killed_while_the_tiles_are_built_is_survived_with_the_same_panel(sample_prepared, caplog):
    """SIGKILL a worker while it builds a tile: its tiles (their scattered inputs lost with it) are built again once
    the nanny has restarted it, and the panel is still the local one, bit for bit."""
    import logging

    from hotspot.features.panel import build_panel

    cfg, result, local = sample_prepared
    small = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"tile_cells": 8})})
    with engine(small, "dask", say=lambda _: None) as client, caplog.at_level(logging.WARNING,
                                                                               "hotspot.features.engine"):
        killed = _kill_a_worker_running(client, "_build_tile")
        tiled = build_panel(small, result.accepted, result.grid)
        assert len(client.scheduler_info()["workers"]) == 2
    assert killed, "no tile was seen running: the test killed nothing"
    assert "a worker of the cluster was lost" in caplog.text and "feature tile" in caplog.text
    assert tiled.feature_names == local.feature_names
    assert np.array_equal(tiled.X, local.X, equal_nan=True)


@pytest.mark.slow
def test_a_worker_killed_during_a_lightgbm_fit_is_survived_with_the_same_model(sample_prepared, caplog):
    """SIGKILL a worker in the middle of a `lightgbm.dask` fit: the fit (its parts gone with the worker) is run again
    whole once the nanny has restarted it, and forecasts as an undisturbed fit on the cluster does. Two undisturbed
    distributed fits are themselves equivalent, not identical (which worker holds which part changes the bins), so
    the comparison is the engines' tolerance: the same ranking, near enough."""
    import logging

    from hotspot.models.gbm import dask_booster

    rng = np.random.default_rng(0)
    n, f = 300_000, 12
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = rng.poisson(np.exp(0.6 * X[:, 0] - 0.4 * X[:, 1])).astype(np.float64)
    period = np.repeat(np.arange(n // 1000), 1000)
    params = {"objective": "poisson", "learning_rate": 0.05, "num_leaves": 31, "verbose": -1, "seed": 1,
              "deterministic": True}
    names = [f"f{i}" for i in range(f)]
    cfg, _, _ = sample_prepared
    with engine(cfg, "dask", say=lambda _: None) as client:
        undisturbed, _ = dask_booster(client, params, X, y, period, None, names, 200, False)
        with caplog.at_level(logging.WARNING, "hotspot.features.engine"):
            killed = _kill_a_worker_running(client, "_train_part", after_s=0.5)
            survived, _ = dask_booster(client, params, X, y, period, None, names, 200, False)
    assert killed, "no LightGBM part was seen running: the test killed nothing"
    assert "the LightGBM fit on the cluster" in caplog.text and "retry 1 of 2" in caplog.text
    test = rng.normal(size=(5000, f)).astype(np.float32)
    a, b = survived.predict(test), undisturbed.predict(test)
    assert np.corrcoef(np.log(a), np.log(b))[0, 1] > 0.99
    top = 50  # the top 1% of the test rows
    assert len(set(np.argsort(-a)[:top]) & set(np.argsort(-b)[:top])) >= 0.9 * top


def test_only_the_errors_of_a_lost_worker_are_retried():
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
    from lightgbm.basic import LightGBMError

    from hotspot.features.engine import lost_worker

    assert lost_worker(FutureCancelledError("_build_tile-1", "already forgotten"))
    assert lost_worker(KilledWorker("_train_part-1", None, 3))
    assert lost_worker(LightGBMError("Socket recv error, Connection reset by peer (code: 104)"))
    assert not lost_worker(LightGBMError("Check failed: (num_data) > (0)"))  # the fit's own error
    assert not lost_worker(ValueError("a bug in the tile builder"))


def _partitioned(cfg, folder: Path, tile: int = 12):
    return cfg.model_copy(update={"engine": cfg.engine.model_copy(update={
        "tile_cells": tile, "partitioned": "always", "parts_dir": folder})})


@pytest.fixture(scope="module")
def partitioned_panel(sample_prepared, tmp_path_factory):
    """The sample's panel built on 2 workers and kept partitioned: each worker writes its tiles' Parquet files."""
    from hotspot.features.panel import build_panel

    cfg, result, _ = sample_prepared
    small = _partitioned(cfg, tmp_path_factory.mktemp("parts"))
    with engine(small, "dask", say=lambda _: None):
        return small, build_panel(small, result.accepted, result.grid, key="sample")


@pytest.mark.slow
def test_a_partitioned_panel_is_the_local_panel_read_by_parts(sample_prepared, partitioned_panel, tmp_path):
    """`[engine] partitioned`: the workers write one Parquet file per tile and the command keeps only their names;
    read back (a period, a view, the whole cube, or the folder as one Parquet dataset) it is the local panel bit for
    bit, and `hotspot features`' output is that dataset."""
    from hotspot.features.panel import write_panel
    from hotspot.features.parts import MANIFEST, PartitionedX

    _, _, local = sample_prepared
    _, panel = partitioned_panel
    X = panel.X
    assert isinstance(X, PartitionedX) and X.shape == local.X.shape
    assert len(X.parts.cells) >= 6 and sorted(np.concatenate(X.parts.cells)) == list(range(local.grid.n_cells))
    assert panel.feature_names == local.feature_names and np.array_equal(panel.target, local.target)
    assert np.array_equal(np.asarray(X), local.X, equal_nan=True)
    t = local.n_periods - 5
    view = panel.until(t)
    assert isinstance(view.X, PartitionedX) and view.X.shape == local.until(t).X.shape  # a view reads nothing
    assert np.array_equal(view.X_next, local.until(t).X_next, equal_nan=True)
    assert np.array_equal(X[3], local.X[3], equal_nan=True) and np.array_equal(X[-1], local.X[-1], equal_nan=True)
    keep = np.random.default_rng(0).random((8, local.grid.n_cells)) < 0.3
    cols = np.array([0, 5, 2])
    assert np.array_equal(X.take(100, 108, keep, cols), local.X[100:108][:, :, cols][keep], equal_nan=True)
    # the folder is one Parquet dataset: the long panel of `hotspot features`, and what it writes
    dense_out, parts_out = tmp_path / "dense", tmp_path / "parts"
    write_panel(local, dense_out)
    path, schema = write_panel(panel, parts_out)
    assert path.is_dir() and (path / MANIFEST).is_file()
    expected = pd.read_parquet(dense_out / "panel.parquet")
    got = pd.read_parquet(path).sort_values(["period_start", "cell_id"], kind="stable").reset_index(drop=True)
    expected = expected.sort_values(["period_start", "cell_id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert json.loads(schema.read_text())["partitioned"]["files"] == len(X.parts.cells)


@pytest.mark.slow
def test_lightgbm_on_a_partitioned_panel_fits_what_the_dense_panel_fits(sample_prepared, partitioned_panel):
    """In one process a fit reads just its rows from the parts (`take`), the same rows in the same order as the
    dense cube: the same booster. On the cluster each worker reads its own share of the periods and the fit is
    `lightgbm.dask`'s, equivalent within the engines' tolerance; a ranking objective gets its calibration from
    the scores the workers compute."""
    from hotspot.models.gbm import LightGBMForecaster

    _, _, local = sample_prepared
    cfg, panel = partitioned_panel
    t = local.n_periods - 2
    spec = {"params": {"learning_rate": 0.05, "num_leaves": 31}, "num_boost_round": 80, "train_periods": 104,
            "zero_row_fraction": 0.3}
    dense = LightGBMForecaster.from_spec(spec).fit(local.until(t)).predict(local.until(t))
    read = LightGBMForecaster.from_spec(spec).fit(panel.until(t)).predict(panel.until(t))
    assert np.array_equal(dense, read)
    with engine(cfg, "dask", say=lambda _: None):
        spread = LightGBMForecaster.from_spec(spec).fit(panel.until(t)).predict(panel.until(t))
        ranker = LightGBMForecaster.from_spec({**spec, "params": {"objective": "lambdarank"}}).fit(panel.until(t))
    assert np.corrcoef(np.log(dense), np.log(spread))[0, 1] > 0.98
    k = max(1, round(0.01 * local.grid.n_cells))
    assert len(set(np.argsort(-dense)[:k]) & set(np.argsort(-spread)[:k])) >= 0.8 * k
    assert ranker.calibration_ is not None and ranker.calibration_[1] > 0
    risk = ranker.predict(panel.until(t))
    assert np.isfinite(risk).all() and abs(risk.sum() / local.target[t - 52:t].mean(axis=0).sum() - 1) < 0.5


@pytest.mark.slow
def test_a_backtest_on_a_partitioned_panel_is_the_local_backtest(sample_prepared, partitioned_panel):
    """The backtest's refit blocks run on the workers, each reading its rows from the parts: value for value the
    local engine's backtest of the dense panel."""
    from hotspot.training.backtest import lightgbm_from_config
    from hotspot.training.rolling import forecast_periods, run_backtest

    cfg, _, local = sample_prepared
    small, panel = partitioned_panel
    periods = forecast_periods(local, 8)
    expected = run_backtest(local, [lightgbm_from_config(cfg)], periods, 4, [0.01])
    with engine(small, "dask", say=lambda _: None):
        got = run_backtest(panel, [lightgbm_from_config(cfg)], periods, 4, [0.01])
    pd.testing.assert_frame_equal(got.predictions, expected.predictions)
    assert got.metrics["models"]["lightgbm"]["weekly"] == expected.metrics["models"]["lightgbm"]["weekly"]


@pytest.mark.slow
def test_a_failed_partitioned_build_leaves_nothing_behind(sample_prepared, tmp_path):
    """An error in a tile's build is raised as it is, and no folder of parts (whole or half-written) is left."""
    from hotspot.features.registry import BuildContext
    from hotspot.features.tiles import build_tiled

    cfg, result, local = sample_prepared
    small = _partitioned(cfg, tmp_path)
    ctx = BuildContext(cfg=small, grid=result.grid, period_starts=local.period_starts, groups=local.groups,
                       counts=local.counts, target=local.target, incidents=result.accepted)
    with engine(small, "dask", say=lambda _: None) as client:
        with pytest.raises(KeyError, match="no-such-family"):
            build_tiled(client, ctx, ["temporal", "no-such-family"], parts_base=tmp_path / "p.parts")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_cached_partitioned_panel_whose_files_are_gone_is_built_again(sample_prepared, tmp_path, monkeypatch):
    """The panel cache keeps a partitioned panel's files beside its entry; an entry whose files were removed is not
    trusted (its reads would fail): the panel is built again."""
    import shutil

    from hotspot.features.parts import PartitionedX
    from hotspot.features.prepared import prepare

    monkeypatch.setenv("HOTSPOT_CACHE_DIR", str(tmp_path / "cache"))
    cfg, result, local = sample_prepared
    small = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"tile_cells": 16,
                                                                            "partitioned": "always"})})
    with engine(small, "dask", say=lambda _: None):
        first = prepare(small, incidents=result)
    assert isinstance(first.panel.X, PartitionedX)
    assert Path(first.panel.X.parts.folder).parent.parent == tmp_path / "cache"
    again = prepare(small, incidents=result)
    assert "cache_s" in again.seconds and np.array_equal(again.panel.X[-1], local.X[-1], equal_nan=True)
    shutil.rmtree(first.panel.X.parts.folder)
    with engine(small, "dask", say=lambda _: None):
        rebuilt = prepare(small, incidents=result)
    assert "cache_s" not in rebuilt.seconds and np.array_equal(rebuilt.panel.X[-1], local.X[-1], equal_nan=True)


@pytest.mark.slow
def test_a_distributed_fit_is_the_same_model_in_every_process():
    """lightgbm.dask ranks its machines in the order of a set of keys, which changes from one process to the next,
    and the rank decides whose rows set each feature's bins: without `ranks_by_address` the same rows on the same
    kind of cluster gave one of two models (measured: 3 runs of 4 differed). Three fresh processes, one model."""
    code = f"""
import hashlib, numpy as np
from hotspot.features.config import load_config
from hotspot.features.engine import engine
from hotspot.models.gbm import dask_booster
if __name__ == "__main__":
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 12)).astype(np.float32)
    y = rng.poisson(np.exp(0.6 * X[:, 0] - 0.4 * X[:, 1])).astype(np.float64)
    params = {{"objective": "poisson", "learning_rate": 0.05, "verbose": -1, "seed": 1, "deterministic": True}}
    with engine(load_config({str(SAMPLE_CONFIG)!r}), "dask", say=lambda _: None) as client:
        booster, _ = dask_booster(client, params, X, y, np.repeat(np.arange(200), 1000), None,
                                  [f"f{{i}}" for i in range(12)], 50, False)
    test = rng.normal(size=(2000, 12)).astype(np.float32)
    print("MODEL", hashlib.sha256(booster.predict(test).tobytes()).hexdigest())
"""
    models = set()
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        models.add(next(line for line in done.stdout.splitlines() if line.startswith("MODEL")))
    assert len(models) == 1, models
